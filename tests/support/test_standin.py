"""The stand-in engine itself: the other harness tests are only as good as it is."""

import asyncio
import hashlib
import uuid
from pathlib import Path

import dagger
import graphql
import httpx
import pytest
from dagger import dag

from tests.support.registry_server import RegistryServer
from tests.support.standin import (
    FIXTURE_WORKSPACE,
    SCHEMA_FILE,
    PatternMatcher,
    StandInEngine,
    parse_reference,
    push_to_registry,
    schema_path,
)


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


# -- the vendored schema -----------------------------------------------------------

SCHEMA_SHA256 = "d43de1e983c199b21e935b3e6b72c54c8bfa37745749fa892f7b5be3f6c9a1fb"


def test_the_vendored_schema_is_the_recorded_one(monkeypatch: pytest.MonkeyPatch):
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert f"sha256: `{SCHEMA_SHA256}`" in (SCHEMA_FILE.parent / "README.md").read_text()
    monkeypatch.delenv("DAGGER_SCHEMA", raising=False)
    assert schema_path() == SCHEMA_FILE
    monkeypatch.setenv("DAGGER_SCHEMA", "/elsewhere/schema.graphqls")
    assert schema_path() == Path("/elsewhere/schema.graphqls")


# -- ID arguments are checked against @expectedType --------------------------------

WITH_DIRECTORY = 'query($id: ID!) { container { withDirectory(path: "/x", source: $id) { id } } }'


async def test_an_id_argument_must_name_the_expected_type(engine: StandInEngine):
    folder = dag.directory().with_new_file("a.txt", "a")
    wrong = {
        "File": await folder.file("a.txt").id(),
        "Secret": await dag.set_secret("s", "value").id(),
        "Container": await dag.container().from_("alpine").id(),
    }
    for type_name, id_ in wrong.items():
        answer = engine.execute({"query": WITH_DIRECTORY, "variables": {"id": id_}})
        (error,) = answer["errors"]
        assert error["message"] == f'expected "Directory" ID, got {type_name} ID'
    answer = engine.execute({"query": WITH_DIRECTORY, "variables": {"id": await folder.id()}})
    assert "errors" not in answer
    # Lists of IDs too: a platform variant must be a Container.
    answer = engine.execute(
        {
            "query": "query($ids: [ID!]) { container { asTarball(platformVariants: $ids) {id} } }",
            "variables": {"ids": [await folder.id()]},
        }
    )
    assert answer["errors"][0]["message"] == 'expected "Container" ID, got Directory ID'


# -- include/exclude patterns as the engine matches them ---------------------------


def tree(root: Path, *paths: str) -> Path:
    for rel in paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    return root


FILES = (
    "Cargo.toml",
    "target/debug/x",
    "crates/a/target/y",
    "crates/a/src/lib.rs",
    "crates/a/src/nested/mod.rs",
    "node_modules/m/index.js",
    "examples/ui/node_modules/m/index.js",
)


@pytest.mark.parametrize(
    ("exclude", "include", "kept"),
    [
        # Anchored at the root like .dockerignore: `target/` is only the top-level one.
        (["target/"], [], set(FILES) - {"target/debug/x"}),
        (["**/target"], [], set(FILES) - {"target/debug/x", "crates/a/target/y"}),
        # `*` stops at `/`; `**` spans folders.
        (["crates/*.rs"], [], set(FILES)),
        (
            ["crates/**/*.rs"],
            [],
            set(FILES) - {"crates/a/src/lib.rs", "crates/a/src/nested/mod.rs"},
        ),
        (["node_modules"], [], set(FILES) - {"node_modules/m/index.js"}),
        # A later `!` re-includes; the last matching pattern decides.
        (["**/target", "!crates/a/target"], [], set(FILES) - {"target/debug/x"}),
        # Include: a folder pattern brings everything under it.
        (
            [],
            ["Cargo.toml", "crates/"],
            {f for f in FILES if f == "Cargo.toml" or f.startswith("crates/")},
        ),
        (["**/target"], ["crates"], {"crates/a/src/lib.rs", "crates/a/src/nested/mod.rs"}),
    ],
)
async def test_patterns_match_as_in_the_engine(
    engine: StandInEngine, tmp_path: Path, exclude: list[str], include: list[str], kept: set[str]
):
    root = str(tree(tmp_path, *FILES))
    host = dag.host().directory(root, exclude=exclude, include=include)
    assert set(await host.glob("**/*")) == kept
    full = dag.host().directory(root)
    assert set(await full.filter(exclude=exclude, include=include).glob("**/*")) == kept
    copied = dag.directory().with_directory("/", full, exclude=exclude, include=include)
    assert set(await copied.glob("**/*")) == kept


def test_pattern_matcher_rejects_a_lone_bang():
    with pytest.raises(graphql.GraphQLError, match="illegal exclusion pattern"):
        PatternMatcher(["!"])


# -- publish: address, contents, credentials -------------------------------------

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "address",
    [
        "",
        "127.0.0.1:5000/Brokkr/broker:1",  # repositories are lower case
        "127.0.0.1:5000/x:1:2",
        "127.0.0.1:5000/x:has space",
        "127.0.0.1:5000/x:" + "t" * 129,  # tags are at most 128 characters
        "127.0.0.1:5000/x@sha256:abc",  # a digest is 32+ hex digits
        "127.0.0.1:5000//x:1",
        "-x/y:1",
    ],
)
async def test_publish_rejects_a_malformed_address(engine: StandInEngine, address: str):
    with pytest.raises(dagger.QueryError, match="invalid reference format"):
        await dag.container().from_("alpine").publish(address)
    assert engine.pushes == []


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("alpine", ("docker.io", "library/alpine", None, None)),
        (
            "ghcr.io/colliery-io/brokkr-ui:1.2.3",
            ("ghcr.io", "colliery-io/brokkr-ui", "1.2.3", None),
        ),
        (f"127.0.0.1:5000/a/b:v1@{DIGEST}", ("127.0.0.1:5000", "a/b", "v1", DIGEST)),
        ("[::1]:5000/x", ("[::1]:5000", "x", None, None)),
        ("localhost/x", ("localhost", "x", None, None)),
    ],
)
def test_addresses_parse_as_in_the_engine(address: str, parsed: tuple[str, ...]):
    assert parse_reference(address) == parsed


async def test_publish_rejects_an_empty_container(engine: StandInEngine):
    with pytest.raises(dagger.QueryError, match="empty container"):
        await dag.container().with_label("a", "b").publish("127.0.0.1:5000/x:1")
    full = dag.container(platform=dagger.Platform("linux/amd64")).from_("alpine")
    empty = dag.container(platform=dagger.Platform("linux/arm64"))
    with pytest.raises(dagger.QueryError, match="empty container"):
        await full.publish("127.0.0.1:5000/x:1", platform_variants=[empty])
    assert engine.pushes == []
    # A scratch image with a file is not empty.
    scratch = dag.container().with_new_file("/hello", "hi")
    assert "@sha256:" in await scratch.publish("127.0.0.1:5000/x:1")


@pytest.mark.registry
async def test_publish_pushes_with_the_credentials_withregistryauth_attached(
    engine: StandInEngine, auth_registry: RegistryServer
):
    assert auth_registry.username is not None
    assert auth_registry.password is not None
    engine.on_publish = push_to_registry(
        engine, registry=auth_registry.registry, base_url=auth_registry.base_url
    )
    engine.env["GOOD"] = auth_registry.password
    engine.env["BAD"] = "not-the-password"
    image = dag.container().from_("alpine")
    address = f"{auth_registry.registry}/t{uuid.uuid4().hex[:8]}/x:1"

    with pytest.raises(dagger.QueryError, match="failed to push"):
        await image.publish(address)  # no login attached
    wrong = image.with_registry_auth(address, auth_registry.username, dag.secret("env://BAD"))
    with pytest.raises(dagger.QueryError, match="failed to push"):
        await wrong.publish(address)
    elsewhere = image.with_registry_auth(
        "ghcr.io/x/y", auth_registry.username, dag.secret("env://GOOD")
    )
    with pytest.raises(dagger.QueryError, match="failed to push"):
        await elsewhere.publish(address)  # a login for another registry is not used

    right = image.with_registry_auth(address, auth_registry.username, dag.secret("env://GOOD"))
    reference = await right.publish(address)
    digest = reference.split("@", 1)[1]
    repository = address.split("/", 1)[1].removesuffix(":1")
    manifest = await asyncio.to_thread(
        httpx.head,
        f"{auth_registry.base_url}/v2/{repository}/manifests/1",
        auth=(auth_registry.username, auth_registry.password),
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},  # no variants
    )
    assert manifest.headers["Docker-Content-Digest"] == digest
    assert len(engine.pushes) == 1
    assert auth_registry.password not in engine.sent_text()


# -- making a chosen withExec fail ------------------------------------------------


async def test_fail_exec_fails_the_chosen_exec_as_the_engine_would(engine: StandInEngine):
    engine.fail_exec("cargo", "build", exit_code=101, stderr="error[E0425]: cannot find `x`")
    base = dag.container().from_("rust")
    broken = base.with_exec(["cargo", "build", "--release"]).with_exec(["ls"])
    await broken.id()  # composing is lazy: nothing fails yet
    with pytest.raises(dagger.ExecError) as info:
        await broken.sync()
    assert info.value.exit_code == 101
    assert info.value.stderr == "error[E0425]: cannot find `x`"
    assert info.value.command == ["cargo", "build", "--release"]
    assert 'process "cargo build --release" did not complete successfully' in str(info.value)
    # Other execs, and an exec that merely mentions the words, still run.
    await base.with_exec(["cargo", "test"]).sync()
    await base.with_exec(["echo", "cargo", "build"]).sync()
    # Whatever depends on the failing exec fails on evaluation too.
    with pytest.raises(dagger.ExecError):
        await dag.container().from_("debian").with_file("/x", broken.file("/x")).sync()


# -- the planner's recipe, file digests, round-trips ---------------------------------


def _planner(src: dagger.Directory) -> dagger.Container:
    return (
        dag.container()
        .from_("rust")
        .with_directory("/app", src)
        .with_exec(["cargo", "chef", "prepare", "--recipe-path", "recipe.json"])
    )


def _copy_fixture(tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(FIXTURE_WORKSPACE, copy, ignore=shutil.ignore_patterns("node_modules"))
    return copy


async def test_the_recipe_is_derived_from_the_manifests_with_member_versions_masked(
    engine: StandInEngine, tmp_path: Path
):
    tree = _copy_fixture(tmp_path)
    before = await _planner(dag.host().directory(str(tree))).file("/app/recipe.json").contents()
    # A release: every member's version bumped, a source edited.
    for name in ("Cargo.toml", "Cargo.lock"):
        path = tree / name
        path.write_text(path.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    main = tree / "crates/brokkr-broker/src/main.rs"
    main.write_text(main.read_text() + "\n// edited\n")
    bumped = await _planner(dag.host().directory(str(tree))).file("/app/recipe.json").contents()
    assert bumped == before
    assert "0.0.1" in before
    assert "0.1.0" not in before
    # A dependency in the lockfile is in the recipe.
    lock = tree / "Cargo.lock"
    lock.write_text(
        lock.read_text()
        + '\n[[package]]\nname = "serde"\nversion = "1.0.1"\n'
        + 'source = "registry+https://github.com/rust-lang/crates.io-index"\n'
    )
    changed = await _planner(dag.host().directory(str(tree))).file("/app/recipe.json").contents()
    assert changed != before
    assert "1.0.1" in changed


async def test_a_file_digest_is_its_content_hash_whatever_chain_made_it(engine: StandInEngine):
    engine.container_files["/out.txt"] = "same"
    a = dag.container().from_("alpine").with_exec(["a"]).file("/out.txt")
    b = dag.container().from_("debian").with_exec(["b"]).file("/out.txt")
    expected = "sha256:" + hashlib.sha256(b"same").hexdigest()
    assert await a.digest() == await b.digest() == expected


async def test_delays_and_rounds_cover_the_four_round_trips_only(engine: StandInEngine):
    engine.container_files["/out.txt"] = "x"
    engine.delays = dict.fromkeys(("sync", "stdout", "contents", "publish"), 0.05)
    ctr = dag.container().from_("alpine").with_exec(["true"])
    await ctr.sync()  # round 1
    await ctr.with_exec(["echo"]).stdout()  # round 2
    await ctr.file("/out.txt").contents()  # round 3
    await ctr.publish("localhost:5000/x:1")  # round 4
    # Reading the host's files is not a round-trip: not delayed, not counted.
    await dag.host().directory(str(FIXTURE_WORKSPACE)).file("Cargo.toml").contents()
    field, node, started, ended = engine.evaluated[-1]
    assert field == "contents"
    assert node.root_container() is None
    assert ended - started < 0.05
    assert [e[0] for e in engine.round_trips()] == ["sync", "stdout", "contents", "publish"]
    assert engine.serial_rounds() == 4
    # Concurrent round-trips are one round.
    engine.evaluated.clear()
    await asyncio.gather(*(ctr.with_exec([str(i)]).sync() for i in range(3)))
    assert engine.serial_rounds() == 1
