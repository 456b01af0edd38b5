"""The UI image, replayed for real on this machine.

`dagger call build --component ui` goes through the stand-in engine; the
container it returns is walked call by call and done again on the host, in a
temporary directory standing for the image's filesystem: the files it copies
are written, its environment set, its execs run with the host's real `node`
and `npm` (against the npm registry), its start check run, and its start
command started; the app must answer HTTP 200 on the exposed port 3001.

The fixture UI's lockfile is out of step with its `package.json` the way
Brokkr's is (tests/fixtures/brokkr/examples/ui/README.md), so the replay also
proves that a stale lock does not fail the image: `npm ci` refuses it (the
host's npm as node:18-alpine's npm 10.8.2 does), the build log says so, and
`npm install` keeps what the lock pins.

Without node and npm these tests skip; with `CI=true` they fail (`.ci/run`
installs Debian's `nodejs` and `npm`). Every step has a timeout.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from ci.build import stages as _build
from ci.build import ui as _ui
from ci.rules.components import COMPONENTS, Component
from tests.support.standin import (
    FIXTURE_V091,
    ModuleCaller,
    Node,
    StandInEngine,
    directory_files,
    file_contents,
)

INSTALL_TIMEOUT = 240  # seconds for one exec (npm ci, then npm install, from the registry)
CHECK_TIMEOUT = 30
START_TIMEOUT = 30  # seconds for the app to answer after it is started
UI_PORT = COMPONENTS[Component.UI].port


def require(*programs: str) -> None:
    """Skip without `programs` on PATH, or fail with CI=true (a missing prerequisite)."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return
    reason = f"needs {' and '.join(missing)} on PATH (.ci/run installs Debian's nodejs and npm)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: a missing prerequisite fails, never skips: {reason}")
    pytest.skip(reason)


# -- replaying a recorded container -------------------------------------------


@dataclass
class Replay:
    """A container's recorded chain done again under `root` on the host."""

    root: Path
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    default_args: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    logs: list[tuple[list[str], subprocess.CompletedProcess[str]]] = field(default_factory=list)

    def host(self, path: str) -> Path:
        """Where the image path `path` (absolute, or relative to the workdir) is on the host."""
        posix = PurePosixPath(self.workdir) / path
        return self.root.joinpath(*[p for p in posix.parts if p != "/"])

    def process_env(self) -> dict[str, str]:
        """The container's environment over the host's PATH; HOME is the image's /root.

        The host's own npm settings (registry, proxy, CA) still apply: they are
        this machine's network, not part of the image.
        """
        env = {"PATH": os.environ["PATH"], "HOME": str(self.host("/root"))}
        userconfig = Path.home() / ".npmrc"
        if userconfig.is_file():
            env["NPM_CONFIG_USERCONFIG"] = str(userconfig)
        env.update(self.env)
        return env

    def run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            args,
            cwd=self.host("."),
            env=self.process_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.logs.append((args, done))
        return done

    def apply(self, node: Node) -> None:
        """Do `node`'s call (one step of a container chain) on the host."""
        args = node.args
        match node.field:
            case "container" | "from":
                pass  # the base image: node:18-alpine, played by the host's node and npm
            case "withWorkdir":
                self.workdir = str(PurePosixPath(self.workdir) / args["path"])
                self.host(".").mkdir(parents=True, exist_ok=True)
            case "withFile":
                target = self.host(args["path"])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(file_contents(args["source"]))
            case "withDirectory":
                excluded = list(args.get("exclude") or [])
                for rel, data in directory_files(args["source"]).items():
                    if not _excluded(rel, excluded):
                        target = self.host(args["path"]) / rel
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data)
            case "withMountedCache":
                self.host(args["path"]).mkdir(parents=True, exist_ok=True)
            case "withoutMount":
                pass  # the cache stays on the host; nothing of it is read later
            case "withEnvVariable":
                self.env[args["name"]] = args["value"]
            case "withExec":
                command = list(args["args"])
                done = self.run(command, INSTALL_TIMEOUT)
                assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
            case "withExposedPort":
                self.ports.append(int(args["port"]))
            case "withEntrypoint":
                self.entrypoint = list(args["args"])
            case "withDefaultArgs":
                self.default_args = list(args["args"])
            case _:
                pytest.fail(f"the replay does not know Container.{node.field}: {node.describe()}")


def _excluded(rel: str, patterns: list[str]) -> bool:
    """Whether `rel` falls under one of Dagger's exclude `patterns` (`dir/`, `**/dir/`)."""
    parts = PurePosixPath(rel).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.rstrip("/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, bare) or (
                bare.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1], bare[3:])
            ):
                return True
    return False


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def started(replay: Replay, command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """`command` running in the replayed image's workdir and env; its process group killed after."""
    process = subprocess.Popen(
        command,
        cwd=replay.host("."),
        env=replay.process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def http_answer(port: int, process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """The first HTTP answer on `port` within START_TIMEOUT seconds."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            pytest.fail(f"the start command exited {process.returncode}:\n{output}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return response.status, response.read(65536).decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    pytest.fail(f"nothing answered on port {port} within {START_TIMEOUT}s")


def installed_version(app: Path, package: str) -> str:
    return json.loads((app / "node_modules" / package / "package.json").read_text())["version"]


# -- the replay -----------------------------------------------------------------


async def test_ui_image_installs_a_stale_lock_and_answers_on_3001(
    engine: StandInEngine, brokkr: ModuleCaller, tmp_path: Path
):
    require("node", "npm")
    if not port_is_free(UI_PORT):
        pytest.fail(f"port {UI_PORT} is already in use on this machine; the replay needs it")
    image_id = await brokkr.call("build", component="UI", platform="linux/amd64")
    image = engine.node(image_id)
    (check,) = [
        n
        for f, n, *_ in engine.evaluated
        if f == "stdout" and n.field == "withExec" and n.args["args"] == _ui.START_CHECK
    ]
    assert check.parent is not None
    assert check.parent.key() == image.key()

    replay = Replay(tmp_path / "image")
    for node in image.chain():
        replay.apply(node)

    # The install: npm ci refused the stale lock, the log said so, npm install ran.
    ((install_args, install),) = [(a, d) for a, d in replay.logs if a[:2] == ["sh", "-c"]]
    assert install_args == ["sh", "-c", _ui.LOCKED_INSTALL]
    assert "Missing: is-number@7.0.0 from lock file" in install.stderr
    assert _ui.STALE_LOCK_NOTE in install.stderr
    app = replay.host("/app")
    assert installed_version(app, "escape-html") == "1.0.2"  # pinned by the lock; 1.0.3 exists
    assert installed_version(app, "is-number") == "7.0.0"  # missing from the lock
    assert installed_version(app, "ms").startswith("2.1.")  # declared ^2.1.1; the lock had 2.0.0
    assert installed_version(app / "node_modules/debug", "ms") == "2.0.0"  # debug's own, nested

    # The start check the module ran before returning the image passes here too.
    done = replay.run(list(check.args["args"]), CHECK_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert 'start script "node server.js": node is' in done.stdout

    assert replay.ports == [UI_PORT]
    assert replay.env == {"PORT": str(UI_PORT)}
    command = replay.entrypoint + replay.default_args
    assert command == ["npm", "start"]
    with started(replay, command) as process:
        status, body = http_answer(UI_PORT, process)
    assert status == 200
    assert "<h1>Brokkr UI</h1>" in body


async def test_ui_slim_builds_its_file_sdk_first_and_answers_on_3001(
    engine: StandInEngine, tmp_path: Path
):
    # Brokkr v0.9.1's demo UI: examples/ui-slim depends on the client SDK through
    # file:../../sdks/typescript/brokkr-client, whose dist/ exists only after its build.
    require("node", "npm")
    if not port_is_free(UI_PORT):
        pytest.fail(f"port {UI_PORT} is already in use on this machine; the replay needs it")
    from dagger import dag

    v091 = ModuleCaller(engine, await dag.host().directory(str(FIXTURE_V091)).id())
    image_id = await v091.call(
        "build", component="UI", platform="linux/amd64", ui_path="examples/ui-slim"
    )
    image = engine.node(image_id)
    # Only what the file: path names is copied from the source, never the rest of it.
    copied = {
        n.args["path"]: sorted(directory_files(n.args["source"]))
        for n in image.calls("withDirectory")
    }
    assert copied == {
        "/app/sdks/typescript/brokkr-client": ["build.js", "package.json", "src/client.js"],
        "/app/examples/ui-slim": ["package-lock.json", "package.json", "server.js"],
    }

    replay = Replay(tmp_path / "image")
    for node in image.chain():
        replay.apply(node)
    ran = [(a, replay.host(".")) for a, _ in replay.logs]
    assert [a for a, _ in ran][:2] == [["npm", "install"], _ui.BUILD]
    sdk = replay.host("/app/sdks/typescript/brokkr-client")
    assert (sdk / "dist/index.js").is_file()  # built before the app's install
    app = replay.host("/app/examples/ui-slim")
    assert replay.workdir == "/app/examples/ui-slim"
    assert (app / "node_modules/@colliery-io/brokkr-client").resolve() == sdk.resolve()

    done = replay.run(_ui.START_CHECK, CHECK_TIMEOUT)
    assert done.returncode == 0, done.stderr
    with started(replay, replay.entrypoint + replay.default_args) as process:
        status, body = http_answer(UI_PORT, process)
    assert status == 200
    assert "broker API: http://localhost:3000/api/v1" in body


# -- the install script and the start check, on their own -----------------------


FAKE_NPM = """#!/bin/sh
echo "$*" >> "$NPM_CALLS"
if [ "$1" = ci ]; then
  printf '%s\\n' "$CI_OUTPUT" >&2
  exit "$CI_STATUS"
fi
echo "installed"
"""


def fake_npm(tmp_path: Path, ci_output: str, ci_status: int) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM)
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "NPM_CALLS": str(calls),
        "CI_OUTPUT": ci_output,
        "CI_STATUS": str(ci_status),
    }
    return env, calls


def run_install(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", _ui.LOCKED_INSTALL], env=env, capture_output=True, text=True, timeout=30
    )


def test_stale_lock_falls_back_to_npm_install_and_says_so(tmp_path: Path):
    stale = (
        "npm error code EUSAGE\nnpm error `npm ci` can only install packages when your "
        "package.json and package-lock.json or npm-shrinkwrap.json are in sync. Please "
        "update your lock file with `npm install` before continuing.\n"
        "npm error Missing: @monaco-editor/react@4.7.0 from lock file"
    )
    env, calls = fake_npm(tmp_path, stale, 1)
    done = run_install(env)
    assert done.returncode == 0
    assert calls.read_text().splitlines() == ["ci", "install"]
    assert _ui.STALE_LOCK_NOTE in done.stderr
    assert "Missing: @monaco-editor/react@4.7.0" in done.stderr  # npm ci's reason is kept


@pytest.mark.parametrize(
    ("output", "status"),
    [
        ("npm error code ECONNRESET\nnpm error network aborted", 1),
        ("npm error code EINTEGRITY\nnpm error sha512-… integrity checksum failed", 1),
        ("npm error code 1\nnpm error command failed: node install.js", 7),
    ],
)
def test_any_other_npm_ci_failure_fails_the_install(tmp_path: Path, output: str, status: int):
    # A network, integrity or script failure must not be retried with npm install:
    # that would hide the error, or re-resolve what the lock pins.
    env, calls = fake_npm(tmp_path, output, status)
    done = run_install(env)
    assert done.returncode == status
    assert calls.read_text().splitlines() == ["ci"]
    assert _ui.STALE_LOCK_NOTE not in done.stderr
    assert output.splitlines()[0] in done.stderr


def test_a_consistent_lock_is_just_npm_ci(tmp_path: Path):
    env, calls = fake_npm(tmp_path, "added 5 packages", 0)
    done = run_install(env)
    assert done.returncode == 0
    assert calls.read_text().splitlines() == ["ci"]
    assert _ui.STALE_LOCK_NOTE not in done.stderr


def test_start_check_fails_when_the_start_command_is_not_installed(tmp_path: Path):
    require("node")
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"scripts": {"start": "react-scripts start"}}')
    check = _build.start_check(COMPONENTS[Component.UI])

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(check, cwd=app, capture_output=True, text=True, timeout=30)

    done = run()
    assert done.returncode == 1
    assert "react-scripts is not in node_modules/.bin or on PATH" in done.stderr
    # Once the package is installed (its bin linked), the start script resolves.
    bin_dir = app / "node_modules/.bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "react-scripts").write_text("#!/bin/sh\n")
    (bin_dir / "react-scripts").chmod(0o755)
    done = run()
    assert done.returncode == 0, done.stderr
    assert "react-scripts is" in done.stdout
    # An app without a start script runs `node server.js`, if there is one.
    (app / "package.json").write_text("{}")
    assert run().returncode == 1
    (app / "server.js").write_text("")
    assert run().returncode == 0
