"""publish on both eras of Brokkr: components from the source, and today's tag policy.

The seed-era fixture holds examples/ui (all three components by default); a copy
without it is shaped like Brokkr since v0.9.1 (broker and agent by default, and
the output says why there is no UI image).
"""

import json
import shutil
from pathlib import Path

import pytest
from dagger import dag
from dagger.mod._exceptions import FunctionError

from tests.support.registry_server import RegistryServer
from tests.support.standin import FIXTURE_WORKSPACE, ModuleCaller, StandInEngine

pytestmark = [pytest.mark.registry, pytest.mark.usefixtures("no_waiting")]

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
async def no_ui(engine: StandInEngine, tmp_path: Path) -> ModuleCaller:
    """The module on a copy of the fixture without examples/ui (its demo at examples/ui-slim)."""
    tree = tmp_path / "brokkr"
    shutil.copytree(FIXTURE_WORKSPACE, tree)
    shutil.move(tree / "examples" / "ui", tree / "examples" / "ui-slim")
    return ModuleCaller(engine, await dag.host().directory(str(tree)).id())


def pushed(engine: StandInEngine) -> list[str]:
    """The image pushes (the dependency cache's own pushes are tests/publishing/
    test_dependency_cache.py's subject)."""
    return sorted(p.address for p in engine.pushes if "/brokkr-build-cache:" not in p.address)


def notes(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


def addresses(text: str) -> list[str]:
    return sorted(line.split(" ")[0] for line in text.splitlines() if not line.startswith("#"))


async def test_dry_run_on_todays_tree_lists_broker_and_agent_and_says_why_no_ui(
    no_ui: ModuleCaller, publishing: StandInEngine, namespace: str
):
    # dagger call publish --dry-run (no component flag) on Brokkr v0.9.1's shape
    output = await no_ui.call(
        "publish", ref="refs/tags/v0.9.1", sha=SHA, registry=namespace, dry_run=True
    )
    assert addresses(output) == sorted(
        f"{namespace}/{name}:{tag}"
        for name in ("brokkr-broker", "brokkr-agent")
        for tag in ("0.9.1", "0.9", "0", "latest")
    )
    (note,) = [n for n in notes(output) if "brokkr-ui" in n]
    assert "no brokkr-ui image" in note
    assert "examples/ui/package.json" in note
    assert "--ui-path" in note
    assert publishing.pushes == []


async def test_dry_run_on_the_seed_tree_lists_all_three(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    output = await brokkr.call(
        "publish", ref="refs/tags/v0.1.0", sha=SHA, registry=namespace, dry_run=True
    )
    names = {a.split("/")[-1].split(":")[0] for a in addresses(output)}
    assert names == {"brokkr-broker", "brokkr-agent", "brokkr-ui"}
    assert not any("brokkr-ui" in n for n in notes(output))


async def test_todays_tree_publishes_broker_and_agent_and_json_says_why(
    no_ui: ModuleCaller, publishing: StandInEngine, namespace: str
):
    output = await no_ui.call(
        "publish", pr=7, sha=SHA, registry=namespace, format="JSON", platforms=["linux/amd64"]
    )
    entries = json.loads(output)
    assert [e["component"] for e in entries] == ["broker", "agent"]
    assert pushed(publishing) == [
        f"{namespace}/brokkr-agent:pr-7",
        f"{namespace}/brokkr-broker:pr-7",
    ]
    reasons = {e["no_ui_image"] for e in entries}
    (reason,) = reasons
    assert reason.startswith("no brokkr-ui image")


async def test_the_seed_tree_json_has_no_reason(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    output = await brokkr.call(
        "publish", pr=8, sha=SHA, registry=namespace, format="JSON", platforms=["linux/amd64"]
    )
    entries = json.loads(output)
    assert [e["component"] for e in entries] == ["broker", "agent", "ui"]
    assert all(e["no_ui_image"] is None for e in entries)


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param({"components": ["UI"]}, id="components-ui"),
        pytest.param({"component": "UI"}, id="component-ui"),
        pytest.param({"ui_path": "frontend/app"}, id="ui-path-names-nothing"),
    ],
)
async def test_a_ui_the_source_lacks_is_refused_before_any_work(
    no_ui: ModuleCaller, publishing: StandInEngine, namespace: str, flags: dict
):
    with pytest.raises(FunctionError, match="--ui-path") as info:
        await no_ui.call("publish", pr=3, sha=SHA, registry=namespace, dry_run=True, **flags)
    assert "examples/ui" in str(info.value) or "frontend/app" in str(info.value)
    assert publishing.pushes == []
    assert publishing.evaluated == []


async def test_ui_path_publishes_the_demo_app_too(
    no_ui: ModuleCaller, publishing: StandInEngine, namespace: str
):
    output = await no_ui.call(
        "publish",
        pr=4,
        sha=SHA,
        registry=namespace,
        ui_path="examples/ui-slim",
        platforms=["linux/amd64"],
    )
    assert [a.split("@")[0] for a in addresses(output)] == sorted(
        f"{namespace}/{name}:pr-4" for name in ("brokkr-broker", "brokkr-agent", "brokkr-ui")
    )
    assert not any("no brokkr-ui image" in n for n in notes(output))


async def test_components_picks_from_the_seed_tree(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    # dagger call publish --components broker,agent (Brokkr's own choice)
    await brokkr.call(
        "publish",
        pr=5,
        sha=SHA,
        registry=namespace,
        components=["BROKER", "AGENT"],
        platforms=["linux/amd64"],
    )
    assert pushed(publishing) == [
        f"{namespace}/brokkr-agent:pr-5",
        f"{namespace}/brokkr-broker:pr-5",
    ]


async def test_a_nightly_publish_pushes_nightly_alone(
    no_ui: ModuleCaller, publishing: StandInEngine, namespace: str, registry: RegistryServer
):
    # dagger call publish --ref refs/heads/main --nightly (Brokkr's scheduled build)
    for _ in range(2):  # a second night on the same commit moves the tag again
        await no_ui.call(
            "publish",
            ref="refs/heads/main",
            sha=SHA,
            registry=namespace,
            nightly=True,
            platforms=["linux/amd64"],
        )
    assert pushed(publishing) == sorted(
        [f"{namespace}/brokkr-agent:nightly", f"{namespace}/brokkr-broker:nightly"] * 2
    )


async def test_no_commit_tag_pushes_the_branch_tag_alone(
    no_ui: ModuleCaller, publishing: StandInEngine, namespace: str
):
    await no_ui.call(
        "publish",
        ref="refs/heads/main",
        sha=SHA,
        registry=namespace,
        no_commit_tag=True,
        components=["AGENT"],
        platforms=["linux/amd64"],
    )
    assert pushed(publishing) == [f"{namespace}/brokkr-agent:main"]


async def test_nightly_of_a_release_ref_is_refused_before_any_work(
    no_ui: ModuleCaller, publishing: StandInEngine, namespace: str
):
    with pytest.raises(FunctionError, match="never tags a release"):
        await no_ui.call(
            "publish", ref="refs/tags/v1.0.0", sha=SHA, registry=namespace, nightly=True
        )
    assert publishing.evaluated == []
