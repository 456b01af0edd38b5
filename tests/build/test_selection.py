"""Which components `image` builds: what the source holds, or what --components names.

The seed-era fixture holds examples/ui; a copy without it is shaped like Brokkr
since v0.9.1 (broker and agent only; its demo UI, if any, lives elsewhere).
"""

import shutil
from pathlib import Path

import pytest
from dagger import dag
from dagger.mod._exceptions import FunctionError

from tests.support.publishing import RECIPE
from tests.support.standin import FIXTURE_WORKSPACE, ModuleCaller, StandInEngine


@pytest.fixture
def no_ui_tree(tmp_path: Path) -> Path:
    """The fixture workspace without examples/ui, and a demo app at examples/ui-slim."""
    tree = tmp_path / "brokkr"
    shutil.copytree(FIXTURE_WORKSPACE, tree)
    shutil.move(tree / "examples" / "ui", tree / "examples" / "ui-slim")
    return tree


@pytest.fixture
async def no_ui(engine: StandInEngine, no_ui_tree: Path) -> ModuleCaller:
    return ModuleCaller(engine, await dag.host().directory(str(no_ui_tree)).id())


def components_of(images: list[dict]) -> list[str]:
    return [image["component"] for image in images]


def base_images(engine: StandInEngine) -> set[str]:
    """The base image of every container the engine evaluated."""
    return {
        n.args.get("address", "")
        for _, node, *_ in engine.evaluated
        for n in node.graph()
        if n.field == "from"
    }


async def test_the_seed_era_builds_all_three_by_default(
    brokkr: ModuleCaller, engine: StandInEngine
):
    # dagger call image
    engine.container_files["/app/recipe.json"] = RECIPE
    images = await brokkr.call("image")
    assert components_of(images) == ["BROKER", "AGENT", "UI"]
    assert all(image["platforms"] == ["linux/amd64", "linux/arm64"] for image in images)
    assert any(base.startswith("node:") for base in base_images(engine))


async def test_a_tree_without_a_ui_app_builds_broker_and_agent(
    no_ui: ModuleCaller, engine: StandInEngine
):
    engine.container_files["/app/recipe.json"] = RECIPE
    images = await no_ui.call("image", platforms=["linux/amd64"])
    assert components_of(images) == ["BROKER", "AGENT"]
    # Nothing of a UI image was built: no node base image in any evaluated graph.
    bases = base_images(engine)
    assert bases
    assert not any(base.startswith("node:") for base in bases)


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param({"component": "UI"}, id="component-ui"),
        pytest.param({"components": ["BROKER", "UI"]}, id="components-with-ui"),
        pytest.param({"ui_path": "frontend/app"}, id="ui-path-names-nothing"),
    ],
)
async def test_a_ui_the_source_lacks_is_refused_before_any_work(
    no_ui: ModuleCaller, engine: StandInEngine, flags: dict
):
    with pytest.raises(FunctionError, match="--ui-path") as info:
        await no_ui.call("image", **flags)
    assert "package.json" in str(info.value)
    assert engine.evaluated == []


async def test_ui_path_adds_the_demo_app(no_ui: ModuleCaller, engine: StandInEngine):
    # dagger call image --ui-path examples/ui-slim
    engine.container_files["/app/recipe.json"] = RECIPE
    images = await no_ui.call("image", ui_path="examples/ui-slim", platforms=["linux/amd64"])
    assert components_of(images) == ["BROKER", "AGENT", "UI"]
    ui = engine.node(images[2]["variants"][0])
    (package,) = [n for n in ui.calls("withFile") if n.args["path"] == "/app/package.json"]
    folder = package.args["source"].parent
    assert (folder.field, folder.args["path"]) == ("directory", "examples/ui-slim")


async def test_components_picks_and_component_is_its_one_item_alias(
    brokkr: ModuleCaller, engine: StandInEngine
):
    engine.container_files["/app/recipe.json"] = RECIPE
    both = await brokkr.call("image", components=["AGENT", "BROKER"], platforms=["linux/amd64"])
    assert components_of(both) == ["BROKER", "AGENT"]
    one = await brokkr.call("image", component="AGENT", platforms=["linux/amd64"])
    assert components_of(one) == ["AGENT"]
    with pytest.raises(FunctionError, match="disagree"):
        await brokkr.call("image", component="AGENT", components=["BROKER"])


async def test_a_chained_publish_never_puts_one_component_in_anothers_repository(
    brokkr: ModuleCaller, engine: StandInEngine
):
    # dagger call image --components broker,agent publish --address ghcr.io/me/brokkr-broker:dev
    engine.container_files["/app/recipe.json"] = RECIPE
    _broker, agent = await brokkr.call(
        "image", components=["BROKER", "AGENT"], platforms=["linux/amd64"]
    )
    with pytest.raises(FunctionError, match="its own address"):
        await brokkr.call(
            "publish", parent="Image", state=agent, address="ghcr.io/me/brokkr-broker:dev"
        )
    assert engine.pushes == []
