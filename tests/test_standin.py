"""The stand-in engine itself: the other harness tests are only as good as it is."""

import dagger
import pytest
from dagger import dag

from tests._standin import FIXTURE_WORKSPACE, StandInEngine


async def test_invalid_query_is_rejected_like_the_engine(engine: StandInEngine):
    answer = engine.execute({"query": '{ container { fromm(address: "alpine") { id } } }'})
    assert "Cannot query field" in answer["errors"][0]["message"]
    answer = engine.execute({"query": '{ container { from(adress: "alpine") { id } } }'})
    assert answer["errors"]
    assert [q.valid for q in engine.queries[-2:]] == [False, False]
    engine.queries.clear()  # provoked on purpose: the fixture fails a test on invalid queries


async def test_ids_map_back_to_the_call_chain(engine: StandInEngine):
    base = dag.container(platform=dagger.Platform("linux/arm64")).from_("debian:bookworm-slim")
    ctr = base.with_env_variable("A", "1").with_exec(["echo", "hi"])
    node = engine.node(await ctr.id())
    assert [n.field for n in node.chain()] == ["container", "from", "withEnvVariable", "withExec"]
    assert node.execs() == [["echo", "hi"]]
    assert node.env() == {"A": "1"}
    assert node.platform("linux/amd64") == "linux/arm64"
    assert node.base_image() == "debian:bookworm-slim"
    # Equal chains get equal IDs, as content-addressed engine IDs do.
    assert await ctr.id() == node.id
    assert await ctr.platform() == "linux/arm64"


async def test_id_arguments_become_nodes(engine: StandInEngine):
    builder = dag.container().from_("rust").with_exec(["cargo", "build"])
    runtime = dag.container().from_("debian").with_file("/bin/x", builder.file("/target/x"))
    node = engine.node(await runtime.id())
    source = node.first("withFile").args["source"]
    assert source.field == "file"
    assert source.parent.execs() == [["cargo", "build"]]
    assert builder.__class__ is dagger.Container
    assert any(n.field == "withExec" for n in node.graph())


async def test_host_directories_are_read_from_disk(engine: StandInEngine):
    src = dag.host().directory(str(FIXTURE_WORKSPACE), exclude=["**/target"])
    assert "crates" in await src.entries()
    assert await src.exists("Cargo.toml")
    assert not await src.exists("crates/brokkr-nothing")
    assert await src.without_directory("crates").exists("crates/brokkr-broker") is False
    cargo = await src.file("Cargo.toml").contents()
    assert "[workspace]" in cargo


async def test_failures_surface_on_evaluation_only(engine: StandInEngine):
    engine.fail_when(lambda n: n.field == "withExec" and n.args["args"][0] == "false", "exit 1")
    ctr = dag.container().from_("alpine").with_exec(["false"])
    await ctr.id()  # composing is lazy
    with pytest.raises(dagger.QueryError, match="exit 1"):
        await ctr.sync()
    assert engine.pushes == []


async def test_publish_is_recorded_with_its_variants(engine: StandInEngine):
    amd = dag.container(platform=dagger.Platform("linux/amd64")).from_("alpine")
    arm = dag.container(platform=dagger.Platform("linux/arm64")).from_("alpine")
    ref = await amd.publish("127.0.0.1:5000/x:1", platform_variants=[arm])
    assert ref.startswith("127.0.0.1:5000/x:1@sha256:")
    (push,) = engine.pushes
    assert push.platforms("linux/amd64") == ["linux/amd64", "linux/arm64"]
    assert ref.endswith(push.digest)


async def test_secrets_resolve_from_env_without_entering_a_query(engine: StandInEngine):
    engine.env["TOKEN"] = "s3cr3t-value"
    secret = dag.secret("env://TOKEN")
    assert await secret.plaintext() == "s3cr3t-value"
    assert "s3cr3t-value" not in engine.sent_text()
