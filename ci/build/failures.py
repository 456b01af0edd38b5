"""What a failed build step tells the user: which image, platform and stage, and why.

The engine reports a failing exec as an `ExecError` carrying the command, its
exit code and its whole stdout and stderr; its message alone is `process "…"
did not complete successfully: exit code: 101`. `describe` turns it into one
paragraph: the image and platform, the stage the command belongs to and the
base image it ran on, the command, the exit code, and the last lines of its
output (at most `TAIL_LINES` lines and `TAIL_BYTES` bytes: the compiler's error
is at the end). No build step receives a secret (registry passwords and signing
keys reach only pushes and signing), so the output holds none.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import dagger

from ci.errors import first_line
from ci.rules.versions import NODE_IMAGE, RUNTIME_IMAGE, RUST_IMAGE

TAIL_LINES = 40
TAIL_BYTES = 8 * 1024

_STAGES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("trunk",), "console", RUST_IMAGE),
    (("cargo", "install", "trunk"), "console", RUST_IMAGE),
    (("cargo", "install", "wasm-bindgen-cli"), "console", RUST_IMAGE),
    (("cargo", "install", "wasm-opt"), "console", RUST_IMAGE),
    (("rustup", "target", "add", "wasm32-unknown-unknown"), "console", RUST_IMAGE),
    (("cargo", "chef", "prepare"), "planner", RUST_IMAGE),
    (("cargo", "chef", "cook"), "cacher", RUST_IMAGE),
    (("cargo", "install"), "toolchain (planner, cacher and builder)", RUST_IMAGE),
    (("rustup",), "toolchain (cacher and builder)", RUST_IMAGE),
    (("dpkg",), "toolchain (cacher and builder)", RUST_IMAGE),
    (("cargo",), "builder", RUST_IMAGE),
    (("npm",), "runtime", NODE_IMAGE),
    (("node",), "runtime (start check)", NODE_IMAGE),
    (("groupadd",), "runtime", RUNTIME_IMAGE),
    (("useradd",), "runtime", RUNTIME_IMAGE),
)
"""Command prefix → (stage, base image), first match wins."""


def stage_of(command: Sequence[str]) -> tuple[str, str | None]:
    """The stage and base image of a command the pipeline runs (None: not known)."""
    words = list(command)
    if words[:2] == ["sh", "-c"] and len(words) > 2:
        script = words[2]
        if "npm " in script:
            return "runtime (npm install)", NODE_IMAGE
        if script.startswith("find . -path ./target"):
            return "builder", RUST_IMAGE
        if "--help" in script:
            return "runtime (start check)", None
        if "apt-get" in script:
            return "a package install (apt-get)", None
        words = shlex.split(script)
    for prefix, stage, image in _STAGES:
        if tuple(words[: len(prefix)]) == prefix:
            return stage, image
    return "unknown stage", None


def tail(stdout: str, stderr: str) -> str:
    """The last `TAIL_LINES` lines of the output (stdout then stderr), at most `TAIL_BYTES`."""
    text = "\n".join(part.rstrip("\n") for part in (stdout, stderr) if part.strip())
    lines = text.splitlines()[-TAIL_LINES:]
    out = "\n".join(lines)
    raw = out.encode()
    if len(raw) > TAIL_BYTES:
        out = raw[-TAIL_BYTES:].decode(errors="ignore")
        out = out.split("\n", 1)[1] if "\n" in out else out
    return out


def _command(command: Sequence[str]) -> str:
    """The command as a shell line, a multi-line script shown by its first line."""
    return shlex.join(arg.splitlines()[0] + " …" if "\n" in arg else arg for arg in command)


def describe(error: dagger.QueryError, *, image: str, platform: str) -> str:
    """`image` for `platform` did not build: stage, base image, command, exit code, output tail."""
    if not isinstance(error, dagger.ExecError):
        return f"{image} for {platform} did not build: {first_line(error)}"
    stage, base = stage_of(error.command)
    where = f"stage {stage}" + (f" ({base})" if base else "")
    output = tail(error.stdout or "", error.stderr or "") or "(no output)"
    return (
        f"{image} for {platform} did not build: {where}: `{_command(error.command)}` exited "
        f"{error.exit_code}; last lines of its output:\n{output}"
    )
