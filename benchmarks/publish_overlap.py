"""How well `publish` overlaps engine work: wall time over the sum of simulated work.

The stand-in engine of the test suite, in its own process as a real engine is,
delays every build sync and every push by 0.3 s (the simulated engine work);
`publish` of a release (`refs/tags/v1.0.0`, all three components, both
platforms: 6 builds and 12 pushes) runs against it,
pushing for real to Debian's docker-registry on loopback so the read-back
verification reads a real registry (and the SBOMs, read from the stand-in's
answers without a delay, are attached there). The figure printed is

    wall time of publish / sum of simulated engine work

1.0 would mean everything ran one after the other; the target is <= 0.40.
Run from the repository root with the test dependencies installed:

    .venv/bin/python benchmarks/publish_overlap.py
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DAGGER_MODULE", "brokkr")
os.environ.setdefault("DAGGER_MAIN_OBJECT", "Brokkr")

DELAY = 0.3
TARGET = 0.40
SHA = "0123456789abcdef0123456789abcdef01234567"


def serve_engine(conn: Connection) -> None:
    """The stand-in engine in its own process, as a real engine is; driven through `conn`."""
    from tests.support.sbom_inputs import answer_image_reads, scan_all
    from tests.support.standin import StandInEngine, push_to_registry, schema_path

    engine = StandInEngine(schema_path())
    engine.start()
    conn.send((engine.port, engine.token))
    registry, base_url = conn.recv()
    answer_image_reads(engine)  # a loopback registry gets the SBOMs without a login
    scan_all()  # the host syft runs now, not inside the timed publish
    engine.container_files["/app/recipe.json"] = '{"skeleton": "bench"}'
    engine.on_publish = push_to_registry(engine, registry=registry, base_url=base_url)
    conn.recv()  # the module is connected and constructed: simulate engine work from now on
    engine.delays = {"sync": DELAY, "publish": DELAY}
    conn.send("delaying")
    conn.recv()  # publish finished
    fields = [field for field, *_ in engine.evaluated]
    conn.send((fields.count("sync"), fields.count("publish")))
    engine.stop()


async def run(conn: Connection, port: int, token: str, registry: str) -> tuple[float, list[str]]:
    import dagger
    from dagger import dag

    from tests.support.standin import FIXTURE_WORKSPACE, ModuleCaller

    os.environ["DAGGER_SESSION_PORT"] = str(port)
    os.environ["DAGGER_SESSION_TOKEN"] = token
    async with dagger.connection():
        source = await dag.host().directory(str(FIXTURE_WORKSPACE)).id()
        brokkr = ModuleCaller(None, source)  # the engine runs in the other process
        state = await brokkr.state()
        conn.send("start")
        conn.recv()
        started = time.perf_counter()
        output = await brokkr.call(
            "publish",
            state=state,
            ref="refs/tags/v1.0.0",
            sha=SHA,
            registry=f"{registry}/bench{int(time.time())}",
        )
        # One address@sha256 line per pushed tag; `#` lines are notes (SBOMs, signatures).
        refs = [line for line in output.splitlines() if line and not line.startswith("#")]
        return time.perf_counter() - started, refs


def main() -> int:
    from tests.support.registry_server import start_registry

    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=serve_engine, args=(child,))
    process.start()
    try:
        port, token = parent.recv()
        with (
            tempfile.TemporaryDirectory(prefix="brokkr-bench-") as workdir,
            start_registry(Path(workdir)) as server,
        ):
            parent.send((server.registry, server.base_url))
            wall, refs = anyio.run(run, parent, port, token, server.registry)
            parent.send("done")
            builds, pushes = parent.recv()
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
    if len(refs) != 12 or builds != 6 or pushes < 12:
        msg = f"unexpected run: {len(refs)} references, {builds} builds, {pushes} pushes"
        raise SystemExit(msg)
    work = (builds + pushes) * DELAY
    ratio = wall / work
    print(f"builds: {builds}, pushes: {pushes}, simulated engine work: {work:.2f} s")
    print(f"publish wall time: {wall:.2f} s")
    print(f"overlap ratio (wall / work): {ratio:.3f} (target <= {TARGET:.2f})")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
