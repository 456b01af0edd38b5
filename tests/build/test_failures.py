"""A failed build step says which image, platform and stage failed, and why.

The stand-in fails an exec as the engine does: a GraphQL error whose
extensions are the engine's exec error (`_type: EXEC_ERROR`, `cmd`,
`exitCode`, `stdout`, `stderr`), which the real SDK raises as
`dagger.ExecError`; its message alone is only `... exit code: 101`.
"""

from __future__ import annotations

import dagger
import pytest

from ci.build import failures as _failures
from ci.build import image as _image
from ci.build import stages as _build
from ci.errors import BrokkrError
from ci.rules.components import Component, Stage
from ci.rules.platforms import parse_platform
from ci.rules.versions import NODE_IMAGE, RUST_IMAGE
from tests.build.test_console import DIST, source
from tests.build.test_stages import RECIPE_PATH, recipe_of
from tests.support.standin import FIXTURE_WORKSPACE, StandInEngine

AMD64 = parse_platform("linux/amd64")


@pytest.fixture
def recipes(engine: StandInEngine) -> StandInEngine:
    engine.container_files[RECIPE_PATH] = recipe_of
    engine.container_dirs["/app/crates/brokkr-web/dist"] = DIST
    return engine


def test_the_tail_is_bounded_in_lines_and_bytes():
    lines = "\n".join(f"line {i}" for i in range(100))
    out = _failures.tail(lines, "")
    assert out.splitlines() == [f"line {i}" for i in range(60, 100)]
    huge = ("x" * 3000 + "\n") * 10 + "the error"
    out = _failures.tail("", huge)
    assert len(out.encode()) <= _failures.TAIL_BYTES
    assert out.endswith("the error")
    assert _failures.tail("built ok\n", "error: boom\n") == "built ok\nerror: boom"
    assert _failures.tail("", "") == ""


def test_every_step_is_named_by_its_stage():
    assert _failures.stage_of(["trunk", "build", "--release", "--offline"]) == (
        "console",
        RUST_IMAGE,
    )
    assert _failures.stage_of(["cargo", "install", "wasm-bindgen-cli"])[0] == "console"
    assert _failures.stage_of(["cargo", "chef", "prepare"])[0] == "planner"
    assert _failures.stage_of(["cargo", "chef", "cook", "--release"])[0] == "cacher"
    assert _failures.stage_of(["cargo", "auditable", "build"])[0] == "builder"
    assert _failures.stage_of(["sh", "-c", "if out=$(npm ci 2>&1); then"]) == (
        "runtime (npm install)",
        NODE_IMAGE,
    )
    assert _failures.stage_of(["sh", "-c", "cd /app/sdk && npm run build"])[1] == NODE_IMAGE
    assert _failures.stage_of(["mystery"]) == ("unknown stage", None)


async def test_a_failing_console_build_shows_its_output(recipes: StandInEngine):
    noise = "\n".join(f"   Compiling crate{i} v0.1.0" for i in range(200))
    recipes.fail_exec(
        "trunk",
        "build",
        exit_code=1,
        stdout=noise,
        stderr="error[E0308]: mismatched types\n --> src/main.rs:12:5",
    )
    with pytest.raises(BrokkrError) as info:
        await _image.build_multi(source(), component=Component.BROKER, platforms=[AMD64])
    message = str(info.value)
    assert "brokkr-broker's console for linux/amd64 did not build" in message
    assert f"stage console ({RUST_IMAGE})" in message
    assert "`trunk build --release --offline` exited 1" in message
    assert message.rstrip().endswith("--> src/main.rs:12:5; nothing was pushed or returned")
    assert "Compiling crate199" in message
    assert "Compiling crate100" not in message
    assert len(message.encode()) < _failures.TAIL_BYTES + 500


async def test_a_failing_planner_is_a_brokkr_error_with_its_output(recipes: StandInEngine):
    recipes.fail_exec(
        "cargo", "chef", "prepare", exit_code=101, stderr="error: failed to parse manifest"
    )
    with pytest.raises(BrokkrError) as info:
        await _build.build_stage(
            dagger.dag.host().directory(str(FIXTURE_WORKSPACE)),
            component=Component.AGENT,
            stage=Stage.BUILDER,
            platform=None,
        )
    message = str(info.value)
    assert "stage planner" in message
    assert "error: failed to parse manifest" in message
    assert "linux/amd64" in message


async def test_a_failing_cross_build_names_its_platform(recipes: StandInEngine):
    recipes.fail_exec(
        "cargo", "auditable", exit_code=101, stderr="linker `aarch64-linux-gnu-gcc` not found"
    )
    with pytest.raises(BrokkrError) as info:
        await _image.build_multi(
            dagger.dag.host().directory(str(FIXTURE_WORKSPACE)), component=Component.AGENT
        )
    message = str(info.value)
    assert "brokkr-agent for linux/arm64 did not build: stage builder" in message
    assert "brokkr-agent for linux/amd64 did not build: stage builder" in message
    assert message.count("linker `aarch64-linux-gnu-gcc` not found") == 2
