"""How well `publish` overlaps engine work, and how many engine rounds it waits for.

The stand-in engine of the test suite, in its own process as a real engine is,
makes every engine round-trip take DELAY seconds (2 s; a first argument sets
another): a build's sync, an exec's output
(stdout: start checks, the SBOM's syft scan), a file read out of a built
container (the planner's recipe) and a push.
`publish` of a release (all three components, both platforms: 12 tags) runs
against it, pushing for real to Debian's docker-registry on loopback so the
read-back verification reads a real registry (and the SBOMs are attached
there). Two publishes run, each on a fresh namespace of the engine's state:

- cold: the dependency cache is empty (its keys are looked up, every cook
  runs, and the new cache images are pushed beside the moving tags);
- warm: the next release (`v1.0.1`) with the cache the first one left, what
  every CI run sees until the dependencies change.

Printed for each: the round-trips the engine answered, the wall time, the
overlap figure

    wall time of publish / (round-trips x DELAY)

(1.0 would mean everything ran one after the other; target <= 0.40), and the
serial engine rounds, read from the engine's own timestamps: the longest
chain of round-trips each starting after the previous one ended (the machine's
speed does not move it; target 3, cold and warm). Why 2 s: the module
and the stand-in spend real CPU composing and answering each query, so the
round-trips of one round start spread over a moment (about a second on a
loaded two-core machine); a round-trip shorter than that spread makes two of
one round look serial. A real round-trip (a Rust build, a push) takes minutes.
Run from the repository root with the test dependencies installed:

    .venv/bin/python benchmarks/publish_overlap.py [DELAY]
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DAGGER_MODULE", "brokkr")
os.environ.setdefault("DAGGER_MAIN_OBJECT", "Brokkr")

DELAY = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
TARGET = 0.40
TARGET_ROUNDS = 3
SHA = "0123456789abcdef0123456789abcdef01234567"
DELAYED = ("sync", "stdout", "stderr", "combinedOutput", "contents", "digest", "size", "publish")
"""Every field that can be an engine round-trip (host file reads are not delayed)."""


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
    engine.on_publish = push_to_registry(engine, registry=registry, base_url=base_url)
    while (command := conn.recv()) != "stop":
        if command == "start":  # the module is connected: simulate engine work from now on
            engine.reset_recordings()
            engine.delays = dict.fromkeys(DELAYED, DELAY)
            conn.send("delaying")
        elif command == "stats":
            engine.delays = {}
            kinds = Counter(field for field, *_ in engine.round_trips())
            conn.send((dict(kinds), engine.serial_rounds()))
    engine.stop()


async def run(conn: Connection, port: int, token: str, registry: str) -> list[dict[str, object]]:
    import dagger
    from dagger import dag

    from tests.support.standin import FIXTURE_WORKSPACE, ModuleCaller

    os.environ["DAGGER_SESSION_PORT"] = str(port)
    os.environ["DAGGER_SESSION_TOKEN"] = token
    namespace = f"{registry}/bench{uuid.uuid4().hex[:8]}"
    results = []
    async with dagger.connection():
        source = await dag.host().directory(str(FIXTURE_WORKSPACE)).id()
        brokkr = ModuleCaller(None, source)  # the engine runs in the other process
        state = await brokkr.state()
        for name, ref in (("cold", "refs/tags/v1.0.0"), ("warm", "refs/tags/v1.0.1")):
            conn.send("start")
            conn.recv()
            started = time.perf_counter()
            output = await brokkr.call("publish", state=state, ref=ref, sha=SHA, registry=namespace)
            wall = time.perf_counter() - started
            conn.send("stats")
            kinds, rounds = conn.recv()
            # One address@sha256 line per pushed tag; `#` lines are notes.
            refs = [line for line in output.splitlines() if line and not line.startswith("#")]
            notes = [line for line in output.splitlines() if line.startswith("# dependency")]
            results.append(
                {
                    "name": name,
                    "wall": wall,
                    "kinds": kinds,
                    "rounds": rounds,
                    "refs": refs,
                    "notes": notes,
                }
            )
    return results


def main() -> int:
    from tests.support.registry_server import start_registry

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve_engine, args=(child,))
    process.start()
    try:
        port, token = parent.recv()
        with (
            tempfile.TemporaryDirectory(prefix="brokkr-bench-") as workdir,
            start_registry(Path(workdir)) as server,
        ):
            parent.send((server.registry, server.base_url))
            results = anyio.run(run, parent, port, token, server.registry)
            parent.send("stop")
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
    ok = True
    for result in results:
        kinds: dict[str, int] = result["kinds"]  # type: ignore[assignment]
        trips = sum(kinds.values())
        if len(result["refs"]) != 12:  # type: ignore[arg-type]
            msg = f"unexpected run: {len(result['refs'])} references"  # type: ignore[arg-type]
            raise SystemExit(msg)
        ratio = float(result["wall"]) / (trips * DELAY)  # type: ignore[arg-type]
        listed = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        print(f"{result['name']}: {trips} round-trips ({listed})")
        print(f"  publish wall time: {result['wall']:.2f} s")
        print(f"  overlap ratio (wall / work): {ratio:.3f} (target <= {TARGET:.2f})")
        print(f"  serial engine rounds: {result['rounds']} (target {TARGET_ROUNDS})")
        for note in result["notes"]:  # type: ignore[union-attr]
            print(f"  {note[:110]}")
        ok = ok and ratio <= TARGET and result["rounds"] <= TARGET_ROUNDS  # type: ignore[operator]
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
