"""Four publishes of a branch, each on a fresh stand-in engine in its own process.

What hosted CI does: every run starts a new engine, with nothing cooked. The
runs share only the registry (Debian's docker-registry on loopback), where
the dependency cache lives. Shared by `benchmarks/fresh_engine.py`, which
prints the figures, and `tests/publishing/test_fresh_engine.py`, which checks
them:

1. cold: nothing in the registry;
2. the same tree;
3. every workspace member's version bumped, plus a source edit;
4. one dependency changed in `Cargo.lock`.

Per run: the `cargo chef cook` executions the engine evaluated (distinct
cooks; the broker and agent of one platform share theirs) and the number of
dependency crates the recipe holds (what a hit saves compiling).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import anyio

SHAS = [f"{n:x}" * 40 for n in range(1, 5)]
"""One commit per run: each branch publish pushes its own `main-sha-<sha>` tag."""

DEPENDENCIES = """
[[package]]
name = "itoa"
version = "1.0.11"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "49f1f14873335454500d59611f1cf4a4b0f786f9ac11f4312a78e4cf2566695b"

[[package]]
name = "serde"
version = "1.0.210"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "c8e3592472072e6e22e0a54d5904d9febf8508f65fb8552499a1abc7d1078c3a"

[[package]]
name = "serde_json"
version = "1.0.128"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "6ff5456707a1de34e7e37f2a6fd3d3f808c318259cbd01ab6377795054b483d8"
"""
"""Dependencies added to the fixture's lockfile (crate names and versions of the
crates.io index; nothing is compiled by the stand-in)."""


@dataclass(frozen=True)
class RunResult:
    """One publish on a fresh engine."""

    name: str
    cooks: int
    crates: int
    notes: list[str]


def prepare_tree(fixture: Path, tree: Path) -> None:
    """A copy of the Brokkr-shaped fixture with a few registry dependencies."""
    shutil.copytree(fixture, tree, ignore=shutil.ignore_patterns("node_modules", "target"))
    lock = tree / "Cargo.lock"
    lock.write_text(lock.read_text() + DEPENDENCIES)
    models = tree / "crates" / "brokkr-models" / "Cargo.toml"
    text = models.read_text()
    if "[dependencies]" not in text:
        text += "\n[dependencies]\n"
    models.write_text(text + 'serde_json = "1"\n')


def bump_versions(tree: Path) -> None:
    """Every workspace member's version (the workspace's `[workspace.package]`) bumped, in
    the manifest and the lockfile, and an edit to the broker's source."""
    for name in ("Cargo.toml", "Cargo.lock"):
        path = tree / name
        path.write_text(path.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    main = tree / "crates" / "brokkr-broker" / "src" / "main.rs"
    main.write_text(main.read_text() + "\n// an edit: the dependencies stay as they were\n")


def change_dependency(tree: Path) -> None:
    """One dependency moved to another version in `Cargo.lock`."""
    lock = tree / "Cargo.lock"
    lock.write_text(lock.read_text().replace('version = "1.0.11"', 'version = "1.0.14"'))


def lock_crates(tree: Path) -> int:
    """Dependency crates in the recipe: the lockfile's packages that have a source."""
    return (tree / "Cargo.lock").read_text().count("\nsource = ")


def _publish_once(
    conn: Connection, tree: str, registry: str, base_url: str, namespace: str, sha: str
) -> None:
    """In a fresh process: a fresh stand-in engine, one publish, what it evaluated."""
    os.environ.setdefault("DAGGER_MODULE", "brokkr")
    os.environ.setdefault("DAGGER_MAIN_OBJECT", "Brokkr")
    from tests.support.sbom_inputs import answer_image_reads
    from tests.support.standin import (
        ModuleCaller,
        StandInEngine,
        cargo_chef_recipe,
        push_to_registry,
        schema_path,
    )

    engine = StandInEngine(schema_path())
    engine.start()
    answer_image_reads(engine)
    engine.container_files["/app/recipe.json"] = cargo_chef_recipe
    engine.on_publish = push_to_registry(engine, registry=registry, base_url=base_url)
    os.environ["DAGGER_SESSION_PORT"] = str(engine.port)
    os.environ["DAGGER_SESSION_TOKEN"] = engine.token

    async def run() -> str:
        import dagger
        from dagger import dag

        async with dagger.connection():
            source = await dag.host().directory(tree).id()
            brokkr = ModuleCaller(None, source)
            return await brokkr.call("publish", ref="refs/heads/main", sha=sha, registry=namespace)

    try:
        output = anyio.run(run)
        cooks = {
            n.key()
            for _, node, *_ in engine.evaluated
            for n in node.graph()
            if n.field == "withExec" and list(n.args["args"])[:3] == ["cargo", "chef", "cook"]
        }
        conn.send(("ok", len(cooks), output))
    except BaseException as e:  # reported to the parent, which fails
        conn.send(("error", 0, f"{type(e).__name__}: {e}"))
    finally:
        engine.stop()


def publish_on_fresh_engine(
    tree: Path, registry: str, base_url: str, namespace: str, sha: str
) -> tuple[int, str]:
    """Run one publish of `tree` in a new process with its own engine: (cooks, output)."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=_publish_once, args=(child, str(tree), registry, base_url, namespace, sha)
    )
    process.start()
    try:
        if not parent.poll(600):
            msg = "the publish on a fresh engine did not finish in 600 s"
            raise RuntimeError(msg)
        status, cooks, output = parent.recv()
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
    if status != "ok":
        msg = f"the publish on a fresh engine failed: {output}"
        raise RuntimeError(msg)
    return cooks, output


def four_runs(fixture: Path, workdir: Path, registry: str, base_url: str) -> list[RunResult]:
    """The four publishes (see the module docstring), in order."""
    tree = workdir / "brokkr"
    prepare_tree(fixture, tree)
    namespace = f"{registry}/fresh{uuid.uuid4().hex[:8]}"
    steps = [
        ("cold", None),
        ("same tree", None),
        ("versions bumped + source edit", bump_versions),
        ("one dependency changed", change_dependency),
    ]
    results = []
    for (name, change), sha in zip(steps, SHAS, strict=True):
        if change is not None:
            change(tree)
        cooks, output = publish_on_fresh_engine(tree, registry, base_url, namespace, sha)
        notes = [line for line in output.splitlines() if line.startswith("# dependency cache")]
        results.append(RunResult(name, cooks, lock_crates(tree), notes))
    return results
