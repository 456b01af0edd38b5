"""The images, really built by a Dagger engine from the fixture workspace.

Run from a checkout with the `dagger` CLI installed (it starts an engine):

    pytest -m engine tests/engine

Each test shells out to `dagger call` from the repository root, as a user
would. The first run compiles cargo-chef and pulls the base images, so allow
several minutes.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "brokkr"
TIMEOUT = 3600  # seconds for one `dagger call` (a cold build compiles cargo-chef)

EM_AARCH64 = 183  # ELF e_machine of aarch64
EM_X86_64 = 62

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(
        shutil.which("dagger") is None,
        reason="needs the dagger CLI (and the engine it starts); see https://docs.dagger.io/install",
    ),
]


def dagger_run(source: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`dagger call --source=<source> <args…>` from the repository root."""
    command = ["dagger", "call", f"--source={source}", *args]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def dagger_call(source: Path, *args: str) -> str:
    """`dagger call --source=<source> <args…>` from the repository root; its stdout."""
    done = dagger_run(source, *args)
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(done.args)} exited {done.returncode}:\n{done.stderr[-4000:]}", pytrace=False
        )
    return done.stdout


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    assert header[4] == 2, "not a 64-bit ELF"
    assert header[5] == 1, "not little-endian"
    return int.from_bytes(header[18:20], "little")


def test_broker_builds_and_runs_with_its_migration():
    out = dagger_call(
        FIXTURE, "build", "--component=broker", "with-exec", "--args=brokkr-broker", "stdout"
    )
    assert "brokkr-broker 0.1.0" in out
    assert "CREATE TABLE stacks" in out


def test_agent_builds_and_runs_as_brokkr_with_kubectl():
    script = "id -u && id -g && pwd && kubectl version --client && ./brokkr-agent"
    out = dagger_call(
        FIXTURE,
        "build",
        "--component=agent",
        "with-exec",
        "--args=sh",
        "--args=-c",
        f"--args={script}",
        "stdout",
    )
    lines = out.splitlines()
    assert lines[:3] == ["10001", "10001", "/usr/local/bin"]
    assert "v1.34.1" in out
    assert "brokkr-agent 0.1.0" in out


def test_broker_runs_as_10001_from_usr_local_bin_as_brokkr_compose_runs_it():
    # Brokkr's compose: `entrypoint: []` and `./brokkr-broker create agent …`.
    script = "id -u && id -g && id -un && ./brokkr-broker"
    out = dagger_call(
        FIXTURE,
        "build",
        "--component=broker",
        "with-exec",
        "--args=sh",
        "--args=-c",
        f"--args={script}",
        "stdout",
    )
    assert out.splitlines()[:3] == ["10001", "10001", "brokkr"]
    assert "brokkr-broker 0.1.0" in out


def test_ui_builds_from_its_stale_lock_and_serves_on_3001():
    # The fixture's lock is out of step as Brokkr's is: npm ci refuses it, npm
    # install runs, and `npm start` (server.js, $PORT) answers on the exposed port.
    script = "npm start & sleep 3; wget -qO- http://127.0.0.1:3001/"
    out = dagger_call(
        FIXTURE,
        "build",
        "--component=ui",
        "with-exec",
        "--args=sh",
        "--args=-c",
        f"--args={script}",
        "stdout",
    )
    assert "Brokkr UI" in out


def test_arm64_broker_binary_is_an_aarch64_elf(tmp_path: Path):
    binary = tmp_path / "brokkr-broker"
    dagger_call(
        FIXTURE,
        "build",
        "--component=broker",
        "--platform=linux/arm64",
        "file",
        "--path=/usr/local/bin/brokkr-broker",
        "export",
        f"--path={binary}",
    )
    assert elf_machine(binary) == EM_AARCH64


def test_amd64_agent_binary_is_an_x86_64_elf(tmp_path: Path):
    binary = tmp_path / "brokkr-agent"
    dagger_call(
        FIXTURE,
        "build",
        "--component=agent",
        "--platform=linux/amd64",
        "file",
        "--path=/usr/local/bin/brokkr-agent",
        "export",
        f"--path={binary}",
    )
    assert elf_machine(binary) == EM_X86_64


def test_editing_a_migration_changes_the_built_binary(tmp_path: Path):
    """The stale-build regression: an embedded SQL file edit must reach the image."""
    workspace = tmp_path / "brokkr"
    shutil.copytree(FIXTURE, workspace, ignore=shutil.ignore_patterns("target", "node_modules"))
    run = ("build", "--component=broker", "with-exec", "--args=brokkr-broker", "stdout")
    before = dagger_call(workspace, *run)
    marker = f"-- edited {uuid.uuid4().hex}"
    migration = workspace / "crates/brokkr-models/migrations/0001_init.sql"
    migration.write_text(migration.read_text() + marker + "\n")
    after = dagger_call(workspace, *run)
    assert marker not in before
    assert marker in after


def test_an_image_whose_start_check_fails_is_refused(tmp_path: Path):
    workspace = tmp_path / "brokkr"
    shutil.copytree(FIXTURE, workspace, ignore=shutil.ignore_patterns("target", "node_modules"))
    main = workspace / "crates/brokkr-agent/src/main.rs"
    main.write_text(
        "fn main() {\n"
        '    if std::env::args().any(|a| a == "--help") {\n'
        '        eprintln!("agent refuses --help: broken build");\n'
        "        std::process::exit(3);\n"
        "    }\n"
        "}\n"
    )
    done = dagger_run(workspace, "build", "--component=agent", "id")
    assert done.returncode != 0
    assert "brokkr-agent for linux/" in done.stderr
    assert "does not start" in done.stderr
    assert "agent refuses --help: broken build" in done.stderr
