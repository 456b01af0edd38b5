"""The folders of `ci/` are its architecture: each layer imports only the layers below
it, as its `__init__` docstring states. This test reads every module's imports."""

import ast
from pathlib import Path

import pytest

CI = Path(__file__).resolve().parents[1] / "ci"

# What each part of the package may import from `ci` (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "concurrency": {"errors"},
    "inputs": {"errors", "concurrency"},
    "rules": {"errors", "concurrency"},
    "build": {"errors", "concurrency", "inputs", "rules"},
    "registry": {"errors", "concurrency", "rules"},
    "access": {"errors", "concurrency", "inputs", "rules", "build", "registry"},
    "supply_chain": {"errors", "concurrency", "inputs", "rules", "build", "registry", "access"},
    "dependency_cache": {"errors", "concurrency", "inputs", "rules", "build", "registry", "access"},
    "publishing": {
        "errors",
        "concurrency",
        "inputs",
        "rules",
        "build",
        "registry",
        "access",
        "supply_chain",
        "dependency_cache",
    },
    "main": {
        "errors",
        "concurrency",
        "inputs",
        "rules",
        "build",
        "registry",
        "access",
        "supply_chain",
        "dependency_cache",
        "publishing",
    },
}
# Modules that may import `dagger`: the Dagger object, the engine-side layers, and the
# one rule module that declares the CLI's enums.
DAGGER_FREE = {"errors", "concurrency", "rules", "registry"}
DAGGER_EXCEPTIONS = {"rules/components.py"}


def part_of(path: Path) -> str:
    rel = path.relative_to(CI)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path) -> set[str]:
    """The top-level names a module imports (`ci.<part>` reported as `ci.<part>`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "ci":
                names = [f"ci.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.add(".".join(parts[:2]) if parts[0] == "ci" else parts[0])
    return found


MODULES = sorted(p for p in CI.rglob("*.py") if p.name != "__init__.py" or p.parent != CI)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CI)))
def test_each_module_imports_only_the_layers_below_it(path: Path) -> None:
    part = part_of(path)
    assert part in ALLOWED, f"{path}: a new top-level part of ci/ needs a rule here"
    used = {name.removeprefix("ci.") for name in imports(path) if name.startswith("ci.")}
    assert used - ALLOWED[part] - {part} == set()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CI)))
def test_the_pure_layers_never_import_dagger(path: Path) -> None:
    rel = str(path.relative_to(CI))
    if part_of(path) in DAGGER_FREE and rel not in DAGGER_EXCEPTIONS:
        assert "dagger" not in imports(path)


def test_every_layer_states_its_rule() -> None:
    for package in (p for p in CI.iterdir() if p.is_dir() and p.name != "__pycache__"):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"{package.name}/__init__.py has no docstring"
        assert "Rule:" in doc, f"{package.name}/__init__.py does not state its rule"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "x.py"
    module.write_text("from ci.publishing import publish\nimport dagger\nfrom ci import rules\n")
    assert imports(module) == {"ci.publishing", "dagger", "ci.rules"}
