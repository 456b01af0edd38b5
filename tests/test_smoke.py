"""Every image `build`, `image` and `publish` hand out has started once, on its own platform.

Through the stand-in engine: the start check is an exec on the very container
that is returned or pushed, evaluated before the function returns (or before
the first push), on the image's platform (a foreign one runs it under the
engine's emulation). A failing check, given as the engine's exec error, is a
`BrokkrError` naming the image, the platform, the check and its output; a
failing build is told apart from a failing check; `publish` pushes nothing.
"""

from __future__ import annotations

import pytest
from dagger import dag
from dagger.mod._exceptions import FunctionError

from ci.build import image as _image
from ci.build import stages as _build
from ci.build import ui as _ui
from ci.errors import BrokkrError
from ci.rules.components import COMPONENTS, Component, Stage
from ci.rules.platforms import parse_platform
from tests.build.test_stages import RECIPE_PATH, recipe_of
from tests.publishing.test_publish import SHA, really_push
from tests.support.registry_server import RegistryServer
from tests.support.standin import FIXTURE_WORKSPACE, ModuleCaller, Node, StandInEngine

AGENT_CHECK = ["sh", "-c", "./brokkr-agent --help && kubectl version --client"]


@pytest.fixture
def recipes(engine: StandInEngine) -> StandInEngine:
    engine.container_files[RECIPE_PATH] = recipe_of
    return engine


def source():
    return dag.host().directory(str(FIXTURE_WORKSPACE))


def checks_run(engine: StandInEngine) -> list[Node]:
    """The start-check execs the engine ran (their parent is the image checked)."""
    return [
        node
        for field, node, *_ in engine.evaluated
        if field == "stdout"
        and node.field == "withExec"
        and node.parent is not None
        and any(node.args["args"] == _build.start_check(spec) for spec in COMPONENTS.values())
    ]


def is_check(component: Component, platform: str):
    check = _build.start_check(COMPONENTS[component])

    def predicate(node: Node) -> bool:
        return (
            node.field == "withExec"
            and node.args["args"] == check
            and node.platform("?") == platform
        )

    return predicate


def test_start_checks_are_what_brokkr_needs_to_start():
    assert _build.start_check(COMPONENTS[Component.BROKER]) == [
        "sh",
        "-c",
        "./brokkr-broker --help",
    ]
    assert _build.start_check(COMPONENTS[Component.AGENT]) == AGENT_CHECK
    assert _build.start_check(COMPONENTS[Component.UI]) == _ui.START_CHECK


@pytest.mark.parametrize("component", list(Component))
@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
async def test_build_returns_only_an_image_whose_check_ran(
    recipes: StandInEngine, component: Component, platform: str
):
    ctr = await _build.build_image(source(), component=component, platform=parse_platform(platform))
    returned = recipes.node(await ctr.id())
    (check,) = checks_run(recipes)
    # The check ran on the returned container itself, on its own platform (the
    # engine is amd64, so arm64 runs under emulation), and adds nothing to it.
    assert check.parent is not None
    assert check.parent.key() == returned.key()
    assert check.platform("?") == platform
    assert returned.chain()[-1].field != "withExec"


async def test_image_checks_every_variant_before_returning(recipes: StandInEngine):
    image = await _image.build_multi(source(), component=Component.AGENT)
    variants = [recipes.node(await v.id()) for v in image.variants]
    checked = {c.parent.key(): c.platform("?") for c in checks_run(recipes) if c.parent}
    assert checked == {v.key(): p for v, p in zip(variants, image.platforms, strict=True)}
    assert sorted(checked.values()) == ["linux/amd64", "linux/arm64"]


async def test_the_runtime_stage_for_debugging_is_not_checked(recipes: StandInEngine):
    # `stage --stage runtime terminal` must open even an image whose check fails.
    await _build.build_stage(
        source(), component=Component.BROKER, stage=Stage.RUNTIME, platform=None
    )
    assert checks_run(recipes) == []


async def test_a_failing_check_names_image_platform_check_and_output(recipes: StandInEngine):
    recipes.fail_when(
        is_check(Component.AGENT, "linux/arm64"),
        "process did not complete successfully: exit code: 127",
        exec_error=lambda _node: (127, "brokkr-agent 0.1.0", "sh: kubectl: not found"),
    )
    with pytest.raises(BrokkrError) as info:
        await _image.build_multi(source(), component=Component.AGENT)
    message = str(info.value)
    assert message.startswith("brokkr-agent for linux/arm64 does not start")
    assert "./brokkr-agent --help && kubectl version --client" in message
    assert "exited 127" in message
    assert "brokkr-agent 0.1.0" in message
    assert "sh: kubectl: not found" in message
    assert "linux/amd64" not in message  # that variant passed
    assert message.endswith("nothing was pushed or returned")


async def test_a_failing_check_reaches_the_user_of_build(
    engine: StandInEngine, brokkr: ModuleCaller
):
    engine.fail_when(
        is_check(Component.UI, "linux/amd64"),
        "process did not complete successfully: exit code: 1",
        exec_error=lambda _node: (
            1,
            "",
            'start script "react-scripts start": react-scripts is not in node_modules/.bin',
        ),
    )
    with pytest.raises(FunctionError, match=r"brokkr-ui for linux/amd64 does not start") as info:
        await brokkr.call("build", component="UI", platform="linux/amd64")
    message = str(info.value)
    assert "react-scripts is not in node_modules/.bin" in message
    # The check's script is named by its first line, not quoted whole.
    assert "node -e 'const fs = require(\"fs\"); …'" in message
    assert len(message.splitlines()) <= 3


async def test_a_failing_build_is_not_called_a_failing_start(recipes: StandInEngine):
    def cargo_build(node: Node) -> bool:
        args = node.args["args"] if node.field == "withExec" else []
        return args[:1] == ["cargo"] and "build" in args and "--bin" in args

    recipes.fail_when(
        cargo_build,
        'process "cargo build" did not complete successfully: exit code: 101',
        exec_error=lambda _node: (101, "", "error[E0425]: cannot find value `x`"),
    )
    with pytest.raises(BrokkrError) as info:
        await _build.build_image(
            source(), component=Component.BROKER, platform=parse_platform("linux/amd64")
        )
    message = str(info.value)
    assert message.startswith("brokkr-broker for linux/amd64 did not build: ")
    # The stage, its base image, the command and the compiler's own words reach the user.
    assert "stage builder (rust:1.90-slim-bookworm)" in message
    assert "`cargo auditable build --release --bin brokkr-broker" in message
    assert "exited 101" in message
    assert "error[E0425]: cannot find value `x`" in message
    assert "does not start" not in message


async def test_check_output_in_the_error_is_bounded(recipes: StandInEngine):
    recipes.fail_when(
        is_check(Component.BROKER, "linux/amd64"),
        "exit code: 1",
        exec_error=lambda _node: (1, "x" * 1_000_000, "the last words"),
    )
    with pytest.raises(BrokkrError) as info:
        await _build.build_image(
            source(), component=Component.BROKER, platform=parse_platform("linux/amd64")
        )
    assert len(str(info.value)) < _build.CHECK_OUTPUT_LIMIT + 400
    assert str(info.value).count("the last words") == 1


@pytest.mark.registry
async def test_publish_pushes_nothing_when_a_check_fails(
    engine: StandInEngine, brokkr: ModuleCaller, registry: RegistryServer
):
    engine.container_files[RECIPE_PATH] = recipe_of
    engine.on_publish = really_push(engine, registry)
    engine.fail_when(
        is_check(Component.UI, "linux/arm64"),
        "process did not complete successfully: exit code: 1",
        exec_error=lambda _node: (1, "", "Error relocating /usr/local/bin/node"),
    )
    namespace = f"{registry.registry}/smoke"
    with pytest.raises(FunctionError, match="brokkr-ui for linux/arm64 does not start") as info:
        await brokkr.call("publish", ref="refs/tags/v1.2.3", sha=SHA, registry=namespace)
    assert "Error relocating /usr/local/bin/node" in str(info.value)
    assert "nothing was pushed" in str(info.value)
    assert engine.pushes == []
    # Every other variant of every component ran its check too (the failing one is
    # not recorded as run), and still none was pushed.
    assert len(checks_run(engine)) == 5
