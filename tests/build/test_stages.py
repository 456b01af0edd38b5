"""The build graph of every component, walked through the stand-in engine.

The functions of `ci.build.stages` and `ci.build.image` are called directly (as the
module's `build`, `stage` and `image` functions do) against the fixture
workspace; the containers they return are resolved to their recorded call
chains and checked: base images, platforms, commands, cache mounts, files,
user, ports, entrypoint. The planner's recipe is answered by the stand-in from
the workspace's manifests, as `cargo chef prepare` would compute it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import dagger
import pytest
from dagger import dag
from dagger.mod._exceptions import FunctionError

from ci.build import image as _image
from ci.build import rust as _rust
from ci.build import stages as _build
from ci.build import ui as _ui
from ci.build.stages import binary_candidates, build_image, build_stage
from ci.errors import BrokkrError
from ci.rules.components import COMPONENTS, Component, Stage
from ci.rules.platforms import parse_platform, parse_platforms
from ci.rules.versions import KUBECTL_SHA256, KUBECTL_VERSION, RUNTIME_PACKAGES
from tests.support.dockerfile import apt_packages
from tests.support.standin import (
    FIXTURE_WORKSPACE,
    ModuleCaller,
    Node,
    StandInEngine,
    directory_files,
)

RECIPE_PATH = "/app/recipe.json"
BROKER = COMPONENTS[Component.BROKER]


def recipe_of(planner: Node) -> str:
    """What `cargo chef prepare` would write: a function of the manifests and lockfile only."""
    source = next(n for n in planner.calls("withDirectory") if n.args["path"] == "/app")
    files = directory_files(source.args["source"])
    digest = hashlib.sha256()
    for path in sorted(files):
        if path.rsplit("/", 1)[-1] in ("Cargo.toml", "Cargo.lock"):
            digest.update(path.encode() + b"\0" + files[path])
    return '{"skeleton": "' + digest.hexdigest() + '"}'


@pytest.fixture
def recipes(engine: StandInEngine) -> StandInEngine:
    engine.container_files[RECIPE_PATH] = recipe_of
    return engine


def source(path: Path = FIXTURE_WORKSPACE) -> dagger.Directory:
    return dag.host().directory(str(path))


async def node_of(engine: StandInEngine, ctr: dagger.Container) -> Node:
    return engine.node(await ctr.id())


def file_source(node: Node, path: str) -> Node:
    """The File node written at `path` by a `withFile` in `node`'s chain."""
    found = [n for n in node.calls("withFile") if n.args["path"] == path]
    assert found, f"no withFile({path}) in {node.describe()}"
    return found[-1].args["source"]


def producer(file_node: Node) -> Node:
    """The container a `Container.file(path)` File node was read from."""
    assert file_node.field == "file"
    assert file_node.parent is not None
    assert file_node.parent.type_name == "Container"
    return file_node.parent


def exec_index(node: Node, prefix: list[str]) -> int:
    execs = node.execs()
    for i, args in enumerate(execs):
        if args[: len(prefix)] == prefix:
            return i
    msg = f"no exec starting with {prefix} in {execs}"
    raise AssertionError(msg)


def installed(node: Node) -> list[str]:
    return [p for args in node.execs() if args[:2] == ["sh", "-c"] for p in apt_packages(args[2])]


def planner_runs(engine: StandInEngine) -> list[tuple[str, Node, float, float]]:
    """Evaluations of the recipe file read from a planner container."""
    return [
        e
        for e in engine.evaluated
        if e[0] == "contents" and e[1].parent is not None and e[1].parent.type_name == "Container"
    ]


def engine_work(engine: StandInEngine) -> list[str]:
    """Queries that touched the source, the platform or a container (not the handshake)."""
    words = ("exists", "defaultPlatform", "container", "contents")
    return [q.text for q in engine.queries if any(w in q.text for w in words)]


def exists_probes(engine: StandInEngine) -> list[str]:
    """The paths of every `exists` the pipeline asked the engine, in order."""
    return [p for q in engine.queries for p in re.findall(r'exists\(\s*path: "([^"]*)"', q.text)]


def mounts(node: Node) -> dict[str, str]:
    return {n.args["path"]: n.args["cache"].args["key"] for n in node.calls("withMountedCache")}


# -- pure: which files provide a binary ---------------------------------------


def test_binary_candidates_from_bin_section():
    manifest = '[package]\nname = "x"\n[[bin]]\nname = "brokkr-broker"\npath = "src/b.rs"\n'
    assert binary_candidates(manifest, BROKER) == ["src/b.rs"]


def test_binary_candidates_autodiscovered():
    manifest = '[package]\nname = "brokkr-broker"\n'
    assert binary_candidates(manifest, BROKER)[0] == "src/main.rs"
    other = '[package]\nname = "something-else"\n'
    assert "src/main.rs" not in binary_candidates(other, BROKER)


def test_binary_candidates_errors():
    with pytest.raises(BrokkrError, match="not valid TOML"):
        binary_candidates("[package", BROKER)
    with pytest.raises(BrokkrError, match=r"no \[package\]"):
        binary_candidates("[workspace]\n", BROKER)
    with pytest.raises(BrokkrError, match="autobins"):
        binary_candidates('[package]\nname = "brokkr-broker"\nautobins = false\n', BROKER)


# -- broker, native -------------------------------------------------------------


async def test_broker_native_runtime_image(recipes: StandInEngine):
    ctr = await build_image(source(), component=Component.BROKER, platform=None)
    runtime = await node_of(recipes, ctr)
    assert runtime.platform("?") == "linux/amd64"
    assert runtime.base_image() == "debian:bookworm-slim"
    assert installed(runtime) == list(RUNTIME_PACKAGES)
    binary = file_source(runtime, "/usr/local/bin/brokkr-broker")
    assert binary.args["path"] == "/app/target/x86_64-unknown-linux-gnu/release/brokkr-broker"
    assert runtime.last("withExposedPort").args["port"] == 3000
    assert runtime.last("withEntrypoint").args["args"] == ["brokkr-broker"]
    # Brokkr's compose runs `./brokkr-broker …` with `entrypoint: []`; its charts run
    # the broker as 10001, which Kubernetes' runAsNonRoot verifies only when numeric.
    assert runtime.last("withWorkdir").args["path"] == "/usr/local/bin"
    assert runtime.chain()[-1].field == "withUser"
    assert runtime.last("withUser").args["name"] == "10001:10001"
    assert ["groupadd", "--system", "--gid", "10001", "brokkr"] in runtime.execs()
    write = runtime.calls("withFile")[-1]
    assert write.args["permissions"] == 0o755
    assert write.args["owner"] == "10001:10001"


async def test_broker_native_builder_has_no_cross_toolchain(recipes: StandInEngine):
    ctr = await build_stage(
        source(),
        component=Component.BROKER,
        stage=Stage.BUILDER,
        platform=parse_platform("linux/amd64"),
    )
    builder = await node_of(recipes, ctr)
    assert builder.platform("?") == "linux/amd64"
    assert builder.base_image() == "rust:1.90-slim-bookworm"
    execs = builder.execs()
    # Natively cargo still gets the target triple (as the Dockerfiles pass it),
    # but no cross toolchain is installed.
    triple = ["--target", "x86_64-unknown-linux-gnu"]
    assert [a for a in execs if a[0] == "cargo" and a[1] != "install"] == [
        ["cargo", "chef", "cook", "--release", "--recipe-path", "recipe.json", *triple],
        ["cargo", "clean", "--release", "--package", "brokkr-broker", *triple],
        ["cargo", "auditable", "build", "--release", "--bin", "brokkr-broker", *triple],
    ]
    assert not any(a[0] in ("rustup", "dpkg") for a in execs)
    assert not any(":" in p or p.startswith("gcc-") for p in installed(builder))
    assert not any(k.startswith("CARGO_TARGET_") for k in builder.env())


async def test_stages_are_one_chain_with_cargo_chef_installed_once(recipes: StandInEngine):
    ctr = await build_stage(source(), component=Component.AGENT, stage=Stage.BUILDER, platform=None)
    builder = await node_of(recipes, ctr)
    execs = builder.execs()
    installs = [a for a in execs if a[:3] == ["cargo", "install", "cargo-chef"]]
    assert installs == [["cargo", "install", "cargo-chef", "--locked", "--version", "0.1.71"]]
    order = [
        exec_index(builder, ["cargo", "install", "cargo-chef"]),
        exec_index(builder, ["cargo", "chef", "cook"]),
        exec_index(builder, _rust.TOUCH_SOURCES),
        exec_index(builder, ["cargo", "clean", "--release", "--package", "brokkr-agent"]),
        exec_index(builder, ["cargo", "auditable", "build", "--release", "--bin", "brokkr-agent"]),
    ]
    assert order == sorted(order)


async def test_sources_are_newer_than_the_dependency_layer(recipes: StandInEngine):
    # The stale-migration regression: after the full source lands on top of cook's
    # layer, every file is touched before cargo builds, so no workspace crate (nor
    # a file it embeds) can look older than what cook compiled.
    ctr = await build_stage(
        source(), component=Component.BROKER, stage=Stage.BUILDER, platform=None
    )
    builder = await node_of(recipes, ctr)
    chain = builder.chain()
    source_copy = max(
        i for i, n in enumerate(chain) if n.field == "withDirectory" and n.args["path"] == "/app"
    )
    touch = next(
        i
        for i, n in enumerate(chain)
        if n.field == "withExec" and n.args["args"] == _rust.TOUCH_SOURCES
    )
    build = next(
        i
        for i, n in enumerate(chain)
        if n.field == "withExec" and n.args["args"][:3] == ["cargo", "auditable", "build"]
    )
    assert source_copy < touch < build


async def test_planner_prepares_the_recipe_over_the_filtered_source(recipes: StandInEngine):
    ctr = await build_stage(
        source(), component=Component.BROKER, stage=Stage.PLANNER, platform=None
    )
    planner = await node_of(recipes, ctr)
    assert planner.execs()[-1] == ["cargo", "chef", "prepare", "--recipe-path", "recipe.json"]
    # The planner is composed, not run, when only the planner is asked for.
    assert planner_runs(recipes) == []


async def test_cook_sees_only_the_recipe(recipes: StandInEngine):
    ctr = await build_stage(source(), component=Component.BROKER, stage=Stage.CACHER, platform=None)
    cacher = await node_of(recipes, ctr)
    assert cacher.execs()[-1][:3] == ["cargo", "chef", "cook"]
    # No directory at all is copied into the cacher: the source cannot reach cook.
    assert cacher.calls("withDirectory") == []
    assert cacher.calls("withMountedDirectory") == []
    recipe = cacher.last("withNewFile")
    assert recipe is not None
    assert recipe.args["path"] == RECIPE_PATH
    assert recipe.args["contents"].startswith('{"skeleton": "')
    assert mounts(cacher) == {
        "/usr/local/cargo/registry": "brokkr-cargo-registry",
        "/usr/local/cargo/git": "brokkr-cargo-git",
    }


async def test_a_source_only_edit_reuses_the_cook(recipes: StandInEngine, tmp_path: Path):
    edited = tmp_path / "brokkr"
    shutil.copytree(FIXTURE_WORKSPACE, edited, ignore=shutil.ignore_patterns("target"))
    main = edited / "crates/brokkr-broker/src/main.rs"
    main.write_text(main.read_text() + "\n// edited\n")

    async def stage_key(path: Path, stage: Stage) -> str:
        ctr = await build_stage(
            source(path), component=Component.BROKER, stage=stage, platform=None
        )
        return (await node_of(recipes, ctr)).key()

    assert await stage_key(FIXTURE_WORKSPACE, Stage.CACHER) == await stage_key(edited, Stage.CACHER)
    assert await stage_key(FIXTURE_WORKSPACE, Stage.BUILDER) != await stage_key(
        edited, Stage.BUILDER
    )
    # A dependency change (a manifest) does re-run the cook.
    manifest = edited / "crates/brokkr-broker/Cargo.toml"
    manifest.write_text(manifest.read_text() + "\n[features]\nextra = []\n")
    assert await stage_key(FIXTURE_WORKSPACE, Stage.CACHER) != await stage_key(edited, Stage.CACHER)


async def test_no_target_cache_volume_anywhere(recipes: StandInEngine):
    for component in (Component.BROKER, Component.AGENT):
        ctr = await build_image(
            source(), component=component, platform=parse_platform("linux/arm64")
        )
        graph = (await node_of(recipes, ctr)).graph()
        paths = [n.args["path"] for n in graph if n.field == "withMountedCache"]
        assert paths
        assert not any("target" in p for p in paths), paths


# -- cross-compiling --------------------------------------------------------------


async def test_arm64_broker_is_cross_compiled_on_the_native_platform(recipes: StandInEngine):
    ctr = await build_image(
        source(), component=Component.BROKER, platform=parse_platform("linux/arm64")
    )
    runtime = await node_of(recipes, ctr)
    assert runtime.platform("?") == "linux/arm64"
    assert runtime.base_image() == "debian:bookworm-slim"
    binary = file_source(runtime, "/usr/local/bin/brokkr-broker")
    assert binary.args["path"] == "/app/target/aarch64-unknown-linux-gnu/release/brokkr-broker"
    builder = producer(binary)
    assert builder.platform("?") == "linux/amd64"
    execs = builder.execs()
    triple = ["--target", "aarch64-unknown-linux-gnu"]
    assert ["cargo", "chef", "cook", "--release", "--recipe-path", "recipe.json", *triple] in execs
    assert ["cargo", "auditable", "build", "--release", "--bin", "brokkr-broker", *triple] in execs
    assert ["rustup", "target", "add", "aarch64-unknown-linux-gnu"] in execs
    assert ["dpkg", "--add-architecture", "arm64"] in execs
    assert exec_index(builder, ["dpkg"]) < exec_index(builder, ["sh", "-c"])
    packages = installed(builder)
    for package in ("gcc-aarch64-linux-gnu", "libpq-dev:arm64", "libssl-dev:arm64"):
        assert package in packages
    env = builder.env()
    assert env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"] == "aarch64-linux-gnu-gcc"
    assert env["PKG_CONFIG_ALLOW_CROSS"] == "1"
    assert env["PKG_CONFIG_PATH"] == "/usr/lib/aarch64-linux-gnu/pkgconfig"
    # The planner behind the recipe also ran on the native platform.
    planners = [e[1] for e in planner_runs(recipes)]
    assert [p.parent.platform("?") for p in planners] == ["linux/amd64"]


async def test_amd64_from_an_arm64_engine(recipes: StandInEngine):
    recipes.default_platform = "linux/arm64"
    ctr = await build_image(
        source(), component=Component.AGENT, platform=parse_platform("linux/amd64")
    )
    runtime = await node_of(recipes, ctr)
    assert runtime.platform("?") == "linux/amd64"
    builder = producer(file_source(runtime, "/usr/local/bin/brokkr-agent"))
    assert builder.platform("?") == "linux/arm64"
    assert "gcc-x86-64-linux-gnu" in installed(builder)
    assert builder.env()["CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER"] == "x86_64-linux-gnu-gcc"


async def test_emulation_runs_the_whole_chain_on_the_target(recipes: StandInEngine):
    ctr = await build_image(
        source(), component=Component.BROKER, platform=parse_platform("linux/arm64"), emulate=True
    )
    runtime = await node_of(recipes, ctr)
    builder = producer(file_source(runtime, "/usr/local/bin/brokkr-broker"))
    assert builder.platform("?") == "linux/arm64"
    triple = ["--target", "aarch64-unknown-linux-gnu"]
    assert [
        "cargo",
        "auditable",
        "build",
        "--release",
        "--bin",
        "brokkr-broker",
        *triple,
    ] in builder.execs()
    assert not any(a[0] in ("rustup", "dpkg") for a in builder.execs())
    assert not any(k.startswith("CARGO_TARGET_") for k in builder.env())


# -- agent --------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
async def test_agent_runtime(recipes: StandInEngine, platform: str):
    arch = platform.split("/")[1]
    ctr = await build_image(source(), component=Component.AGENT, platform=parse_platform(platform))
    runtime = await node_of(recipes, ctr)
    assert runtime.platform("?") == platform
    execs = runtime.execs()
    assert ["groupadd", "--system", "--gid", "10001", "brokkr"] in execs
    useradd = next(a for a in execs if a[0] == "useradd")
    assert useradd[useradd.index("--uid") + 1] == "10001"
    assert useradd[useradd.index("--gid") + 1] == "10001"
    assert useradd[-1] == "brokkr"
    kubectl = file_source(runtime, "/usr/local/bin/kubectl")
    assert kubectl.field == "http"
    assert kubectl.args["url"] == (
        f"https://dl.k8s.io/release/{KUBECTL_VERSION}/bin/linux/{arch}/kubectl"
    )
    assert kubectl.args["checksum"] == f"sha256:{KUBECTL_SHA256[arch]}"
    for path in ("/usr/local/bin/kubectl", "/usr/local/bin/brokkr-agent"):
        write = next(n for n in runtime.calls("withFile") if n.args["path"] == path)
        assert write.args["permissions"] == 0o755
        assert write.args["owner"] == "10001:10001"
    assert runtime.last("withExposedPort").args["port"] == 8080
    assert runtime.last("withEntrypoint").args["args"] == ["brokkr-agent"]
    assert runtime.last("withWorkdir").args["path"] == "/usr/local/bin"
    assert runtime.chain()[-1].field == "withUser"
    assert runtime.last("withUser").args["name"] == "10001:10001"


# -- ui -------------------------------------------------------------------------------


async def test_ui_image_with_lockfile(engine: StandInEngine):
    ctr = await build_image(
        source(), component=Component.UI, platform=parse_platform("linux/arm64")
    )
    ui = await node_of(engine, ctr)
    assert ui.platform("?") == "linux/arm64"
    assert ui.base_image() == "node:18-alpine"
    assert ui.last("withWorkdir").args["path"] == "/app"
    assert [n.args["path"] for n in ui.calls("withFile")] == [
        "/app/package.json",
        "/app/package-lock.json",
    ]
    # With a lockfile: npm ci, falling back to npm install only on a stale lock.
    assert ui.execs() == [["sh", "-c", _ui.LOCKED_INSTALL]]
    assert mounts(ui) == {"/root/.npm": "brokkr-npm"}
    install = exec_index(ui, ["sh", "-c"])
    app = next(n for n in ui.calls("withDirectory") if n.args["path"] == "/app")
    assert ui.chain().index(app) > ui.chain().index(ui.calls("withExec")[install])
    assert ui.last("withExposedPort").args["port"] == 3001
    # `npm start` of a Create React App listens on $PORT (default 3000).
    assert ui.env() == {"PORT": "3001"}
    assert ui.last("withDefaultArgs").args["args"] == ["npm", "start"]


async def test_ui_without_lockfile_uses_npm_install(engine: StandInEngine):
    src = dag.directory().with_new_file("web/package.json", '{"name": "ui"}')
    ctr = await build_image(src, component=Component.UI, platform=None, ui_path="web")
    ui = await node_of(engine, ctr)
    assert ui.execs() == [["npm", "install"]]
    assert [n.args["path"] for n in ui.calls("withFile")] == ["/app/package.json"]


async def test_ui_folder_missing_is_an_error(engine: StandInEngine):
    src = dag.directory().with_new_file("Cargo.toml", "[workspace]\n")
    with pytest.raises(BrokkrError, match=r"examples/ui"):
        await build_image(src, component=Component.UI, platform=None)
    with pytest.raises(BrokkrError, match=r"frontend/package\.json"):
        await build_image(
            dag.directory().with_new_file("frontend/index.js", ""),
            component=Component.UI,
            platform=None,
            ui_path="frontend",
        )


async def test_ui_has_only_the_runtime_stage(engine: StandInEngine):
    with pytest.raises(BrokkrError, match="single stage, runtime"):
        await build_stage(source(), component=Component.UI, stage=Stage.BUILDER, platform=None)
    assert engine_work(engine) == []


@pytest.mark.parametrize("ui_path", ["/etc", "../outside", ".."])
async def test_ui_path_must_stay_inside_the_source(engine: StandInEngine, ui_path: str):
    with pytest.raises(BrokkrError, match="inside the source"):
        await build_image(source(), component=Component.UI, platform=None, ui_path=ui_path)


# -- errors before anything is built ----------------------------------------------


@pytest.mark.parametrize("function", ["build", "stage", "sbom"])
async def test_bad_platform_is_rejected_before_any_call(
    brokkr: ModuleCaller, engine: StandInEngine, function: str
):
    args = {"stage": "CACHER"} if function == "stage" else {}
    with pytest.raises(FunctionError, match=r"linux/arm/v7.*linux/amd64, linux/arm64"):
        await brokkr.call(function, component="BROKER", platform="linux/arm/v7", **args)
    assert engine_work(engine) == []


async def test_missing_crate_names_what_was_looked_for(recipes: StandInEngine):
    src = dag.directory().with_new_file("Cargo.toml", "[workspace]\nmembers = []\n")
    with pytest.raises(BrokkrError) as err:
        await build_image(src, component=Component.AGENT, platform=None)
    message = str(err.value)
    assert "crates/brokkr-agent/Cargo.toml" in message
    assert "Cargo.toml" in message
    assert planner_runs(recipes) == []


async def test_missing_workspace_manifest(recipes: StandInEngine):
    src = dag.directory().with_new_file(
        "crates/brokkr-broker/Cargo.toml", '[package]\nname = "brokkr-broker"\n'
    )
    with pytest.raises(BrokkrError, match=r"missing Cargo\.toml$"):
        await build_image(src, component=Component.BROKER, platform=None)


async def test_missing_binary_source(recipes: StandInEngine):
    src = (
        dag.directory()
        .with_new_file("Cargo.toml", "[workspace]\n")
        .with_new_file("crates/brokkr-broker/Cargo.toml", '[package]\nname = "brokkr-broker"\n')
        .with_new_file("crates/brokkr-broker/src/lib.rs", "")
    )
    with pytest.raises(BrokkrError, match=r"crates/brokkr-broker/src/main\.rs"):
        await build_image(src, component=Component.BROKER, platform=None)
    assert planner_runs(recipes) == []


async def test_check_source_per_component(engine: StandInEngine):
    for component in Component:
        await _build.check_source(source(), COMPONENTS[component])
    assert set(exists_probes(engine)) >= {
        "Cargo.toml",
        "crates/brokkr-broker/Cargo.toml",
        "crates/brokkr-agent/Cargo.toml",
        "examples/ui",
        "package.json",
    }
    assert planner_runs(engine) == []
    with pytest.raises(BrokkrError, match=r"web/ holding package\.json"):
        await _build.check_source(source(), COMPONENTS[Component.UI], "web")
    with pytest.raises(BrokkrError, match=r"crates/brokkr-agent/Cargo\.toml"):
        await _build.check_source(
            dag.directory().with_new_file("Cargo.toml", "[workspace]\n"),
            COMPONENTS[Component.AGENT],
        )


# -- multi-platform image -------------------------------------------------------------


async def test_build_multi_composes_every_platform_from_one_planner(recipes: StandInEngine):
    image = await _image.build_multi(source(), component=Component.BROKER)
    assert image.platforms == ["linux/amd64", "linux/arm64"]
    assert image.component is Component.BROKER
    nodes = [await node_of(recipes, v) for v in image.variants]
    assert [n.platform("?") for n in nodes] == ["linux/amd64", "linux/arm64"]
    assert len(planner_runs(recipes)) == 1


async def test_build_multi_emulated_runs_one_planner_per_platform(recipes: StandInEngine):
    recipes.delays["contents"] = 0.3
    image = await _image.build_multi(source(), component=Component.AGENT, emulate=True)
    planners = planner_runs(recipes)
    assert sorted(e[1].parent.platform("?") for e in planners) == ["linux/amd64", "linux/arm64"]
    # Concurrent: the second planner started before the first finished.
    first, second = sorted(planners, key=lambda e: e[2])
    assert second[2] < first[3]
    assert len(image.variants) == 2


async def test_build_multi_with_a_checked_source_does_not_check_it_again(recipes: StandInEngine):
    image = await _image.build_multi(source(), component=Component.AGENT, source_checked=True)
    assert len(image.variants) == 2
    assert exists_probes(recipes) == []
    # The UI reads only whether there is a lockfile (npm ci or npm install).
    ui = await _image.build_multi(source(), component=Component.UI, source_checked=True)
    assert exists_probes(recipes) == ["package-lock.json"]
    assert (await node_of(recipes, ui.variants[0])).execs() == [["sh", "-c", _ui.LOCKED_INSTALL]]


async def test_compose_variants_of_the_planner_composes_without_running(recipes: StandInEngine):
    targets = [parse_platform("linux/amd64"), parse_platform("linux/arm64")]
    planners = await _build.compose_variants(
        source(), COMPONENTS[Component.BROKER], targets, stage=Stage.PLANNER
    )
    nodes = [await node_of(recipes, p) for p in planners]
    # Cross-compiling: both planners run on the engine's platform, and neither ran yet.
    assert [n.platform("?") for n in nodes] == ["linux/amd64", "linux/amd64"]
    assert [n.execs()[-1][:3] for n in nodes] == [["cargo", "chef", "prepare"]] * 2
    assert planner_runs(recipes) == []
    with pytest.raises(BrokkrError, match="single stage, runtime"):
        await _build.compose_variants(
            source(), COMPONENTS[Component.UI], targets, stage=Stage.CACHER
        )


async def test_build_multi_takes_parsed_platforms(recipes: StandInEngine):
    image = await _image.build_multi(
        source(), component=Component.UI, platforms=parse_platforms(["linux/arm64/v8"])
    )
    assert image.platforms == ["linux/arm64"]


async def test_image_tarball_is_multi_platform_oci(recipes: StandInEngine):
    image = await _image.build_multi(source(), component=Component.UI)
    tarball = recipes.node(await image.tarball().id())
    assert tarball.field == "asTarball"
    variants = tarball.args["platformVariants"]
    assert [v.platform("?") for v in [tarball.parent, *variants]] == [
        "linux/amd64",
        "linux/arm64",
    ]
    assert tarball.args.get("mediaTypes", "OCIMediaTypes") == "OCIMediaTypes"


async def test_image_publish_pushes_one_manifest_with_auth(recipes: StandInEngine):
    image = await _image.build_multi(source(), component=Component.BROKER)
    secret = dag.set_secret("token", "s3cr3t")
    ref = await image.publish("registry.test/brokkr-broker:1.2.3", username="me", password=secret)
    assert ref.startswith("registry.test/brokkr-broker:1.2.3@sha256:")
    (push,) = recipes.pushes
    assert push.platforms("?") == ["linux/amd64", "linux/arm64"]
    (auth,) = push.auth()
    assert auth.args["address"] == "registry.test/brokkr-broker"
    assert auth.args["username"] == "me"


async def test_image_publish_without_credentials_and_errors(recipes: StandInEngine):
    image = await _image.build_multi(
        source(), component=Component.UI, platforms=parse_platforms(["linux/amd64"])
    )
    await image.publish("registry.test/brokkr-ui:1")
    assert recipes.pushes[0].auth() == []
    assert recipes.pushes[0].variants == []
    with pytest.raises(BrokkrError, match="username"):
        await image.publish("registry.test/brokkr-ui:1", password=dag.set_secret("p", "x"))
    with pytest.raises(BrokkrError, match="username"):
        await image.publish("registry.test/brokkr-ui:1", username="me")
    with pytest.raises(BrokkrError, match="invalid image address"):
        await image.publish("  ")
    with pytest.raises(BrokkrError, match="cannot push to a digest"):
        await image.publish("registry.test/brokkr-ui@sha256:" + "a" * 64)
    assert len(recipes.pushes) == 1


OUTSIDE_THE_WORKSPACE = (
    # The fixture holds, beside its Cargo workspace, what Brokkr's tree holds there
    # (424 files at 1e69e30): docs, the UI, charts, angreal tasks, metis.db.
    "docs/content/getting-started.md",
    "examples/ui/package.json",
    "charts/brokkr-broker/values.yaml",
    ".angreal/files/docker-compose.yaml",
    "metis.db",
)

BROKKR_SHAPED_EXTRAS = {
    "README.md": "# Brokkr\n",
    # Build output, Node packages and git metadata, also inside the workspace.
    "target/release/brokkr-broker": "junk\n",
    "crates/brokkr-models/target/debug/stale.rlib": "junk\n",
    "crates/brokkr-broker/node_modules/left-pad/index.js": "junk\n",
    "examples/ui/node_modules/left-pad/index.js": "junk\n",
    ".git/HEAD": "ref: refs/heads/main\n",
    # What cargo and rustup read besides the manifests and crates, when present.
    ".cargo/config.toml": "[net]\ngit-fetch-with-cli = true\n",
    "rust-toolchain.toml": '[toolchain]\nchannel = "1.90"\n',
}


def brokkr_shaped(tmp_path: Path) -> Path:
    """The fixture workspace plus everything `BROKKR_SHAPED_EXTRAS` lists."""
    for rel in OUTSIDE_THE_WORKSPACE:
        assert (FIXTURE_WORKSPACE / rel).is_file(), f"the fixture lacks {rel}"
    workspace = tmp_path / "brokkr"
    shutil.copytree(FIXTURE_WORKSPACE, workspace, ignore=shutil.ignore_patterns("target"))
    for rel, text in BROKKR_SHAPED_EXTRAS.items():
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (workspace / rel).write_text(text)
    return workspace


def cargo_inputs(workspace: Path) -> set[str]:
    """What cargo reads, listed independently of the pipeline: the workspace manifest and
    lock, `crates/` (build output and Node packages aside), `.cargo/`, `rust-toolchain*`."""
    seen = set()
    for path in workspace.rglob("*"):
        rel = path.relative_to(workspace).as_posix()
        parts = rel.split("/")
        if not path.is_file() or "target" in parts or "node_modules" in parts:
            continue
        top = parts[0]
        if rel in ("Cargo.toml", "Cargo.lock", "rust-toolchain", "rust-toolchain.toml") or (
            top in ("crates", ".cargo") and len(parts) > 1
        ):
            seen.add(rel)
    return seen


async def test_rust_stages_see_only_the_cargo_workspace(recipes: StandInEngine, tmp_path: Path):
    workspace = brokkr_shaped(tmp_path)
    ctr = await build_stage(
        source(workspace), component=Component.BROKER, stage=Stage.BUILDER, platform=None
    )
    builder = await node_of(recipes, ctr)
    (run,) = planner_runs(recipes)
    planner = run[1].parent
    expected = cargo_inputs(workspace)
    assert "crates/brokkr-models/migrations/0001_init.sql" in expected
    assert {".cargo/config.toml", "rust-toolchain.toml", "Cargo.lock"} <= expected
    for stage in (planner, builder):
        (copy,) = [n for n in stage.calls("withDirectory") if n.args["path"] == "/app"]
        seen = set(directory_files(copy.args["source"]))
        assert seen == expected
        outside = {p.split("/")[0] for p in seen} - {
            "Cargo.toml",
            "Cargo.lock",
            "crates",
            ".cargo",
            "rust-toolchain.toml",
        }
        assert outside == set()


async def test_a_docs_or_ui_edit_rebuilds_nothing_of_rust(recipes: StandInEngine, tmp_path: Path):
    # The engine keys a stage on the content of the directory copied into it.
    workspace = brokkr_shaped(tmp_path)

    async def builder_input() -> dict[str, bytes]:
        ctr = await build_stage(
            source(workspace), component=Component.AGENT, stage=Stage.BUILDER, platform=None
        )
        builder = await node_of(recipes, ctr)
        (copy,) = [n for n in builder.calls("withDirectory") if n.args["path"] == "/app"]
        return directory_files(copy.args["source"])

    before = await builder_input()
    (workspace / "docs/content/getting-started.md").write_text("# Edited\n")
    (workspace / "examples/ui/server.js").write_text("// edited\n")
    (workspace / "charts/brokkr-broker/values.yaml").write_text("edited: true\n")
    (workspace / "metis.db").write_text("edited\n")
    assert await builder_input() == before
    (workspace / "crates/brokkr-agent/src/main.rs").write_text("fn main() {}\n")
    assert await builder_input() != before
