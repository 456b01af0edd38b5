"""The broker's operator console (Brokkr v0.9.1) and the seed era, as build graphs.

The v0.9.1-shaped fixture (tests/fixtures/brokkr-v091) has the console crate
outside the workspace with its own Cargo.lock and Trunk.toml and a broker with
an `embed-ui` feature; the seed-era fixture (tests/fixtures/brokkr) has none
of it. The stand-in answers the planner's recipe from the manifests (as
`cargo chef prepare` would) and the console's dist/ with the files trunk writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagger
import pytest
from dagger import dag

from ci.build import console as _console
from ci.build import image as _image
from ci.build import stages as _build
from ci.dependency_cache import cook_features
from ci.errors import BrokkrError
from ci.rules.components import COMPONENTS, Component, Stage
from ci.rules.platforms import parse_platform
from ci.rules.versions import TRUNK_VERSION, WASM_OPT_CRATE_VERSION, WASM_OPT_TRUNK_VERSION
from tests.build.test_stages import RECIPE_PATH, engine_work, recipe_of
from tests.support.standin import (
    FIXTURE_V091,
    FIXTURE_WORKSPACE,
    Node,
    StandInEngine,
    directory_files,
)

AMD64 = parse_platform("linux/amd64")
ARM64 = parse_platform("linux/arm64")

WASM = "brokkr-web-5f2c1a_bg.wasm"
DIST = {
    "index.html": b"<!DOCTYPE html><script type=module src=/brokkr-web-5f2c1a.js></script>",
    "brokkr-web-5f2c1a.js": b"export default function init() {}",
    WASM: b"\0asm\1\0\0\0",
}
FEATURES = ["--features", "embed-ui"]
BROKER = COMPONENTS[Component.BROKER]


@pytest.fixture
def recipes(engine: StandInEngine) -> StandInEngine:
    engine.container_files[RECIPE_PATH] = recipe_of
    engine.container_dirs[_console.DIST_PATH] = DIST
    return engine


def source(path: Path = FIXTURE_V091) -> dagger.Directory:
    return dag.host().directory(str(path))


async def node_of(engine: StandInEngine, ctr: dagger.Container) -> Node:
    return engine.node(await ctr.id())


def cargo_runs(node: Node) -> list[list[str]]:
    return [a for a in node.execs() if a[0] == "cargo" and a[1] in ("chef", "auditable")]


def dist_copy(builder: Node) -> Node:
    """The `withDirectory` that puts the console's dist into the builder."""
    (copy,) = [
        n for n in builder.calls("withDirectory") if n.args["path"] == "/app/crates/brokkr-web/dist"
    ]
    return copy


def console_of(builder: Node) -> Node:
    bundle = dist_copy(builder).args["source"]
    assert bundle.field == "directory"
    assert bundle.args["path"] == _console.DIST_PATH
    assert bundle.parent is not None
    return bundle.parent


def copied(node: Node, path: str) -> dict[str, bytes]:
    """The files the last `withDirectory(path)` of `node`'s chain copies."""
    step = [n for n in node.calls("withDirectory") if n.args["path"] == path][-1]
    return directory_files(step.args["source"])


def built(engine: StandInEngine) -> list[str]:
    """What the engine evaluated that involves a container (reading the source is not work)."""
    return [
        field
        for field, node, *_ in engine.evaluated
        if any(n.field == "container" for n in node.graph())
    ]


def fixture_copy(tmp_path: Path, base: Path = FIXTURE_V091) -> Path:
    tree = tmp_path / "src"
    shutil.copytree(base, tree)
    return tree


# -- pure ---------------------------------------------------------------------


def test_the_locked_wasm_bindgen_version_is_read_from_the_console_lock():
    lock = (FIXTURE_V091 / "crates/brokkr-web/Cargo.lock").read_text()
    assert _console.locked_wasm_bindgen(lock) == "0.2.126"  # what df0be43's lock holds
    with pytest.raises(BrokkrError, match=r"exactly one wasm-bindgen version.*found none"):
        _console.locked_wasm_bindgen('version = 4\n[[package]]\nname = "x"\nversion = "1.0.0"\n')
    two = (
        '[[package]]\nname = "wasm-bindgen"\nversion = "0.2.100"\n'
        '[[package]]\nname = "wasm-bindgen"\nversion = "0.2.126"\n'
    )
    with pytest.raises(BrokkrError, match=r"found 0\.2\.100, 0\.2\.126"):
        _console.locked_wasm_bindgen(two)


def test_wasm_opt_is_needed_unless_the_rust_link_switches_it_off():
    assert _console.needs_wasm_opt('<link data-trunk rel="rust" data-wasm-opt="z" />')
    assert _console.needs_wasm_opt("<link data-trunk rel='rust' />")
    assert not _console.needs_wasm_opt('<link data-trunk rel="rust" data-wasm-opt="0"/>')
    # Another trunk asset's attribute is not the rust link's.
    html = '<link data-trunk rel="css" data-wasm-opt="0"><link data-trunk rel="rust">'
    assert _console.needs_wasm_opt(html)


# -- v0.9.1: the console stage --------------------------------------------------


async def test_the_broker_embeds_the_trunk_console(recipes: StandInEngine):
    ctr = await _build.build_stage(
        source(), component=Component.BROKER, stage=Stage.BUILDER, platform=AMD64
    )
    builder = await node_of(recipes, ctr)
    triple = ["--target", "x86_64-unknown-linux-gnu"]
    # embed-ui on the cook (rust-embed and mime_guess are in the dependency layer) and the build.
    assert cargo_runs(builder) == [
        ["cargo", "chef", "cook", "--release", "--recipe-path", "recipe.json", *FEATURES, *triple],
        ["cargo", "auditable", "build", "--release", "--bin", "brokkr-broker", *FEATURES, *triple],
    ]
    # The console's dist lands at crates/brokkr-web/dist after the source, before the build.
    chain = builder.chain()
    copy = chain.index(dist_copy(builder))
    source_copy = max(
        i for i, n in enumerate(chain) if n.field == "withDirectory" and n.args["path"] == "/app"
    )
    build = next(
        i
        for i, n in enumerate(chain)
        if n.field == "withExec" and n.args["args"][:3] == ["cargo", "auditable", "build"]
    )
    assert source_copy < copy < build
    console = console_of(builder)
    assert console.base_image() == "rust:1.90-slim-bookworm"
    assert console.execs()[-1] == ["trunk", "build", "--release", "--offline"]
    assert console.last("withWorkdir").args["path"] == "/app/crates/brokkr-web"
    execs = console.execs()
    assert ["rustup", "target", "add", "wasm32-unknown-unknown"] in execs
    # Pinned tools, never "latest": trunk, the wasm-bindgen-cli the console's lock
    # locks, and wasm-opt (the fixture's index.html asks for data-wasm-opt="z").
    assert ["cargo", "install", "trunk", "--locked", "--version", TRUNK_VERSION] in execs
    assert ["cargo", "install", "wasm-bindgen-cli", "--locked", "--version", "0.2.126"] in execs
    assert ["cargo", "install", "wasm-opt", "--locked", "--version", WASM_OPT_CRATE_VERSION] in (
        execs
    )
    assert all("--version" in a for a in execs if a[:2] == ["cargo", "install"])
    assert console.env()["TRUNK_TOOLS_WASM_BINDGEN"] == "0.2.126"
    assert console.env()["TRUNK_TOOLS_WASM_OPT"] == WASM_OPT_TRUNK_VERSION


async def test_the_console_sees_only_its_crate_and_the_workspace_never_sees_it(
    recipes: StandInEngine,
):
    ctr = await _build.build_stage(
        source(), component=Component.BROKER, stage=Stage.BUILDER, platform=None
    )
    builder = await node_of(recipes, ctr)
    console_files = copied(console_of(builder), "/app/crates/brokkr-web")
    assert sorted(console_files) == [
        ".gitignore",
        "Cargo.lock",
        "Cargo.toml",
        "Trunk.toml",
        "index.html",
        "src/main.rs",
    ]
    workspace = copied(builder, "/app")
    assert not any(p.startswith("crates/brokkr-web/") for p in workspace)
    assert "crates/brokkr-broker/src/lib.rs" in workspace


async def test_edits_rebuild_only_what_they_touch(recipes: StandInEngine, tmp_path: Path):
    async def inputs(tree: Path) -> tuple[dict[str, bytes], str, dict[str, bytes]]:
        ctr = await _build.build_stage(
            source(tree), component=Component.BROKER, stage=Stage.BUILDER, platform=None
        )
        builder = await node_of(recipes, ctr)
        console = copied(console_of(builder), "/app/crates/brokkr-web")
        cook = next(n for n in builder.calls("withNewFile") if n.args["path"] == RECIPE_PATH)
        return console, str(cook.args["contents"]), copied(builder, "/app")

    before = await inputs(FIXTURE_V091)
    broker_edit = fixture_copy(tmp_path / "broker")
    bin_rs = broker_edit / "crates/brokkr-broker/src/bin.rs"
    bin_rs.write_text(bin_rs.read_text() + "// an edit\n")
    after_broker = await inputs(broker_edit)
    assert after_broker[0] == before[0]  # the console's input: unchanged, its build reused
    assert after_broker[2] != before[2]  # the broker is rebuilt

    console_edit = fixture_copy(tmp_path / "console")
    main_rs = console_edit / "crates/brokkr-web/src/main.rs"
    main_rs.write_text(main_rs.read_text() + "// an edit\n")
    manifest = console_edit / "crates/brokkr-web/Cargo.toml"
    manifest.write_text(manifest.read_text() + 'serde = "1"\n')
    after_console = await inputs(console_edit)
    assert after_console[0] != before[0]  # the console is rebuilt
    assert after_console[1] == before[1]  # the same recipe: the cook is reused
    assert after_console[2] == before[2]  # the workspace source the builder copies: the same


async def test_stage_console_returns_the_console_build(recipes: StandInEngine):
    ctr = await _build.build_stage(
        source(), component=Component.BROKER, stage=Stage.CONSOLE, platform=None
    )
    console = await node_of(recipes, ctr)
    assert console.execs()[-1] == _console.TRUNK_BUILD
    with pytest.raises(BrokkrError, match="the console stage is the broker's"):
        await _build.build_stage(
            source(), component=Component.AGENT, stage=Stage.CONSOLE, platform=None
        )
    with pytest.raises(BrokkrError, match=r"embeds no console.*crates/brokkr-web/Trunk.toml"):
        await _build.build_stage(
            source(FIXTURE_WORKSPACE),
            component=Component.BROKER,
            stage=Stage.CONSOLE,
            platform=None,
        )


async def test_arm64_reuses_the_one_native_console_build(recipes: StandInEngine):
    image = await _image.build_multi(source(), component=Component.BROKER, platforms=[AMD64, ARM64])
    builders = [
        producer.parent
        for variant in image.variants
        for producer in [
            next(
                n
                for n in (await node_of(recipes, variant)).calls("withFile")
                if n.args["path"] == "/usr/local/bin/brokkr-broker"
            ).args["source"]
        ]
    ]
    consoles = {console_of(b).key for b in builders if b is not None}
    assert len(consoles) == 1
    assert console_of(builders[1]).platform("?") == "linux/amd64"  # native, not emulated arm64


async def test_the_start_check_proves_the_console_is_inside(recipes: StandInEngine):
    await _build.build_image(source(), component=Component.BROKER, platform=AMD64)
    checks = [
        n.args["args"]
        for _, node, *_ in recipes.evaluated
        for n in node.chain()
        if n.field == "withExec" and "--help" in " ".join(n.args["args"])
    ]
    assert ["sh", "-c", f"./brokkr-broker --help && grep -q -a -F {WASM} ./brokkr-broker"] in (
        checks
    )


async def test_a_broker_without_the_console_inside_is_refused(recipes: StandInEngine):
    recipes.fail_when(
        lambda n: n.field == "withExec" and "grep -q -a -F" in " ".join(n.args["args"]),
        "exit code: 1",
        exec_error=lambda _n: (1, "usage: brokkr-broker", ""),
    )
    with pytest.raises(BrokkrError, match="brokkr-broker for linux/amd64 does not start"):
        await _build.build_image(source(), component=Component.BROKER, platform=AMD64)


async def test_the_agent_of_today_gets_no_console_and_no_feature(recipes: StandInEngine):
    ctr = await _build.build_stage(
        source(), component=Component.AGENT, stage=Stage.BUILDER, platform=None
    )
    builder = await node_of(recipes, ctr)
    assert not any("--features" in a for a in cargo_runs(builder))
    assert not [n for n in builder.calls("withDirectory") if "brokkr-web" in n.args["path"]]


async def test_a_console_without_its_lockfile_is_refused_before_any_work(
    recipes: StandInEngine, tmp_path: Path
):
    tree = fixture_copy(tmp_path)
    (tree / "crates/brokkr-web/Cargo.lock").unlink()
    with pytest.raises(BrokkrError, match=r"crates/brokkr-web/Cargo.lock is missing"):
        await _build.check_source(source(tree), BROKER)
    assert not built(recipes)
    assert not any("defaultPlatform" in q for q in engine_work(recipes))


# -- the seed era: nothing changes ----------------------------------------------


async def test_the_seed_era_broker_has_no_console_stage(recipes: StandInEngine):
    ctr = await _build.build_stage(
        source(FIXTURE_WORKSPACE), component=Component.BROKER, stage=Stage.BUILDER, platform=None
    )
    builder = await node_of(recipes, ctr)
    triple = ["--target", "x86_64-unknown-linux-gnu"]
    assert cargo_runs(builder) == [
        ["cargo", "chef", "cook", "--release", "--recipe-path", "recipe.json", *triple],
        ["cargo", "auditable", "build", "--release", "--bin", "brokkr-broker", *triple],
    ]
    assert [n.args["path"] for n in builder.calls("withDirectory")] == ["/app"]
    assert builder.calls("withoutDirectory") == []
    assert _build.start_check(BROKER) == ["sh", "-c", "./brokkr-broker --help"]


# -- the toolchain fits the source ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("rust-toolchain.toml", '[toolchain]\nchannel = "1.95"\n'),
        ("rust-toolchain", "1.95.0\n"),
    ],
)
async def test_a_source_needing_a_newer_rust_is_refused_before_any_work(
    recipes: StandInEngine, tmp_path: Path, path: str, text: str
):
    tree = fixture_copy(tmp_path)
    (tree / path).write_text(text)
    with pytest.raises(
        BrokkrError, match=r"needs Rust 1\.95(\.0)? \(rust-toolchain.*has Rust 1\.90"
    ):
        await _image.build_multi(source(tree), component=Component.AGENT)
    assert not any("defaultPlatform" in q for q in engine_work(recipes))
    assert not built(recipes)


async def test_a_workspace_rust_version_above_the_image_is_refused(
    recipes: StandInEngine, tmp_path: Path
):
    tree = fixture_copy(tmp_path)
    manifest = tree / "Cargo.toml"
    manifest.write_text(
        manifest.read_text().replace('rust-version = "1.90"', 'rust-version = "1.93"')
    )
    with pytest.raises(BrokkrError, match=r"needs Rust 1\.93 \(the workspace's rust-version"):
        await _build.check_source(source(tree), BROKER)
    # Today's tree asks for exactly the image's 1.90, the seed era for nothing it enforces.
    await _build.check_source(source(), BROKER)
    await _build.check_source(source(FIXTURE_WORKSPACE), BROKER)


async def test_the_dependency_cache_keys_the_brokers_cook_on_embed_ui(recipes: StandInEngine):
    """The cache key takes the features the cook gets: a v0.9.1 broker cooked with
    `embed-ui` never shares a key with a cook without it (the agent, the seed era)."""
    agent = COMPONENTS[Component.AGENT]
    assert await cook_features(source(), BROKER) == ("embed-ui",)
    assert await cook_features(source(), agent) == ()
    assert await cook_features(source(FIXTURE_WORKSPACE), BROKER) == ()
