"""dockerfiles/ and the Dagger pipeline build the same images.

Each Dockerfile is read with tests/support/dockerfile.py and compared with the build
graph the pipeline records in the stand-in engine: base images, installed
packages, cargo commands, cross-compiling environment, the files the Rust
stages see (each `.dockerignore` evaluated over a Brokkr-shaped tree), exposed
ports, working directory, user, environment (`PORT`), the UI install script,
entrypoint, kubectl download and checksum. Both always pass `--target`
(natively too, where no cross toolchain is installed), so cargo commands are
compared on the native graph as well as the cross one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagger import dag

from ci.build import console as _console
from ci.build import rust as _rust
from ci.build import ui as _ui
from ci.build.stages import build_image, build_stage
from ci.rules.components import COMPONENTS, Component, Stage
from ci.rules.platforms import parse_platform
from ci.rules.versions import CONSOLE_BUILD_PACKAGES
from tests.build.test_stages import (
    RECIPE_PATH,
    brokkr_shaped,
    file_source,
    installed,
    mounts,
    planner_runs,
    producer,
    recipe_of,
)
from tests.support.dockerfile import (
    Dockerfile,
    apt_packages,
    dockerignore_sends,
    parse,
    shell_branches,
    shell_commands,
    substitute,
)
from tests.support.dockerfile import Stage as DockerStage
from tests.support.standin import (
    FIXTURE_V091,
    FIXTURE_WORKSPACE,
    Node,
    StandInEngine,
    directory_files,
)

AMD64 = parse_platform("linux/amd64")

DOCKERFILES = Path(__file__).resolve().parents[2] / "dockerfiles"
CROSS = {"BUILDARCH": "amd64", "TARGETARCH": "arm64"}
NATIVE = {"BUILDARCH": "amd64", "TARGETARCH": "amd64"}


def dockerfile(component: Component) -> Dockerfile:
    return parse((DOCKERFILES / f"Dockerfile.{component.value}").read_text())


@pytest.fixture
def recipes(engine: StandInEngine) -> StandInEngine:
    engine.container_files[RECIPE_PATH] = recipe_of
    return engine


async def runtime_graph(engine: StandInEngine, component: Component, platform: str) -> Node:
    source = dag.host().directory(str(FIXTURE_WORKSPACE))
    ctr = await build_image(source, component=component, platform=parse_platform(platform))
    return engine.node(await ctr.id())


def run_commands(stage: DockerStage, variables: dict[str, str]) -> list[list[str]]:
    """Every simple command of the stage's RUNs, variables substituted."""
    return [
        [substitute(arg, variables) for arg in command]
        for script in stage.runs()
        for command in shell_commands(script)
    ]


def toolchain_branches(stage: DockerStage) -> tuple[list[list[str]], list[list[str]]]:
    """The (native, cross) command lists of a toolchain stage's `if BUILDARCH = …` RUN."""
    (script,) = stage.runs()
    _condition, native, cross = shell_branches(script)
    return native, cross


def packages_of(commands: list[list[str]]) -> list[str]:
    return apt_packages(" && ".join(" ".join(c) for c in commands))


def cargo_commands(stages: list[DockerStage], variables: dict[str, str]) -> list[list[str]]:
    """The cargo commands the RUNs of `stages` run, in order."""
    return [c for stage in stages for c in run_commands(stage, variables) if c[0] == "cargo"]


RUST = [Component.BROKER, Component.AGENT]


@pytest.mark.parametrize("component", RUST)
async def test_cross_builder_matches(recipes: StandInEngine, component: Component):
    spec = COMPONENTS[component]
    df = dockerfile(component)
    runtime = await runtime_graph(recipes, component, "linux/arm64")
    builder = producer(file_source(runtime, f"/usr/local/bin/{spec.binary}"))

    chef, toolchain, cacher, build = df.lineage("builder", CROSS)
    assert [s.name for s in (chef, toolchain, cacher, build)] == [
        "chef",
        "toolchain-arm64",
        "cacher",
        "builder",
    ]
    # Builder stages run on the build machine's platform.
    assert chef.platform == "$BUILDPLATFORM"
    assert chef.base == builder.base_image()

    variables = {**CROSS, **toolchain.env()}
    _native, cross = toolchain_branches(toolchain)
    assert packages_of(cross) == installed(builder)
    graph_execs = builder.execs()
    for command in cross:
        if command[0] in ("dpkg", "rustup"):
            assert command in graph_execs
    env = toolchain.env()
    del env["RUST_TARGET"]
    assert env == builder.env()

    cargo = cargo_commands([chef, cacher, build], variables)
    assert cargo == [a for a in graph_execs if a[0] == "cargo"]
    assert cacher.of("COPY")[0].flag("from") == "planner"
    # The builder makes the source newer than cook's layer the same way.
    touch = _rust.TOUCH_SOURCES[-1]
    assert touch in build.runs()
    assert _rust.TOUCH_SOURCES in graph_execs


@pytest.mark.parametrize("component", RUST)
async def test_native_toolchain_matches(recipes: StandInEngine, component: Component):
    spec = COMPONENTS[component]
    df = dockerfile(component)
    runtime = await runtime_graph(recipes, component, "linux/amd64")
    builder = producer(file_source(runtime, f"/usr/local/bin/{spec.binary}"))
    chef, toolchain, cacher, build = df.lineage("builder", NATIVE)
    assert toolchain.name == "toolchain-amd64"
    native, _cross = toolchain_branches(toolchain)
    assert packages_of(native) == installed(builder)
    assert not any(c[0] in ("dpkg", "rustup") for c in native)
    # The same cargo commands, `--target x86_64-unknown-linux-gnu` included, and
    # the binary read from the same place.
    graph_execs = builder.execs()
    assert not any(a[0] in ("dpkg", "rustup") for a in graph_execs)
    variables = {**NATIVE, **toolchain.env()}
    cargo = cargo_commands([chef, cacher, build], variables)
    assert cargo == [a for a in graph_execs if a[0] == "cargo"]
    assert any("--target" in c for c in cargo)
    (copy_out,) = [c for c in run_commands(build, variables) if c[0] == "cp"]
    binary = file_source(runtime, f"/usr/local/bin/{spec.binary}")
    assert f"/app/{copy_out[1]}" == binary.args["path"]


@pytest.mark.parametrize("component", RUST)
async def test_planner_matches(recipes: StandInEngine, component: Component):
    df = dockerfile(component)
    source = dag.host().directory(str(FIXTURE_WORKSPACE))
    ctr = await build_stage(source, component=component, stage=Stage.PLANNER, platform=None)
    planner = recipes.node(await ctr.id())
    chef, stage = df.lineage("planner", NATIVE)
    assert run_commands(stage, {}) == [planner.execs()[-1]]
    assert [c.value for c in stage.of("COPY")] == [". ."]
    assert chef.workdir() == planner.last("withWorkdir").args["path"]


@pytest.mark.parametrize("component", RUST)
@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
async def test_runtime_matches(recipes: StandInEngine, component: Component, platform: str):
    spec = COMPONENTS[component]
    arch = platform.split("/")[1]
    df = dockerfile(component)
    runtime = await runtime_graph(recipes, component, platform)
    final = df.final
    assert final.name == "runtime"
    assert final.platform is None  # the target platform
    assert final.base == runtime.base_image()
    assert apt_packages(final.runs()[0]) == installed(runtime)
    other = [c for c in run_commands(final, {}) if c[0] not in ("apt-get", "rm")]
    assert other == [a for a in runtime.execs() if a[:2] != ["sh", "-c"]]
    assert final.exposed() == [runtime.last("withExposedPort").args["port"]]
    assert final.entrypoint() == runtime.last("withEntrypoint").args["args"]
    assert final.workdir() == runtime.last("withWorkdir").args["path"] == "/usr/local/bin"
    assert final.user() == runtime.last("withUser").args["name"] == "10001:10001"
    assert final.env() == runtime.env() == {}

    copies = {c.value.split()[-1]: c for c in final.of("COPY")}
    for write in runtime.calls("withFile"):
        copy = copies.pop(write.args["path"])
        assert int(copy.flag("chmod") or "0", 8) == write.args["permissions"]
        assert (copy.flag("chown") or "") == write.args.get("owner", "")
    assert copies == {}
    assert final.of("COPY")[-1].flag("from") == "builder"

    if spec.kubectl:
        kubectl = file_source(runtime, "/usr/local/bin/kubectl")
        (add,) = df.resolve("kubectl-${TARGETARCH}", {"TARGETARCH": arch}).of("ADD")
        url, dest = add.value.split()
        assert dest == "/kubectl"
        assert url == kubectl.args["url"]
        assert add.flag("checksum") == kubectl.args["checksum"]
        assert df.stage("kubectl").base == "kubectl-${TARGETARCH}"


async def test_ui_matches(engine: StandInEngine):
    df = dockerfile(Component.UI)
    source = dag.host().directory(str(FIXTURE_WORKSPACE))
    ui = engine.node(await (await build_image(source, component=Component.UI, platform=None)).id())
    unlocked = dag.host().directory(
        str(FIXTURE_WORKSPACE), exclude=["examples/ui/package-lock.json"]
    )
    ui_unlocked = engine.node(
        await (await build_image(unlocked, component=Component.UI, platform=None)).id()
    )
    final = df.final
    assert final.base == ui.base_image()
    assert final.platform is None
    assert final.workdir() == ui.last("withWorkdir").args["path"]
    assert final.args()["UI_PATH"] == "examples/ui"
    (run,) = final.of("RUN")
    assert [m.split("target=")[1] for m in run.flags["mount"]] == list(mounts(ui))
    # The same install: the pipeline's lockfile script when there is a lock (npm ci,
    # npm install on a stale lock), `npm install` when there is none.
    assert ui.execs() == [["sh", "-c", _ui.LOCKED_INSTALL]]
    assert ui_unlocked.execs() == [_ui.UNLOCKED_INSTALL]
    expected = (
        f"if [ -f package-lock.json ]; then {_ui.LOCKED_INSTALL}; "
        f"else {' '.join(_ui.UNLOCKED_INSTALL)}; fi"
    )
    assert run.value.split() == expected.split()
    assert final.env() == ui.env() == {"PORT": "3001"}
    assert final.exposed() == [ui.last("withExposedPort").args["port"]]
    assert final.cmd() == ui.last("withDefaultArgs").args["args"]
    assert final.entrypoint() is None  # node's own entrypoint, as in the pipeline
    assert ui.calls("withEntrypoint") == []


def dockerignore_patterns(excluded: tuple[str, ...]) -> set[str]:
    """The `.dockerignore` line for each pipeline exclude pattern.

    `.dockerignore` patterns match from the context root, so one `**/<name>`
    covers both `<name>/` (at the root) and `**/<name>/`.
    """
    return {"**/" + pattern.removeprefix("**/").rstrip("/") for pattern in excluded}


@pytest.mark.parametrize("component", RUST)
async def test_rust_dockerfiles_send_what_the_pipeline_copies(
    recipes: StandInEngine, component: Component, tmp_path: Path
):
    # Over a Brokkr-shaped tree (docs, charts, UI, metis.db, build output, .cargo,
    # rust-toolchain.toml), the build context the .dockerignore lets through is
    # exactly the directory the pipeline copies into the planner and the builder.
    workspace = brokkr_shaped(tmp_path)
    everything = [p.relative_to(workspace).as_posix() for p in workspace.rglob("*") if p.is_file()]
    text = (DOCKERFILES / f"Dockerfile.{component.value}.dockerignore").read_text()
    ctr = await build_stage(
        dag.host().directory(str(workspace)),
        component=component,
        stage=Stage.BUILDER,
        platform=None,
    )
    builder = recipes.node(await ctr.id())
    (run,) = planner_runs(recipes)
    for stage in (run[1].parent, builder):
        (copy,) = [n for n in stage.calls("withDirectory") if n.args["path"] == "/app"]
        assert set(directory_files(copy.args["source"])) == dockerignore_sends(text, everything)
    # Both Dockerfile stages that see the source copy the whole (narrowed) context.
    df = dockerfile(component)
    for name in ("planner", "builder"):
        assert [c.value for c in df.stage(name).of("COPY") if c.flag("from") is None] == [". ."]


def test_ui_dockerfile_ignores_what_the_pipeline_excludes():
    text = (DOCKERFILES / "Dockerfile.ui.dockerignore").read_text()
    ignored = {line.strip() for line in text.splitlines() if line.strip()[:1] not in ("", "#")}
    # The UI's context is the whole repository: it may ignore more (the Rust
    # build output), never less than the pipeline drops from the UI folder.
    assert ignored >= dockerignore_patterns(_ui.UI_EXCLUDE)


# -- Brokkr v0.9.1 and later: Dockerfile.broker-console ----------------------------


def console_dockerfile() -> Dockerfile:
    return parse((DOCKERFILES / "Dockerfile.broker-console").read_text())


def test_each_broker_dockerfile_says_which_era_it_serves():
    seed = (DOCKERFILES / "Dockerfile.broker").read_text().splitlines()[1]
    today = (DOCKERFILES / "Dockerfile.broker-console").read_text().splitlines()[1]
    assert "seed-era" in seed
    assert "v0.9.1 and later" in today


async def test_console_dockerfile_matches_the_v091_graph(engine: StandInEngine):
    engine.container_files[RECIPE_PATH] = recipe_of
    engine.container_dirs[_console.DIST_PATH] = {"brokkr-web-1_bg.wasm": b"\0asm"}
    df = console_dockerfile()
    source = dag.host().directory(str(FIXTURE_V091))
    ctr = await build_stage(source, component=Component.BROKER, stage=Stage.BUILDER, platform=AMD64)
    builder = engine.node(await ctr.id())
    (copy,) = [
        n for n in builder.calls("withDirectory") if n.args["path"] == "/app/crates/brokkr-web/dist"
    ]
    console = copy.args["source"].parent
    assert console is not None

    # The console stage: same base, platform, packages, tools, environment, build.
    stage = df.stage("console")
    assert stage.platform == "$BUILDPLATFORM"
    assert stage.base == console.base_image()
    wasm_bindgen = stage.args()["WASM_BINDGEN_VERSION"]
    assert wasm_bindgen == "0.2.126"  # what the console's Cargo.lock locks
    variables = {"WASM_BINDGEN_VERSION": wasm_bindgen}
    commands = run_commands(stage, variables)
    assert packages_of(commands) == installed(console) == list(CONSOLE_BUILD_PACKAGES)
    assert [c for c in commands if c[0] not in ("apt-get", "rm")] == [
        a for a in console.execs() if a[:2] != ["sh", "-c"]
    ]
    assert {k: substitute(v, variables) for k, v in stage.env().items()} == console.env()
    assert stage.workdir() == console.last("withWorkdir").args["path"]

    # cook and build with embed-ui; the dist where the broker's rust-embed folder points.
    chef, _toolchain, cacher, build = df.lineage("builder", NATIVE)
    variables = {**NATIVE, **_toolchain.env()}
    cargo = cargo_commands([chef, cacher, build], variables)
    assert cargo == [a for a in builder.execs() if a[0] == "cargo"]
    dist = [c for c in build.of("COPY") if c.flag("from") == "console"]
    assert [c.value for c in dist] == [f"{_console.DIST_PATH} crates/brokkr-web/dist"]
    # Neither the planner nor the builder keeps the console crate's source.
    for name in ("planner", "builder"):
        assert ["rm", "-rf", _console.CONSOLE_DIR] in run_commands(df.stage(name), {})


async def test_console_dockerfile_sends_what_the_pipeline_copies(
    recipes: StandInEngine, tmp_path: Path
):
    workspace = tmp_path / "src"
    shutil.copytree(FIXTURE_V091, workspace)
    (workspace / "crates/brokkr-web/dist").mkdir()
    (workspace / "crates/brokkr-web/dist/index.html").write_text("stale")
    (workspace / "crates/brokkr-web/target").mkdir()
    (workspace / "crates/brokkr-web/target/x").write_text("build output")
    everything = [p.relative_to(workspace).as_posix() for p in workspace.rglob("*") if p.is_file()]
    text = (DOCKERFILES / "Dockerfile.broker-console.dockerignore").read_text()
    sends = dockerignore_sends(text, everything)
    recipes.container_dirs[_console.DIST_PATH] = {"x_bg.wasm": b""}
    ctr = await build_stage(
        dag.host().directory(str(workspace)),
        component=Component.BROKER,
        stage=Stage.BUILDER,
        platform=None,
    )
    builder = recipes.node(await ctr.id())
    (workspace_copy,) = [n for n in builder.calls("withDirectory") if n.args["path"] == "/app"]
    rust = set(directory_files(workspace_copy.args["source"]))
    # The context holds the workspace the pipeline copies plus the console crate.
    console_dir = f"{_console.CONSOLE_DIR}/"
    assert {p for p in sends if not p.startswith(console_dir)} == rust
    (console_copy,) = [
        n for n in builder.calls("withDirectory") if n.args["path"] == "/app/crates/brokkr-web/dist"
    ]
    console = console_copy.args["source"].parent
    assert console is not None
    step = next(
        n for n in console.calls("withDirectory") if n.args["path"] == "/app/crates/brokkr-web"
    )
    excluded = [e for e in step.args["exclude"] if not e.startswith("**/")]
    console_files = {
        p
        for p in directory_files(step.args["source"])
        if not any(p.startswith(e) for e in excluded) and "node_modules/" not in p
    }
    assert {p.removeprefix(console_dir) for p in sends if p.startswith(console_dir)} == set(
        console_files
    )
