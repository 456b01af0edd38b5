"""The broker's operator console (Brokkr v0.9.1 and later), built once with trunk.

Brokkr's console is a Leptos/WASM crate, `crates/brokkr-web`, outside the
Cargo workspace with its own `Cargo.lock` and a `Trunk.toml`. The broker bakes
its `dist/` in through `rust-embed` when compiled with `--features embed-ui`.
A source has a console when both hold: `crates/brokkr-web/Trunk.toml` exists
and `crates/brokkr-broker/Cargo.toml` declares the `embed-ui` feature. The
seed-era tree (no console) builds exactly as before.

    console_stage(console, source, platform)
        rust image + wasm32 target + pinned trunk, wasm-bindgen-cli (the version
        the console's Cargo.lock locks) and wasm-opt (when index.html asks trunk
        for it), then `trunk build --release --offline` over crates/brokkr-web only
    dist(console_ctr)   its dist/, which the broker builder places at crates/brokkr-web/dist

Caching: the stage sees only `crates/brokkr-web` (minus `dist/`, `target/`,
`node_modules/`), so an edit to the broker's Rust code reuses it; the Rust
stages see the source without `crates/brokkr-web` when the workspace excludes
it (`rust_input`), so an edit to the console never re-runs `cargo chef
prepare`/`cook`, only the broker's build (which embeds the new dist). WASM is
the same on every platform: the stage runs once, on the engine's platform, for
every broker variant (cross-compiled and emulated ones too).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

import dagger
from dagger import dag

from ci.build.rust import CARGO_GIT, CARGO_REGISTRY, GIT_CACHE, REGISTRY_CACHE, WORKDIR, apt_install
from ci.errors import BrokkrError
from ci.rules.components import Component, ComponentSpec
from ci.rules.versions import (
    CONSOLE_BUILD_PACKAGES,
    RUST_IMAGE,
    TRUNK_VERSION,
    WASM_OPT_CRATE_VERSION,
    WASM_OPT_TRUNK_VERSION,
    WASM_TARGET,
)

CONSOLE_DIR = "crates/brokkr-web"
"""The console crate's directory in the source."""

TRUNK_TOML = f"{CONSOLE_DIR}/Trunk.toml"
CONSOLE_LOCK = f"{CONSOLE_DIR}/Cargo.lock"
CONSOLE_INDEX = f"{CONSOLE_DIR}/index.html"

EMBED_UI_FEATURE = "embed-ui"
"""The broker feature that embeds the console's dist/."""

DIST_PATH = f"{WORKDIR}/{CONSOLE_DIR}/dist"
"""Where trunk writes the bundle in the console stage, and where the broker builder gets it."""

CONSOLE_EXCLUDE: tuple[str, ...] = ("dist/", "target/", "**/node_modules/")
"""Never copied into the console stage: its own build output and node_modules."""

TRUNK_BUILD: list[str] = ["trunk", "build", "--release", "--offline"]
"""The console build; `--offline`: trunk uses the pinned tools installed, never downloads one."""

_RUST_LINK = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""([\w-]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]+))?""")


@dataclass(frozen=True)
class Console:
    """What the console stage of a source needs."""

    wasm_bindgen: str
    """The wasm-bindgen version `crates/brokkr-web/Cargo.lock` locks (wasm-bindgen-cli's)."""
    wasm_opt: bool
    """trunk's release build runs wasm-opt (index.html does not switch it off)."""


def locked_wasm_bindgen(lock_text: str) -> str:
    """The one wasm-bindgen version a Cargo.lock locks; `BrokkrError` when none or several."""
    try:
        lock = tomllib.loads(lock_text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{CONSOLE_LOCK} is not valid TOML: {exc}"
        raise BrokkrError(msg) from exc
    packages = lock.get("package", [])
    versions = sorted(
        {
            str(p.get("version"))
            for p in packages
            if isinstance(p, dict) and p.get("name") == "wasm-bindgen"
        }
    )
    if len(versions) != 1:
        found = ", ".join(versions) if versions else "none"
        msg = (
            f"{CONSOLE_LOCK} must lock exactly one wasm-bindgen version (the console stage "
            f"installs that wasm-bindgen-cli); found {found}"
        )
        raise BrokkrError(msg)
    return versions[0]


def needs_wasm_opt(index_html: str) -> bool:
    """Whether trunk's release build runs wasm-opt for the console's `index.html`.

    It does unless the rust link (`<link data-trunk rel="rust" …>`) sets
    `data-wasm-opt="0"`; Brokkr's sets `"z"`. When unsure, wasm-opt is installed:
    an unused tool costs build time, a missing one fails the offline build.
    """
    for tag in _RUST_LINK.findall(index_html):
        attrs = {name.lower(): (value or "").strip("\"'") for name, value in _ATTR.findall(tag[5:])}
        if "data-trunk" in attrs and attrs.get("rel") == "rust":
            return attrs.get("data-wasm-opt", "") != "0"
    return True


def declares_embed_ui(manifest_text: str) -> bool:
    """Whether a crate manifest declares the `embed-ui` feature."""
    try:
        manifest = tomllib.loads(manifest_text)
    except tomllib.TOMLDecodeError:
        return False  # check_rust_source reports a broken manifest
    features = manifest.get("features")
    return isinstance(features, dict) and EMBED_UI_FEATURE in features


async def _exists(source: dagger.Directory, path: str) -> bool:
    return await source.exists(path, expected_type=dagger.ExistsType.REGULAR_TYPE)


async def detect(source: dagger.Directory, spec: ComponentSpec) -> Console | None:
    """The console of `source` when `spec` is the broker and the source has one, else None.

    Reads only. Raises `BrokkrError` (before any work) when the console has no
    `Cargo.lock` or it does not lock one wasm-bindgen version.
    """
    if spec.component is not Component.BROKER or not await _exists(source, TRUNK_TOML):
        return None
    if not await _exists(source, spec.manifest):
        return None  # check_rust_source names the missing crate
    if not declares_embed_ui(await source.file(spec.manifest).contents()):
        return None
    if not await _exists(source, CONSOLE_LOCK):
        msg = (
            f"{TRUNK_TOML} and the broker's {EMBED_UI_FEATURE} feature say the broker embeds "
            f"the console, but {CONSOLE_LOCK} is missing: the console stage installs the "
            "wasm-bindgen-cli version it locks"
        )
        raise BrokkrError(msg)
    version = locked_wasm_bindgen(await source.file(CONSOLE_LOCK).contents())
    index = ""
    if await _exists(source, CONSOLE_INDEX):
        index = await source.file(CONSOLE_INDEX).contents()
    return Console(wasm_bindgen=version, wasm_opt=needs_wasm_opt(index))


async def rust_input(source: dagger.Directory) -> dagger.Directory:
    """The source the cargo-chef stages get: without `crates/brokkr-web` when the workspace
    excludes it (Brokkr's does), so a console edit never re-runs the planner or the cook."""
    try:
        manifest = tomllib.loads(await source.file("Cargo.toml").contents())
    except (tomllib.TOMLDecodeError, dagger.QueryError):
        return source  # check_rust_source reports a missing or broken workspace manifest
    workspace = manifest.get("workspace")
    excluded = workspace.get("exclude", []) if isinstance(workspace, dict) else []
    if isinstance(excluded, list) and CONSOLE_DIR in [str(e).strip("/") for e in excluded]:
        return source.without_directory(CONSOLE_DIR)
    return source


def cargo_install(crate: str, version: str) -> list[str]:
    """`cargo install --locked --version X crate`: a pinned tool, built from its own lock."""
    return ["cargo", "install", crate, "--locked", "--version", version]


def console_stage(console: Console, source: dagger.Directory, platform: str) -> dagger.Container:
    """The console build: pinned tools, then `trunk build --release --offline` over the
    console crate alone; the bundle is at `DIST_PATH`."""
    ctr = (
        dag.container(platform=dagger.Platform(platform))
        .from_(RUST_IMAGE)
        .with_exec(apt_install(CONSOLE_BUILD_PACKAGES))
        .with_exec(["rustup", "target", "add", WASM_TARGET])
        .with_mounted_cache(CARGO_REGISTRY, dag.cache_volume(REGISTRY_CACHE))
        .with_mounted_cache(CARGO_GIT, dag.cache_volume(GIT_CACHE))
        .with_exec(cargo_install("trunk", TRUNK_VERSION))
        .with_exec(cargo_install("wasm-bindgen-cli", console.wasm_bindgen))
        .with_env_variable("TRUNK_TOOLS_WASM_BINDGEN", console.wasm_bindgen)
    )
    if console.wasm_opt:
        ctr = ctr.with_exec(cargo_install("wasm-opt", WASM_OPT_CRATE_VERSION)).with_env_variable(
            "TRUNK_TOOLS_WASM_OPT", WASM_OPT_TRUNK_VERSION
        )
    crate = source.filter(include=[f"{CONSOLE_DIR}/"]).directory(CONSOLE_DIR)
    return (
        ctr.with_directory(f"{WORKDIR}/{CONSOLE_DIR}", crate, exclude=list(CONSOLE_EXCLUDE))
        .with_workdir(f"{WORKDIR}/{CONSOLE_DIR}")
        .with_exec(TRUNK_BUILD)
    )


def dist(console_ctr: dagger.Container) -> dagger.Directory:
    """The bundle trunk wrote (`index.html`, the `.js` glue, the `_bg.wasm`)."""
    return console_ctr.directory(DIST_PATH)


async def marker(bundle: dagger.Directory) -> str:
    """A file name trunk wrote into dist/ that only an embedded bundle puts in the broker.

    The `_bg.wasm` file when there is one (its name carries trunk's content
    hash), else any file but `index.html`. `BrokkrError` when dist/ is empty.
    """
    names = sorted(await bundle.entries())
    wasm = [n for n in names if n.endswith("_bg.wasm")]
    others = [n for n in names if n != "index.html"]
    chosen = (wasm or others or [None])[0]
    if chosen is None:
        msg = f"trunk wrote no bundle files into {CONSOLE_DIR}/dist (found {names or 'nothing'})"
        raise BrokkrError(msg)
    return chosen
