"""The build graphs on real Brokkr trees, checked on a machine that can fetch them.

CI cannot fetch colliery-io/brokkr, so these run only when `BROKKR_SNAPSHOTS`
names a directory holding the two commits materialized with `git archive`:
`<dir>/df0be43` (v0.9.1) and `<dir>/1e69e30` (the seed era). Example:
`git --git-dir=<mirror> archive df0be43 | tar -x -C <dir>/df0be43`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagger import dag

from ci.build import console as _console
from ci.build import stages as _build
from ci.rules.components import Component, Stage
from ci.rules.platforms import parse_platform
from tests.build.test_console import DIST, cargo_runs, console_of, copied, dist_copy
from tests.build.test_stages import RECIPE_PATH, recipe_of
from tests.support.standin import Node, StandInEngine

SNAPSHOTS = os.environ.get("BROKKR_SNAPSHOTS", "")
pytestmark = pytest.mark.skipif(
    not SNAPSHOTS, reason="set BROKKR_SNAPSHOTS to a directory with df0be43/ and 1e69e30/"
)
FEATURES = ["--features", "embed-ui"]


@pytest.fixture
def recipes(engine: StandInEngine) -> StandInEngine:
    engine.container_files[RECIPE_PATH] = recipe_of
    engine.container_dirs[_console.DIST_PATH] = DIST
    return engine


def tree(commit: str) -> Path:
    path = Path(SNAPSHOTS) / commit
    if not (path / "Cargo.toml").is_file():
        pytest.fail(f"{path} is not a materialized Brokkr tree")
    return path


async def builder(engine: StandInEngine, commit: str, component: Component) -> Node:
    ctr = await _build.build_stage(
        dag.host().directory(str(tree(commit))),
        component=component,
        stage=Stage.BUILDER,
        platform=parse_platform("linux/amd64"),
    )
    return engine.node(await ctr.id())


async def test_v091_broker_embeds_the_trunk_console(recipes: StandInEngine):
    node = await builder(recipes, "df0be43", Component.BROKER)
    cook, build = cargo_runs(node)
    assert cook[:3] == ["cargo", "chef", "cook"]
    assert cook[6:8] == FEATURES
    assert build[6:8] == FEATURES
    assert dist_copy(node).args["path"] == "/app/crates/brokkr-web/dist"
    console = console_of(node)
    assert console.execs()[-1] == _console.TRUNK_BUILD
    assert ["cargo", "install", "wasm-bindgen-cli", "--locked", "--version", "0.2.126"] in (
        console.execs()
    )
    inputs = copied(console, "/app/crates/brokkr-web")
    assert "Trunk.toml" in inputs
    assert "src/main.rs" in inputs
    assert not any(p.startswith("crates/brokkr-web/") for p in copied(node, "/app"))


async def test_v091_agent_and_seed_era_have_no_console(recipes: StandInEngine):
    for commit, component in [
        ("df0be43", Component.AGENT),
        ("1e69e30", Component.BROKER),
        ("1e69e30", Component.AGENT),
    ]:
        node = await builder(recipes, commit, component)
        assert not any("--features" in a for a in cargo_runs(node)), (commit, component)
        assert [n.args["path"] for n in node.calls("withDirectory")] == ["/app"]


async def test_both_eras_ui_apps(recipes: StandInEngine):
    slim = await _build.build_stage(
        dag.host().directory(str(tree("df0be43"))),
        component=Component.UI,
        stage=Stage.RUNTIME,
        platform=parse_platform("linux/amd64"),
        ui_path="examples/ui-slim",
    )
    paths = [n.args["path"] for n in recipes.node(await slim.id()).calls("withDirectory")]
    assert paths == ["/app/sdks/typescript/brokkr-client", "/app/examples/ui-slim"]
    seed = await _build.build_stage(
        dag.host().directory(str(tree("1e69e30"))),
        component=Component.UI,
        stage=Stage.RUNTIME,
        platform=parse_platform("linux/amd64"),
    )
    assert [n.args["path"] for n in recipes.node(await seed.id()).calls("withDirectory")] == [
        "/app"
    ]
