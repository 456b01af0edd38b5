"""`build`, `stage` and `image` reading the dependency cache (--dependency-cache REPO).

Through the module on the stand-in engine, against the real docker-registry: a
warm cache replaces every `cargo chef cook`, a miss or any cache problem builds
exactly what is built without the cache, nothing is ever written, bad flags are
refused before any work, and the password stays out of every query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from dagger import dag
from dagger.mod._exceptions import FunctionError

from ci import dependency_cache as _cache
from ci.access import RegistryAccess
from ci.build import rust as _rust
from ci.errors import BrokkrError
from ci.registry import dependency_cache as _lookup
from ci.registry.client import Credentials
from ci.rules import cache_key as _key
from ci.rules.components import Component
from tests.support.hostile_server import HostileServer, Request, respond
from tests.support.registry_server import RegistryServer, free_port, push_image
from tests.support.standin import FIXTURE_WORKSPACE, ModuleCaller, Node, StandInEngine

SHA = "0123456789abcdef0123456789abcdef01234567"
BOTH = ["linux/amd64", "linux/arm64"]


def cooks(nodes: Sequence[Node]) -> int:
    """How many distinct `cargo chef cook` execs the build graphs of `nodes` hold."""
    return len(
        {
            n.key()
            for node in nodes
            for n in node.graph()
            if n.field == "withExec" and list(n.args["args"])[:3] == ["cargo", "chef", "cook"]
        }
    )


def cache_pulls(node: Node, repository: str) -> set[str]:
    """The images of `repository` the build graph of `node` starts from."""
    return {
        n.args["address"]
        for n in node.graph()
        if n.field == "from" and str(n.args["address"]).startswith(f"{repository}@")
    }


def evaluated(engine: StandInEngine) -> list[Node]:
    return [node for _field, node, _start, _end in engine.evaluated]


async def seed_cache(
    registry: RegistryServer,
    repository: str,
    components: Sequence[Component],
    platforms: Sequence[str],
    *,
    auth: tuple[str, str] | None = None,
) -> list[str]:
    """Push a fitting cache image for every cook of `components` x `platforms` (as a
    publish would have saved it); the tags pushed."""
    access = RegistryAccess(credentials=Credentials(*auth) if auth else None)
    reader = _cache.CacheReader(
        _key.parse_cache_repository(f"{registry.registry}/{repository}"), access
    )
    source = dag.host().directory(str(FIXTURE_WORKSPACE))
    plan = await _cache.read_only(reader, source, components, platforms, emulate=False)
    assert plan.images == {}, "the cache was expected empty before seeding"
    for cook in plan.cooks:
        push_image(
            registry.base_url,
            repository,
            cook.tag,
            platforms=[cook.plan.build_platform],
            index=False,
            labels=_key.cache_labels(cook.key, cook.plan.build_platform),
            seed=cook.tag,
            auth=auth,
        )
    return [cook.tag for cook in plan.cooks]


async def without_cache(brokkr: ModuleCaller, engine: StandInEngine, **args: object) -> str:
    """The container ID `build` returns without a cache (then forgets what it recorded)."""
    built = await brokkr.call("build", **args)
    engine.reset_recordings()
    return built


# ---------------------------------------------------------------------------
# A warm cache


async def test_with_the_cache_ci_saved_build_and_image_run_no_cook(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    # CI's publish saved its cooks (both platforms; broker and agent share them).
    await brokkr.call("publish", pr=1, sha=SHA, registry=namespace, component="BROKER")
    publishing.reset_recordings()
    cache = f"{namespace}/brokkr-build-cache"

    built = publishing.node(
        await brokkr.call(
            "build", component="AGENT", platform="linux/arm64", dependency_cache=cache
        )
    )
    assert cooks([built]) == 0
    assert cooks(evaluated(publishing)) == 0  # the start check built it without a cook
    (pulled,) = cache_pulls(built, cache)
    assert pulled.startswith(f"{cache}@sha256:")  # by digest
    restored = [n for n in built.graph() if n.field == "withExec"]
    assert [n for n in restored if n.args["args"] == _rust.RESTORE_REGISTRY]

    images = await brokkr.call(
        "image", components=["BROKER", "AGENT"], platforms=BOTH, dependency_cache=cache
    )
    variants = [publishing.node(v) for image in images for v in image["variants"]]
    assert len(variants) == 4
    assert cooks(variants) == 0
    assert cooks(evaluated(publishing)) == 0
    assert publishing.pushes == []  # read only: nothing saved, nothing pushed


async def test_stage_reads_the_cache_for_the_stages_built_on_the_cook(
    brokkr: ModuleCaller,
    engine: StandInEngine,
    registry: RegistryServer,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
):
    repository = namespace.split("/", 1)[1] + "/deps"
    await seed_cache(registry, repository, [Component.BROKER], ["linux/amd64"])
    cache = f"{namespace}/deps"
    engine.reset_recordings()

    cacher = engine.node(
        await brokkr.call("stage", component="BROKER", stage="CACHER", dependency_cache=cache)
    )
    assert cooks([cacher]) == 0
    assert cacher.execs()[-1] == _rust.RESTORE_REGISTRY
    assert len(cache_pulls(cacher, cache)) == 1

    # The planner (and the UI) never look the cache up: no registry read, the same container.
    looked: list[str] = []
    real = _lookup.lookup

    async def counting(*args: object, **kwargs: object) -> _lookup.Lookup:
        looked.append(str(kwargs["key"]))
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_lookup, "lookup", counting)
    for args in (
        {"component": "BROKER", "stage": "PLANNER"},
        {"component": "UI", "stage": "RUNTIME"},
    ):
        plain = await brokkr.call("stage", **args)
        assert await brokkr.call("stage", dependency_cache=cache, **args) == plain
    assert looked == []


# ---------------------------------------------------------------------------
# A miss, and every cache problem: the build without the cache


async def test_a_miss_cooks_and_builds_what_is_built_without_the_cache(
    brokkr: ModuleCaller, engine: StandInEngine, namespace: str
):
    plain = await without_cache(brokkr, engine, component="BROKER")
    built = await brokkr.call(
        "build", component="BROKER", dependency_cache=f"{namespace}/brokkr-build-cache"
    )
    assert built == plain
    assert cooks([engine.node(built)]) == 1
    assert engine.pushes == []


async def garbage(request: Request, writer: asyncio.StreamWriter) -> None:
    """A registry that answers every manifest with what no registry sends."""
    await respond(writer, 200, b"\x00not a manifest{", [("Content-Type", "application/json")])


@pytest.mark.parametrize("problem", ["unreachable", "garbage"])
async def test_a_cache_that_cannot_answer_cooks_and_never_fails_the_build(
    brokkr: ModuleCaller, engine: StandInEngine, problem: str
):
    plain = await without_cache(brokkr, engine, component="AGENT")
    async with HostileServer(garbage) as server:
        port = server.port if problem == "garbage" else free_port()  # nothing listens there
        cache = f"127.0.0.1:{port}/brokkr-build-cache"
        built = await brokkr.call("build", component="AGENT", dependency_cache=cache)
        reader = _cache.CacheReader(_key.parse_cache_repository(cache), RegistryAccess())
        source = dag.host().directory(str(FIXTURE_WORKSPACE))
        plan = await _cache.read_only(reader, source, [Component.AGENT], None, emulate=False)
    assert built == plain
    assert cooks([engine.node(built)]) == 1
    (note,) = plan.notes
    assert note.startswith("# dependency cache: ")
    assert "cooking" in note
    assert "127.0.0.1" in note
    if problem == "garbage":
        assert server.hits("/manifests/deps-linux-amd64-") >= 1


async def test_a_cache_image_the_engine_cannot_pull_is_dropped_and_the_cook_runs(
    brokkr: ModuleCaller, engine: StandInEngine, registry: RegistryServer, namespace: str
):
    repository = namespace.split("/", 1)[1] + "/brokkr-build-cache"
    await seed_cache(registry, repository, [Component.BROKER], ["linux/amd64"])
    plain = await without_cache(brokkr, engine, component="BROKER")
    engine.fail_when(
        lambda n: n.field == "from" and "brokkr-build-cache@" in str(n.args["address"]),
        "failed to resolve source metadata: unauthorized",
    )
    built = await brokkr.call(
        "build", component="BROKER", dependency_cache=f"{namespace}/brokkr-build-cache"
    )
    assert built == plain
    assert cooks([engine.node(built)]) == 1

    reader = _cache.CacheReader(
        _key.parse_cache_repository(f"{namespace}/brokkr-build-cache"), RegistryAccess()
    )
    source = dag.host().directory(str(FIXTURE_WORKSPACE))
    plan = await _cache.read_only(reader, source, [Component.BROKER], None, emulate=False)
    assert plan.images == {Component.BROKER: {}}
    assert [n for n in plan.notes if "could not pull the linux/amd64 cache image" in n]
    assert [n for n in plan.notes if "unauthorized" in n]


# ---------------------------------------------------------------------------
# Flags


@pytest.mark.parametrize("function", ["build", "stage", "image"])
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"dependency_cache": "ghcr.io/x/y:tag"}, "--dependency-cache 'ghcr.io/x/y:tag'"),
        ({"dependency_cache": "ghcr.io/x/y@sha256:" + "a" * 64}, "is not a repository"),
        ({"dependency_cache": "Not A Repo!"}, "--dependency-cache 'Not A Repo!'"),
        ({"dependency_cache": "  "}, "--dependency-cache '  '"),
        ({"username": "me"}, "give --dependency-cache REPO with them"),
        ({"dependency_cache": "ghcr.io/x/y", "username": "me"}, "--password"),
    ],
)
async def test_bad_cache_flags_are_refused_before_any_work(
    brokkr: ModuleCaller, engine: StandInEngine, function: str, flags: dict, message: str
):
    args: dict[str, object] = {"component": "BROKER"}
    if function == "stage":
        args["stage"] = "RUNTIME"
    engine.reset_recordings()
    with pytest.raises(FunctionError, match=message.replace("?", r"\?").replace("(", r"\(")):
        await brokkr.call(function, **args, **flags)
    assert engine.evaluated == []
    assert engine.pushes == []
    assert "exists" not in engine.sent_text()  # not even the source was read


async def test_a_registry_service_for_a_remote_cache_is_refused_before_any_work(
    brokkr: ModuleCaller, engine: StandInEngine
):
    service_id = await dag.address("tcp://localhost:5000").service().id()
    engine.reset_recordings()
    with pytest.raises(FunctionError, match="--registry-service needs a loopback registry"):
        await brokkr.call(
            "build",
            component="BROKER",
            dependency_cache="ghcr.io/colliery-io/brokkr-build-cache",
            registry_service=service_id,
        )
    assert engine.evaluated == []
    assert "start" not in engine.sent_text()


async def test_the_login_reads_a_private_cache_and_the_password_stays_out_of_every_query(
    brokkr: ModuleCaller, engine: StandInEngine, auth_registry: RegistryServer
):
    login = (auth_registry.username, auth_registry.password)
    repository = "private/brokkr-build-cache"
    await seed_cache(auth_registry, repository, [Component.AGENT], ["linux/amd64"], auth=login)
    cache = f"{auth_registry.registry}/{repository}"
    engine.env["CACHE_TOKEN"] = login[1]
    secret_id = await dag.secret("env://CACHE_TOKEN").id()
    engine.reset_recordings()

    built = engine.node(
        await brokkr.call(
            "build",
            component="AGENT",
            dependency_cache=cache,
            username=login[0],
            password=secret_id,
        )
    )
    assert cooks([built]) == 0
    pulls = {n.key(): n for n in built.graph() if n.field == "from" and cache in n.args["address"]}
    (pull,) = pulls.values()
    (auth,) = [n for n in pull.chain() if n.field == "withRegistryAuth"]
    assert auth.args["username"] == login[0]
    assert isinstance(auth.args["secret"], Node)
    assert login[1] not in engine.sent_text()

    # Anonymous, the same private cache is a miss: the build cooks and does not fail.
    anonymous = engine.node(await brokkr.call("build", component="AGENT", dependency_cache=cache))
    assert cooks([anonymous]) == 1


def test_the_cache_option_is_parsed_once_into_a_repository():
    ref = _key.parse_cache_repository(" ghcr.io/colliery-io/brokkr-build-cache ")
    assert (ref.registry, ref.repository) == ("ghcr.io", "colliery-io/brokkr-build-cache")
    with pytest.raises(BrokkrError, match="is not a repository"):
        _key.parse_cache_repository("ghcr.io/x/y:latest")
