"""The dependency cache on fresh engines: which publishes run `cargo chef cook`.

Four publishes of a branch (`refs/heads/main`) against one docker-registry on
loopback, each on a FRESH stand-in engine in its own process, as every hosted
CI run starts a new Dagger engine (tests/support/fresh_engine.py does the
runs; tests/publishing/test_fresh_engine.py checks the same four):

1. cold;
2. the same tree;
3. every workspace member's version bumped plus a source edit;
4. one dependency changed in Cargo.lock.

Printed per run: the `cargo chef cook` executions the engine evaluated and the
number of dependency crates the recipe holds (what a hit saves compiling; 382
at Brokkr's 1e69e30, 499 at v0.9.1, per platform). Expected: cooks in the
first and last run only. Run from the repository root:

    .venv/bin/python benchmarks/fresh_engine.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DAGGER_MODULE", "brokkr")
os.environ.setdefault("DAGGER_MAIN_OBJECT", "Brokkr")

EXPECTED = [True, False, False, True]
"""Whether each run cooks."""


def main() -> int:
    from tests.support.fresh_engine import four_runs
    from tests.support.registry_server import start_registry
    from tests.support.standin import FIXTURE_WORKSPACE

    with tempfile.TemporaryDirectory(prefix="brokkr-fresh-") as workdir:
        (Path(workdir) / "registry").mkdir()
        with start_registry(Path(workdir) / "registry") as server:
            runs = four_runs(FIXTURE_WORKSPACE, Path(workdir), server.registry, server.base_url)
    print(f"{'run':<32} {'cargo chef cook':>16} {'recipe crates':>14}")
    for number, run in enumerate(runs, 1):
        print(f"{number}. {run.name:<29} {run.cooks:>16} {run.crates:>14}")
        for note in run.notes:
            print(f"   {note}")
    cooked = [run.cooks > 0 for run in runs]
    verdict = "as expected" if cooked == EXPECTED else f"UNEXPECTED (expected {EXPECTED})"
    print(f"cooks in runs {[i + 1 for i, c in enumerate(cooked) if c]}: {verdict}")
    return 0 if cooked == EXPECTED else 1


if __name__ == "__main__":
    sys.exit(main())
