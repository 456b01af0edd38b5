"""`dagger call publish` through the stand-in engine, pushing to a real loopback registry.

The stand-in's `Container.publish` really pushes a small image with the
platforms of the requested variants to the loopback registry, so the module's
read-back verification reads what a registry actually serves.
"""

import uuid
from collections.abc import Callable
from typing import Any

import graphql
import pytest
from dagger import dag
from dagger.mod._exceptions import FunctionError

from ci.build import push as _push
from ci.build import ui as _ui
from ci.supply_chain import sbom as _sbom
from tests.support.publishing import RECIPE, image_pushes, is_cache_image, publish_to
from tests.support.registry_server import RegistryServer, push_image
from tests.support.sbom_inputs import answer_image_reads
from tests.support.standin import (
    FIXTURE_WORKSPACE,
    ModuleCaller,
    Node,
    Push,
    StandInEngine,
    push_to_registry,
)

pytestmark = [pytest.mark.registry, pytest.mark.usefixtures("no_waiting")]

SHA = "0123456789abcdef0123456789abcdef01234567"
BOTH = ["linux/amd64", "linux/arm64"]
COMPONENTS = ["brokkr-broker", "brokkr-agent", "brokkr-ui"]


def really_push(engine: StandInEngine, server: RegistryServer) -> Callable[[Push], str | None]:
    """Let the stand-in's publish really push to ``server``."""
    return push_to_registry(engine, registry=server.registry, base_url=server.base_url)


def output_lines(text: str) -> list[str]:
    """publish's output lines without its `# …` notes (whether SBOMs were attached)."""
    return [line for line in text.splitlines() if not line.startswith("#")]


def pushed(engine: StandInEngine) -> list[str]:
    return sorted(p.address for p in image_pushes(engine))


AGENT_CHECK = ["sh", "-c", "./brokkr-agent --help && kubectl version --client"]


def start_checks(engine: StandInEngine) -> list[tuple[float, float]]:
    """(started, ended) of each start check the engine ran (each builds its image)."""
    checks = (["sh", "-c", "./brokkr-broker --help"], AGENT_CHECK, list(_ui.START_CHECK))
    return [
        (started, ended)
        for field, node, started, ended in engine.evaluated
        if field == "stdout" and node.execs() and node.execs()[-1] in checks
    ]


def container_work(engine: StandInEngine) -> list[Node]:
    """Everything the engine had to run a container for (reading host files is not)."""
    return [
        node
        for _, node, *_ in engine.evaluated
        if any(n.type_name == "Container" for n in node.graph())
    ]


async def test_release_pushes_every_tag_of_every_component_with_both_platforms(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, registry: RegistryServer
):
    refs = output_lines(
        await brokkr.call(
            "publish",
            ref="refs/tags/v1.2.3",
            sha=SHA,
            registry=namespace,
            created="2026-11-26T12:00:00Z",
        )
    )
    expected = sorted(
        f"{namespace}/{name}:{tag}"
        for name in COMPONENTS
        for tag in ("1.2.3", "1.2", "1", "latest")
    )
    assert pushed(publishing) == expected
    for push in image_pushes(publishing):
        assert push.platforms(publishing.default_platform) == BOTH
    # One line per tag, each a digest reference the registry serves.
    assert sorted(r.split("@")[0] for r in refs) == expected
    assert all("@sha256:" in r for r in refs)
    for name in COMPONENTS:
        digests = {r.split("@")[1] for r in refs if f"/{name}:" in r}
        assert len(digests) == 1, f"{name} tags name different images: {digests}"


async def test_every_variant_is_built_before_the_first_push(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    await brokkr.call("publish", ref="refs/tags/v0.4.0", sha=SHA, registry=namespace)
    checks = start_checks(publishing)
    assert len(checks) == 6  # 3 components x 2 platforms, each checked once
    pushes = [started for field, _, started, _ in publishing.evaluated if field == "publish"]
    assert max(ended for _, ended in checks) <= min(pushes)
    # No separate build round: the checks build the images, nothing syncs them first.
    assert not [f for f, *_ in publishing.evaluated if f == "sync"]


async def test_checks_and_sbom_reads_are_one_round_then_the_pushes_two(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    # A warm dependency cache (the first publish saved it): no planner read is needed.
    await brokkr.call("publish", ref="refs/tags/v0.4.0", sha=SHA, registry=namespace)
    publishing.reset_recordings()
    # Long enough that a busy machine cannot start a round-trip of one round after
    # another of the same round ended.
    publishing.delays = dict.fromkeys(("sync", "stdout", "contents", "publish"), 2.5)
    await brokkr.call(
        "publish", ref="refs/tags/v0.4.1", sha=SHA, registry=namespace, component="AGENT"
    )
    checks, reads = start_checks(publishing), sbom_reads(publishing)
    assert len(checks) == 2
    assert len(reads) == 2  # one syft scan per platform
    # Every check and read started before any of them ended: one round.
    assert max(s for s, _ in checks + reads) < min(e for _, e in checks + reads)
    # Then the immutable push, then the moving tags: three rounds in all.
    assert publishing.serial_rounds() == 3


def sbom_reads(engine: StandInEngine) -> list[tuple[float, float]]:
    """(started, ended) of each syft scan of an image the engine evaluated."""
    return [
        (started, ended)
        for field, node, started, ended in engine.evaluated
        if field == "stdout" and node.execs()[-1][0] == _sbom.SYFT_BINARY
    ]


async def test_every_sbom_is_read_before_the_first_push(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    # The reads start as each variant is built; the pushes wait for all of them.
    await brokkr.call("publish", ref="refs/tags/v0.4.0", sha=SHA, registry=namespace)
    reads = sbom_reads(publishing)
    # Per platform: a syft scan of each of the three images.
    assert len(reads) == 2 * 3
    pushes = [
        started
        for field, node, started, _ in publishing.evaluated
        if field == "publish" and not is_cache_image(node)
    ]
    assert len(pushes) == 12
    assert max(ended for _, ended in reads) <= min(pushes)


def is_image(node: Node, name: str, platform: str, default: str) -> bool:
    """Whether `node` reads from the labelled image `name` for `platform`."""
    titles = [
        n.args["value"]
        for n in node.calls("withLabel")
        if n.args["name"] == "org.opencontainers.image.title"
    ]
    return titles[-1:] == [name] and node.platform(default) == platform


async def test_a_failed_sbom_read_pushes_nothing_for_any_component(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    def agent_arm64_dpkg(node: Node) -> bool:
        return (
            node.field == "rootfs"
            and node.parent is not None
            and is_image(node.parent, "brokkr-agent", "linux/arm64", publishing.default_platform)
        )

    publishing.fail_when(agent_arm64_dpkg, "no such file or directory")
    with pytest.raises(FunctionError) as info:
        await brokkr.call("publish", ref="refs/tags/v1.2.3", sha=SHA, registry=namespace)
    message = str(info.value)
    assert message.startswith(
        "reading the SBOMs failed, nothing was pushed: brokkr-agent for linux/arm64: "
        "scanning the brokkr-agent image with syft failed: "
    )
    assert "no such file or directory" in message
    assert "brokkr-broker" not in message
    assert publishing.pushes == []


async def test_a_failed_push_still_reports_what_the_other_components_wrote(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    from tests.support import standin as _standin

    def ui_down(engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> str:
        if "/brokkr-ui:" in args["address"]:
            raise graphql.GraphQLError("failed to push: 502 Bad Gateway")
        return _standin.BUILTIN[("Container", "publish")](engine, node, args)

    publishing.on("Container", "publish", ui_down)
    with pytest.raises(FunctionError) as info:
        await brokkr.call("publish", ref="refs/tags/v1.2.3", sha=SHA, registry=namespace)
    message = str(info.value)
    assert message.startswith(f"pushing {namespace}/brokkr-ui:1.2.3 failed after 3 attempts")
    already = message.split(" Already pushed: ", 1)[1].split(". ", 1)[0].split(", ")
    assert sorted(already) == [
        f"{namespace}/{name}:{tag}"
        for name in ("brokkr-agent", "brokkr-broker")
        for tag in ("1", "1.2", "1.2.3", "latest")
    ]
    assert pushed(publishing) == sorted(already)
    # The other components went on to their read-back and SBOMs; the error says so.
    written = message.split(" For the images that were pushed and verified: ", 1)[1]
    for name in ("brokkr-broker", "brokkr-agent"):
        for platform in BOTH:
            assert f"{platform} {namespace}/{name}@sha256:" in written
    assert "brokkr-ui" not in written


async def test_prerelease_gets_only_its_version(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    await brokkr.call(
        "publish", ref="refs/tags/v1.2.3-rc.1", sha=SHA, registry=namespace, component="AGENT"
    )
    assert pushed(publishing) == [f"{namespace}/brokkr-agent:1.2.3-rc.1"]


async def test_branch_push_gets_branch_and_sha_tags(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    refs = output_lines(
        await brokkr.call(
            "publish", ref="refs/heads/main", sha=SHA, registry=namespace, component="UI"
        )
    )
    assert pushed(publishing) == [
        f"{namespace}/brokkr-ui:main",
        f"{namespace}/brokkr-ui:main-sha-0123456",
    ]
    assert len(refs) == 2


async def test_pull_request_gets_pr_tag(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    await brokkr.call("publish", pr=42, sha=SHA, registry=namespace, component="BROKER")
    assert pushed(publishing) == [f"{namespace}/brokkr-broker:pr-42"]


async def test_images_carry_the_oci_labels(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    await brokkr.call(
        "publish",
        ref="refs/tags/v2.0.1",
        sha=SHA,
        registry=namespace,
        component="AGENT",
        created="2026-11-26T12:00:00Z",
    )
    push = publishing.pushes[0]
    for variant in [push.container, *push.variants]:
        labels = {n.args["name"]: n.args["value"] for n in variant.calls("withLabel")}
        description = labels.pop("org.opencontainers.image.description")
        assert "agent" in description.lower()
        assert labels == {
            "org.opencontainers.image.source": "https://github.com/colliery-io/brokkr",
            "org.opencontainers.image.revision": SHA,
            "org.opencontainers.image.version": "2.0.1",
            "org.opencontainers.image.created": "2026-11-26T12:00:00Z",
            "org.opencontainers.image.title": "brokkr-agent",
            "org.opencontainers.image.licenses": "Elastic-2.0",
        }


async def test_created_label_is_fixed_without_a_commit_time(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    # Never the wall clock: the same commit must rebuild to the same digest.
    await brokkr.call("publish", pr=5, sha=SHA, registry=namespace, component="UI")
    (push,) = publishing.pushes
    labels = {n.args["name"]: n.args["value"] for n in push.container.calls("withLabel")}
    assert labels["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"
    assert labels["org.opencontainers.image.version"] == "pr-5"


async def test_credentials_travel_only_as_a_secret(
    engine: StandInEngine, auth_registry: RegistryServer, fixture_source: str
):
    assert auth_registry.password is not None
    answer_image_reads(engine)  # with credentials, publish reads and attaches SBOMs
    engine.container_files["/app/recipe.json"] = RECIPE
    engine.on_publish = really_push(engine, auth_registry)
    engine.env["GITHUB_TOKEN"] = auth_registry.password
    secret_id = await dag.secret("env://GITHUB_TOKEN").id()
    namespace = f"{auth_registry.registry}/t{uuid.uuid4().hex[:10]}"
    brokkr = ModuleCaller(engine, fixture_source)

    refs = output_lines(
        await brokkr.call(
            "publish",
            ref="refs/tags/v1.0.0",
            sha=SHA,
            registry=namespace,
            component="BROKER",
            username=auth_registry.username,
            password=secret_id,
        )
    )

    assert len(refs) == 4
    for push in engine.pushes:  # the images' and the dependency cache's
        (auth,) = push.auth()
        assert auth.args["username"] == auth_registry.username
        repository = "brokkr-build-cache" if is_cache_image(push.container) else "brokkr-broker"
        assert auth.args["address"] == f"{namespace}/{repository}"
        assert isinstance(auth.args["secret"], Node)
        assert auth.args["secret"].field == "secret"
        for node in push.container.graph():
            assert auth_registry.password not in repr(node.args)
    assert auth_registry.password not in engine.sent_text()
    assert auth_registry.password not in "".join(refs)


async def test_dry_run_reports_and_pushes_nothing(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    lines = output_lines(
        await brokkr.call(
            "publish", ref="refs/tags/v1.2.3", sha=SHA, registry=namespace, dry_run=True
        )
    )
    assert len(lines) == 12
    assert f"{namespace}/brokkr-agent:latest (linux/amd64, linux/arm64) would push, moving" in lines
    assert f"{namespace}/brokkr-ui:1.2.3 (linux/amd64, linux/arm64) would push, immutable" in lines
    assert publishing.pushes == []
    assert container_work(publishing) == []


async def test_dry_run_shows_existing_immutable_tags(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, registry: RegistryServer
):
    push_image(registry.base_url, f"{namespace.split('/', 1)[1]}/brokkr-ui", "1.2.3", seed="old")
    lines = output_lines(
        await brokkr.call(
            "publish",
            ref="refs/tags/v1.2.3",
            sha=SHA,
            registry=namespace,
            component="UI",
            dry_run=True,
        )
    )
    assert (
        f"{namespace}/brokkr-ui:1.2.3 (linux/amd64, linux/arm64) immutable tag exists, "
        "would refuse; published from an unknown commit"
    ) in lines
    assert publishing.pushes == []


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        pytest.param({"ref": "refs/tags/v1.2.3"}, "--sha is required", id="no-sha"),
        pytest.param({"ref": "refs/tags/v1.2.3", "sha": "xyz"}, "hexadecimal", id="bad-sha"),
        pytest.param({"ref": "refs/wat/1", "sha": SHA}, "refs/heads/", id="bad-ref"),
        pytest.param(
            {"ref": "refs/tags/v1.2.3", "sha": SHA, "platforms": ["linux/s390x"]},
            "linux/s390x",
            id="bad-platform",
        ),
        pytest.param(
            {"ref": "refs/tags/v1.2.3", "sha": SHA, "platforms": []}, "--platforms", id="none"
        ),
        pytest.param(
            {"ref": "refs/tags/v1.2.3", "sha": SHA, "registry": "ghcr.io/Colliery"},
            "--registry .* must be lowercase",
            id="bad-registry",
        ),
        pytest.param(
            {"ref": "refs/tags/v1.2.3", "sha": SHA, "registry": "ghcr.io/x:1.0"},
            "--registry",
            id="registry-with-tag",
        ),
        pytest.param(
            {"ref": "refs/tags/v1.2.3", "sha": SHA, "created": "yesterday"},
            "--created",
            id="bad-created",
        ),
        pytest.param(
            {"ref": "refs/tags/v1.2.3", "sha": SHA, "username": "bot"},
            "password",
            id="username-without-password",
        ),
    ],
)
async def test_bad_input_stops_before_any_build(
    brokkr: ModuleCaller,
    publishing: StandInEngine,
    namespace: str,
    inputs: dict[str, Any],
    message: str,
):
    inputs = {"registry": namespace, **inputs}
    with pytest.raises(FunctionError, match=message):
        await brokkr.call("publish", **inputs)
    assert container_work(publishing) == []
    assert publishing.pushes == []


async def test_missing_crate_stops_before_any_build(
    engine: StandInEngine, registry: RegistryServer
):
    engine.container_files["/app/recipe.json"] = RECIPE
    source = (
        await dag.host().directory(str(FIXTURE_WORKSPACE), exclude=["crates/brokkr-agent"]).id()
    )
    brokkr = ModuleCaller(engine, source)
    with pytest.raises(FunctionError, match="crates/brokkr-agent"):
        await brokkr.call(
            "publish", ref="refs/tags/v1.2.3", sha=SHA, registry=f"{registry.registry}/missing"
        )
    assert container_work(engine) == []
    assert engine.pushes == []


async def test_a_failing_variant_pushes_nothing_for_any_component(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    def arm64_agent_build(node: Node) -> bool:
        return (
            node.field == "withExec"
            and "aarch64-unknown-linux-gnu" in node.args["args"]
            and any("brokkr-agent" in a for a in node.args["args"])
        )

    publishing.fail_when(
        arm64_agent_build, 'process "cargo build" did not complete successfully: exit code: 101'
    )
    with pytest.raises(FunctionError, match="brokkr-agent for linux/arm64") as info:
        await brokkr.call("publish", ref="refs/tags/v1.2.3", sha=SHA, registry=namespace)
    assert "nothing was pushed" in str(info.value)
    assert publishing.pushes == []


async def test_existing_immutable_tag_is_never_overwritten(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, registry: RegistryServer
):
    repo = f"{namespace.split('/', 1)[1]}/brokkr-broker"
    old = push_image(registry.base_url, repo, "1.2.3", seed="already-released")
    with pytest.raises(FunctionError, match=r"brokkr-broker:1\.2\.3") as info:
        await brokkr.call("publish", ref="refs/tags/v1.2.3", sha=SHA, registry=namespace)
    assert "--force" in str(info.value)
    assert "unknown commit" in str(info.value)
    assert publishing.pushes == []
    assert container_work(publishing) == []
    from ci.registry.client import RegistryClient
    from ci.rules.reference import parse_reference

    async with RegistryClient() as client:
        assert (
            await client.resolve_digest(parse_reference(f"{namespace}/brokkr-broker:1.2.3")) == old
        )


@pytest.mark.parametrize(
    ("revision", "said"),
    [
        pytest.param(SHA, "already published from this commit 0123456", id="same-commit"),
        pytest.param("f" * 40, "published from commit fffffff", id="other-commit"),
    ],
)
async def test_refusal_says_which_commit_the_tag_holds(
    brokkr: ModuleCaller,
    publishing: StandInEngine,
    namespace: str,
    registry: RegistryServer,
    revision: str,
    said: str,
):
    repo = f"{namespace.split('/', 1)[1]}/brokkr-ui"
    labels = {"org.opencontainers.image.revision": revision}
    push_image(registry.base_url, repo, "2.0.0", seed="released", labels=labels)
    with pytest.raises(FunctionError, match=said):
        await brokkr.call(
            "publish", ref="refs/tags/v2.0.0", sha=SHA, registry=namespace, component="UI"
        )
    assert container_work(publishing) == []


async def test_a_registry_without_namespace_is_accepted(
    brokkr: ModuleCaller, publishing: StandInEngine, registry: RegistryServer
):
    refs = output_lines(
        await brokkr.call(
            "publish", pr=9, sha=SHA, registry=registry.registry, component="UI", dry_run=True
        )
    )
    assert refs == [
        f"{registry.registry}/brokkr-ui:pr-9 (linux/amd64, linux/arm64) would push, moving"
    ]


async def test_anonymous_reads_refused_say_to_pass_credentials(
    engine: StandInEngine, auth_registry: RegistryServer, fixture_source: str
):
    brokkr = ModuleCaller(engine, fixture_source)
    with pytest.raises(FunctionError, match="--username and --password") as info:
        await brokkr.call(
            "publish", pr=9, sha=SHA, registry=f"{auth_registry.registry}/x", component="UI"
        )
    assert "authentication required" in str(info.value)
    assert container_work(engine) == []


async def test_force_overwrites_an_immutable_tag(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, registry: RegistryServer
):
    repo = f"{namespace.split('/', 1)[1]}/brokkr-broker"
    old = push_image(registry.base_url, repo, "1.2.3", seed="already-released")
    refs = output_lines(
        await brokkr.call(
            "publish",
            ref="refs/tags/v1.2.3",
            sha=SHA,
            registry=namespace,
            component="BROKER",
            force=True,
        )
    )
    new = {r.split("@")[1] for r in refs}
    assert old not in new


async def test_backport_does_not_move_latest_or_a_newer_major(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, registry: RegistryServer
):
    repo = f"{namespace.split('/', 1)[1]}/brokkr-broker"
    push_image(registry.base_url, repo, ["2.0.0", "2.0", "2", "latest"], seed="two")
    push_image(registry.base_url, repo, ["1.4.0", "1.4", "1"], seed="one-four")
    await brokkr.call(
        "publish", ref="refs/tags/v1.3.9", sha=SHA, registry=namespace, component="BROKER"
    )
    assert pushed(publishing) == sorted(
        [f"{namespace}/brokkr-broker:1.3.9", f"{namespace}/brokkr-broker:1.3"]
    )
    await brokkr.call(
        "publish", ref="refs/tags/v1.4.1", sha=SHA, registry=namespace, component="BROKER"
    )
    assert f"{namespace}/brokkr-broker:1" in pushed(publishing)
    assert f"{namespace}/brokkr-broker:latest" not in pushed(publishing)


async def test_read_back_catches_a_tag_the_registry_does_not_serve(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, registry: RegistryServer
):
    honest = publishing.on_publish
    assert honest is not None

    def lying(push: Push) -> str | None:
        digest = honest(push)
        if push.address.endswith(":1"):
            # The registry ends up serving something else under this tag.
            repo = push.address.split("/", 1)[1].rsplit(":", 1)[0]
            push_image(registry.base_url, repo, "1", platforms=["linux/amd64"], seed="other")
        return digest

    publishing.on_publish = lying
    with pytest.raises(FunctionError, match=r"brokkr-ui:1: resolves to sha256:"):
        await brokkr.call(
            "publish", ref="refs/tags/v1.0.0", sha=SHA, registry=namespace, component="UI"
        )


async def test_transient_push_error_is_retried(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    from tests.support import standin as _standin

    failures = {"left": 2}

    def flaky(engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> str:
        if failures["left"]:
            failures["left"] -= 1
            raise graphql.GraphQLError("failed to push: 503 Service Unavailable")
        return _standin.BUILTIN[("Container", "publish")](engine, node, args)

    publishing.on("Container", "publish", flaky)
    refs = output_lines(
        await brokkr.call("publish", pr=3, sha=SHA, registry=namespace, component="UI")
    )
    assert refs[0].startswith(f"{namespace}/brokkr-ui:pr-3@sha256:")
    assert failures["left"] == 0


async def test_persistent_push_error_stops_after_bounded_attempts(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    attempts = []

    def down(engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> str:
        attempts.append(args["address"])
        raise graphql.GraphQLError("failed to push: 502 Bad Gateway")

    publishing.on("Container", "publish", down)
    with pytest.raises(FunctionError, match="after 3 attempts") as info:
        await brokkr.call("publish", pr=3, sha=SHA, registry=namespace, component="UI")
    assert "Nothing was pushed" in str(info.value)
    assert len(attempts) == _push.PUSH_ATTEMPTS


async def test_auth_error_is_not_retried(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    attempts = []

    def refused(engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> str:
        attempts.append(args["address"])
        raise graphql.GraphQLError("failed to push: 401 Unauthorized")

    publishing.on("Container", "publish", refused)
    with pytest.raises(FunctionError, match="refused"):
        await brokkr.call("publish", pr=3, sha=SHA, registry=namespace, component="UI")
    assert len(attempts) == 1


async def test_a_moved_ui_folder_publishes_with_ui_path(
    engine: StandInEngine, registry: RegistryServer, namespace: str
):
    publish_to(engine, registry)
    host = dag.host().directory(str(FIXTURE_WORKSPACE))
    moved = host.without_directory("examples/ui").with_directory(
        "frontend/app", host.directory("examples/ui")
    )
    brokkr = ModuleCaller(engine, await moved.id())
    args = {"pr": 3, "sha": SHA, "registry": namespace, "component": "UI"}
    with pytest.raises(FunctionError, match=r"no UI app at 'examples/ui'.*--ui-path"):
        await brokkr.call("publish", **args)
    assert engine.pushes == []

    output = await brokkr.call("publish", ui_path="frontend/app/", **args)
    refs = output_lines(output)
    assert [r.split("@")[0] for r in refs] == [f"{namespace}/brokkr-ui:pr-3"]
    (push,) = engine.pushes
    for variant in [push.container, *push.variants]:
        (package,) = [n for n in variant.calls("withFile") if n.args["path"] == "/app/package.json"]
        folder = package.args["source"].parent
        assert (folder.field, folder.args["path"]) == ("directory", "frontend/app")
    # Its SBOMs are read from those images and attached (a loopback registry).
    assert len([line for line in output.splitlines() if line.startswith("# sbom ")]) == 2


@pytest.mark.parametrize("emulate", [False, True])
async def test_emulate_reaches_every_build(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, emulate: bool
):
    await brokkr.call(
        "publish", pr=3, sha=SHA, registry=namespace, component="AGENT", emulate=emulate
    )
    (push,) = image_pushes(publishing)
    cross_targets = [
        n.args["args"]
        for variant in [push.container, *push.variants]
        for n in variant.graph()
        if n.field == "withExec" and n.args["args"][:3] == ["rustup", "target", "add"]
    ]
    # Cross-compiling adds the other platform's Rust target; emulation adds none.
    assert (cross_targets == []) is emulate


async def test_publish_is_never_cached(brokkr: ModuleCaller):
    mod = await brokkr.typedefs()
    fn = mod.objects["Brokkr"].functions["publish"]
    assert fn.cache_policy == "Never"
    assert fn.args["password"].type == "Secret"
    assert fn.args["component"].type == "Component"
    assert fn.args["platforms"].default_value == BOTH
