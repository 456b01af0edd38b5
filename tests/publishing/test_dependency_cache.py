"""The dependency cache in publish: hits by digest, what is ignored, notes, never a failure."""

from __future__ import annotations

import graphql
import pytest
from dagger.mod._exceptions import FunctionError

from ci.build import rust as _rust
from ci.publishing import publish as _publish
from ci.rules import cache_key as _key
from tests.support.publishing import image_pushes, is_cache_image
from tests.support.registry_server import RegistryServer, push_image
from tests.support.standin import ModuleCaller, Node, StandInEngine

SHA = "0123456789abcdef0123456789abcdef01234567"
MEMBERS = ("brokkr-agent", "brokkr-broker", "brokkr-models", "brokkr-utils")


def notes(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("# dependency cache")]


def cooks(nodes: list[Node]) -> set[str]:
    return {
        n.key()
        for node in nodes
        for n in node.graph()
        if n.field == "withExec" and list(n.args["args"])[:3] == ["cargo", "chef", "cook"]
    }


def cache_pushes(engine: StandInEngine) -> dict[str, Node]:
    return {p.address: p.container for p in engine.pushes if is_cache_image(p.container)}


async def publish(brokkr: ModuleCaller, namespace: str, pr: int, **more: object) -> str:
    return await brokkr.call("publish", pr=pr, sha=SHA, registry=namespace, **more)


async def test_the_next_publish_starts_from_the_cache_by_digest_and_cooks_nothing(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    first = await publish(brokkr, namespace, 1)
    saved = cache_pushes(publishing)
    assert sorted(a.rsplit(":", 1)[0] for a in saved) == [f"{namespace}/brokkr-build-cache"] * 2
    assert len(notes(first)) == 2
    assert all(" saved " in n for n in notes(first))
    publishing.reset_recordings()

    second = await publish(brokkr, namespace, 2)
    assert len([n for n in notes(second) if ": hit deps-linux-" in n]) == 2
    assert cache_pushes(publishing) == {}
    rust = [p for p in image_pushes(publishing) if "brokkr-ui" not in p.address]
    variants = [v for p in rust for v in [p.container, *p.variants]]
    assert cooks(variants) == set()
    for variant in variants:
        pulls = [n.args["address"] for n in variant.graph() if n.field == "from"]
        (cached,) = {a for a in pulls if "brokkr-build-cache" in a}
        assert cached.startswith(f"{namespace}/brokkr-build-cache@sha256:")  # by digest
        # The builder still makes the workspace crates newer than anything cached.
        builder = next(
            n
            for n in variant.graph()
            if n.field == "withExec" and n.args["args"][:3] == ["cargo", "auditable", "build"]
        )
        execs = builder.execs()
        assert _rust.RESTORE_REGISTRY in execs
        assert execs.index(_rust.TOUCH_SOURCES) > execs.index(_rust.RESTORE_REGISTRY)
        assert execs[-2][:4] == ["cargo", "clean", "--release", "--package"]


async def test_a_cache_image_never_holds_the_workspace_crates(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    await publish(brokkr, namespace, 1, component="AGENT")
    for address, image in cache_pushes(publishing).items():
        (target,) = [
            n for n in image.calls("withDirectory") if n.args["path"] == "/brokkr-deps/target"
        ]
        excluded = target.args["exclude"]
        for member in MEMBERS:
            crate = member.replace("-", "_")
            assert f"**/.fingerprint/{member}-*" in excluded, address
            assert f"**/deps/lib{crate}-*" in excluded
            assert f"**/{member}" in excluded
        labels = {n.args["name"]: n.args["value"] for n in image.calls("withLabel")}
        assert labels[_key.KEY_LABEL] in address
        assert labels[_key.CONTENT_LABEL] == _key.CONTENT
        assert image.platform("?") == labels[_key.PLATFORM_LABEL] == "linux/amd64"


@pytest.mark.parametrize(
    ("created", "label"),
    [("2026-03-01T09:00:00+02:00", "2026-03-01T09:00:00+02:00"), ("", "1970-01-01T00:00:00Z")],
)
async def test_a_cache_image_is_dated_by_the_publish_created(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, created: str, label: str
):
    # The commit time orders keys for `prune --dependency-cache`; without --created the
    # 1970 default says no age (prune keeps such a key).
    await publish(brokkr, namespace, 1, component="AGENT", created=created)
    first = cache_pushes(publishing)
    assert len(first) == 2
    for image in first.values():
        labels = {n.args["name"]: n.args["value"] for n in image.calls("withLabel")}
        assert labels[_key.CREATED_LABEL] == label
    publishing.reset_recordings()
    # A later commit with the same dependencies finds those keys: no new cache image.
    text = await publish(brokkr, namespace, 2, component="AGENT", created="2026-04-01T00:00:00Z")
    assert len([n for n in notes(text) if ": hit deps-linux-" in n]) == 2
    assert cache_pushes(publishing) == {}


@pytest.mark.parametrize(
    ("what", "image", "said"),
    [
        ("another platform", {"platforms": ["linux/arm64"]}, "was cooked on linux/arm64"),
        ("no labels", {"labels": {}}, "lacks the expected content"),
        ("an index", {"index": True, "platforms": ["linux/amd64"]}, "is an index"),
    ],
)
async def test_a_cache_image_that_does_not_fit_is_ignored_with_a_note_and_the_cook_runs(
    brokkr: ModuleCaller,
    publishing: StandInEngine,
    namespace: str,
    registry: RegistryServer,
    what: str,
    image: dict[str, object],
    said: str,
):
    await publish(brokkr, namespace, 1, component="AGENT")
    amd64 = next(a for a in cache_pushes(publishing) if ":deps-linux-amd64-" in a)
    key = amd64.rsplit("-", 1)[1]
    repository, tag = amd64.removeprefix(f"{registry.registry}/").rsplit(":", 1)
    fields = {
        "platforms": ["linux/amd64"],
        "index": False,
        "labels": _key.cache_labels(key, "linux/amd64"),
        **image,
    }
    push_image(registry.base_url, repository, tag, seed=what, **fields)  # type: ignore[arg-type]
    publishing.reset_recordings()

    text = await publish(brokkr, namespace, 2, component="AGENT")
    assert any(said in n and tag in n for n in notes(text)), notes(text)
    variants = [v for p in image_pushes(publishing) for v in [p.container, *p.variants]]
    assert len(cooks(variants)) == 1  # amd64 cooks again; arm64 came from the cache
    assert f"{namespace}/brokkr-build-cache:{tag}" in cache_pushes(publishing)  # saved anew


async def test_a_failed_cache_push_is_a_note_never_a_failed_publish(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    publishing.fail_when(
        lambda n: n.field == "withExec" and n.args["args"] == _rust.SAVE_REGISTRY,
        "no space left on device",
    )
    text = await publish(brokkr, namespace, 1, component="BROKER")
    refs = [line for line in text.splitlines() if not line.startswith("#")]
    assert refs == [f"{namespace}/brokkr-broker:pr-1@{refs[0].split('@')[1]}"]
    failed = [n for n in notes(text) if "failed (the publish is not affected)" in n]
    assert len(failed) == 2
    assert all("no space left on device" in n for n in failed)


async def test_without_a_login_a_remote_registry_cache_is_read_only(
    brokkr: ModuleCaller,
    publishing: StandInEngine,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(_publish, "is_loopback_host", lambda _host: False)
    text = await publish(brokkr, namespace, 1, component="BROKER")
    assert cache_pushes(publishing) == {}
    (note,) = notes(text)
    assert "read-only: 2 new cook(s) not saved" in note


async def test_no_dependency_cache_neither_reads_nor_writes(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    await publish(brokkr, namespace, 1, component="BROKER")
    publishing.reset_recordings()
    text = await publish(brokkr, namespace, 2, component="BROKER", no_dependency_cache=True)
    assert notes(text) == []
    assert cache_pushes(publishing) == {}
    variants = [v for p in image_pushes(publishing) for v in [p.container, *p.variants]]
    assert len(cooks(variants)) == 2


async def test_another_cache_repository(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    text = await publish(
        brokkr, namespace, 1, component="BROKER", dependency_cache=f"{namespace}/ci/deps"
    )
    assert all(a.startswith(f"{namespace}/ci/deps:deps-") for a in cache_pushes(publishing))
    assert len(notes(text)) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"dependency_cache": "x/y", "no_dependency_cache": True}, "exclude each other"),
        ({"dependency_cache": "ghcr.io/x/y:tag"}, "--dependency-cache 'ghcr.io/x/y:tag'"),
    ],
)
async def test_bad_cache_options_are_refused_before_any_work(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, args, message
):
    with pytest.raises(FunctionError, match=message):
        await publish(brokkr, namespace, 1, **args)
    assert publishing.pushes == []
    assert publishing.evaluated == []


async def test_list_tags_hides_the_cache_tags_unless_asked(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, registry: RegistryServer
):
    cache = f"{namespace}/brokkr-images"
    await publish(brokkr, namespace, 1, component="BROKER", dependency_cache=cache)
    # The cache shares a repository with an image here: list-tags tells them apart.
    push_image(registry.base_url, cache.split("/", 1)[1], "1.0.0")
    assert await brokkr.call("list_tags", repository=cache) == ["1.0.0"]
    shown = await brokkr.call("list_tags", repository=cache, cache_tags=True)
    assert len(shown) == 3
    assert all(_key.is_cache_tag(t) for t in shown if t != "1.0.0")


def reads_recipe(engine: StandInEngine) -> bool:
    """Whether the module read a planner's recipe.json out of the engine."""
    return any(
        field == "contents" and n.args["args"][:3] == ["cargo", "chef", "prepare"]
        for field, node, *_ in engine.evaluated
        for n in node.graph()
        if n.field == "withExec"
    )


def recipe_inputs(engine: StandInEngine) -> set[str]:
    """How every cook got its recipe.json: `withNewFile` (its text) or `withFile`."""
    return {
        n.field
        for p in engine.pushes
        for variant in [p.container, *p.variants]
        for n in variant.graph()
        if n.field in ("withNewFile", "withFile") and n.args["path"] == "/app/recipe.json"
    }


async def test_a_cold_publish_waits_for_three_engine_rounds(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    # Long enough that a busy machine cannot start a round-trip of one round after
    # another of the same round ended.
    publishing.delays = dict.fromkeys(("sync", "stdout", "contents", "publish"), 2.5)
    text = await brokkr.call(
        "publish", ref="refs/tags/v0.4.0", sha=SHA, registry=namespace, component="AGENT"
    )
    assert len([n for n in notes(text) if " saved " in n]) == 2
    # Nothing is read before the build: the cooks take the planner's file.
    assert not reads_recipe(publishing)
    assert recipe_inputs(publishing) == {"withFile"}
    # Build + checks + SBOM reads, the immutable push, then the moving tags beside the
    # cache pushes.
    assert publishing.serial_rounds() == 3
    pushes = [
        (is_cache_image(node), started, ended)
        for field, node, started, ended in publishing.evaluated
        if field == "publish"
    ]
    first_image_push_ended = min(e for cache, _, e in pushes if not cache)
    last_image_push_ended = max(e for cache, _, e in pushes if not cache)
    cache_started = [s for cache, s, _ in pushes if cache]
    assert len(cache_started) == 2
    assert min(cache_started) >= first_image_push_ended  # after the immutable tag
    assert max(cache_started) < last_image_push_ended  # beside the moving tags


async def test_without_a_cache_that_saves_the_recipe_is_read_so_the_engine_keys_on_it(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    await publish(brokkr, namespace, 1, component="BROKER", no_dependency_cache=True)
    assert reads_recipe(publishing)
    assert recipe_inputs(publishing) == {"withNewFile"}


async def test_nothing_is_saved_when_an_immutable_push_failed(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    from tests.support import standin as _standin

    def agent_down(engine: StandInEngine, node: Node | None, args: dict[str, object]) -> str:
        if "/brokkr-agent:" in str(args["address"]):
            raise graphql.GraphQLError("failed to push: 502 Bad Gateway")
        return _standin.BUILTIN[("Container", "publish")](engine, node, args)

    publishing.on("Container", "publish", agent_down)
    with pytest.raises(FunctionError, match="brokkr-agent:pr-1 failed"):
        await publish(brokkr, namespace, 1, components=["BROKER", "AGENT"])
    # The broker was pushed, but the release is not: its cooks are not saved either.
    assert [p.address for p in image_pushes(publishing)] == [f"{namespace}/brokkr-broker:pr-1"]
    assert cache_pushes(publishing) == {}
