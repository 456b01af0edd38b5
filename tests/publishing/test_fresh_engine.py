"""A fresh engine reuses the cooked dependencies through the registry (issue 18).

The four publishes of `tests/support/fresh_engine.py`, each on a new stand-in
engine in its own process, sharing only the loopback registry: the cook runs
on the cold run and after a dependency changed, never for the same tree or a
release's version bump.
"""

from pathlib import Path

from tests.support.fresh_engine import four_runs
from tests.support.registry_server import RegistryServer
from tests.support.standin import FIXTURE_WORKSPACE


def test_cooks_run_only_when_the_dependencies_change(registry: RegistryServer, tmp_path: Path):
    runs = four_runs(FIXTURE_WORKSPACE, tmp_path, registry.registry, registry.base_url)
    # One cook per platform (broker and agent share it), and only in runs 1 and 4.
    assert [r.cooks for r in runs] == [2, 0, 0, 2]
    assert [r.crates for r in runs] == [3, 3, 3, 3]
    cold, same, bumped, changed = runs
    assert sum("saved" in n for n in cold.notes) == 2
    for run in (same, bumped):
        assert sum(n.startswith("# dependency cache: hit ") for n in run.notes) == 2
        assert not any("saved" in n for n in run.notes)
    assert sum("saved" in n for n in changed.notes) == 2
    assert not any(" hit " in n for n in changed.notes)
