"""The Rust release a source asks for, against the one the pinned Rust image has (pure).

A source names it in `rust-toolchain.toml` (`[toolchain] channel = "1.92"`), in
the older plain `rust-toolchain` file (its one line), or as the workspace's
`rust-version` (`[workspace.package]`, or the root `[package]`). A channel such
as `stable` or `nightly-2025-01-01` names no release and is not compared.
"""

from __future__ import annotations

import re
import tomllib

from ci.errors import BrokkrError
from ci.rules.versions import RUST_IMAGE, RUST_IMAGE_VERSION

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")


def release(text: str) -> tuple[int, int] | None:
    """`1.92` or `1.92.1` as (1, 92); None for a named channel."""
    match = _RELEASE.match(text.strip())
    return (int(match[1]), int(match[2])) if match else None


def toolchain_channel(name: str, text: str) -> str | None:
    """The channel a `rust-toolchain.toml` or `rust-toolchain` file (`name`) sets."""
    stripped = text.strip()
    if name == "rust-toolchain" and "[toolchain]" not in stripped:
        return stripped.splitlines()[0].strip() if stripped else None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{name} is not valid TOML: {exc}"
        raise BrokkrError(msg) from exc
    table = data.get("toolchain")
    channel = table.get("channel") if isinstance(table, dict) else None
    return str(channel) if channel is not None else None


def workspace_rust_version(manifest_text: str) -> str | None:
    """The `rust-version` of the workspace manifest (`[workspace.package]` or `[package]`)."""
    try:
        manifest = tomllib.loads(manifest_text)
    except tomllib.TOMLDecodeError:
        return None  # check_rust_source reports a broken manifest where it matters
    workspace = manifest.get("workspace")
    package = workspace.get("package") if isinstance(workspace, dict) else None
    for table in (package, manifest.get("package")):
        if isinstance(table, dict) and isinstance(table.get("rust-version"), str):
            return table["rust-version"]
    return None


def check_fits(requirements: dict[str, str]) -> None:
    """Refuse when any of `requirements` (where → version) is newer than the Rust image's."""
    have = RUST_IMAGE_VERSION
    for where, version in requirements.items():
        wanted = release(version)
        if wanted is not None and wanted > have:
            msg = (
                f"the source needs Rust {version} ({where}) but the pinned Rust image "
                f"{RUST_IMAGE} has Rust {have[0]}.{have[1]}: build this source with a "
                "brokkr-ci whose Rust image is at least that release"
            )
            raise BrokkrError(msg)
