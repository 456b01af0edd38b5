"""UI apps with local `file:` dependencies (Brokkr v0.9.1's examples/ui-slim)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dagger import dag

from ci.build import stages as _build
from ci.build import ui as _ui
from ci.errors import BrokkrError
from ci.rules.components import COMPONENTS, Component
from tests.support.standin import FIXTURE_V091, FIXTURE_WORKSPACE, StandInEngine

UI = COMPONENTS[Component.UI]


def test_file_paths_resolve_inside_the_source():
    package = {
        "dependencies": {"@c/client": "file:../../sdks/typescript/brokkr-client", "react": "^18"},
        "devDependencies": {"tools": "file:./tools"},
    }
    assert _ui.file_paths(json.dumps(package), "examples/ui-slim") == [
        ("@c/client", "sdks/typescript/brokkr-client"),
        ("tools", "examples/ui-slim/tools"),
    ]
    assert _ui.file_paths('{"dependencies": {"ms": "^2"}}', "examples/ui") == []


@pytest.mark.parametrize("spec", ["file:../../../elsewhere", "file:/etc", "file:../../.."])
def test_a_file_path_leaving_the_source_is_refused(spec: str):
    text = json.dumps({"dependencies": {"x": spec}})
    with pytest.raises(BrokkrError, match="leaves the source"):
        _ui.file_paths(text, "examples/ui-slim")


def test_a_package_json_that_is_not_json_is_refused():
    with pytest.raises(BrokkrError, match=r"examples/ui/package\.json is not valid JSON"):
        _ui.file_paths("{", "examples/ui")


def copy_with(tmp_path: Path, spec: str) -> Path:
    tree = tmp_path / "src"
    shutil.copytree(FIXTURE_V091, tree)
    manifest = tree / "examples/ui-slim/package.json"
    package = json.loads(manifest.read_text())
    package["dependencies"]["@colliery-io/brokkr-client"] = spec
    manifest.write_text(json.dumps(package))
    return tree


async def test_an_escaping_path_is_refused_before_any_work(engine: StandInEngine, tmp_path: Path):
    tree = copy_with(tmp_path, "file:../../../outside")
    with pytest.raises(BrokkrError, match="leaves the source"):
        await _build.build_image(
            dag.host().directory(str(tree)),
            component=Component.UI,
            platform=None,
            ui_path="examples/ui-slim",
        )
    built = [f for f, n, *_ in engine.evaluated if any(c.field == "container" for c in n.graph())]
    assert built == []


async def test_a_missing_local_dependency_is_named(engine: StandInEngine, tmp_path: Path):
    tree = copy_with(tmp_path, "file:../../sdks/missing")
    with pytest.raises(BrokkrError, match=r"the source has no sdks/missing/package\.json"):
        await _build.check_source(dag.host().directory(str(tree)), UI, "examples/ui-slim")


async def test_the_seed_era_ui_has_no_local_dependencies(engine: StandInEngine):
    source = dag.host().directory(str(FIXTURE_WORKSPACE))
    assert await _ui.local_dependencies(source, "examples/ui") == []
    deps = await _ui.local_dependencies(dag.host().directory(str(FIXTURE_V091)), "examples/ui-slim")
    assert deps == [
        _ui.LocalDependency(path="sdks/typescript/brokkr-client", has_lock=False, has_build=True)
    ]
