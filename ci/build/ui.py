"""The UI image: `node:18-alpine` serving Brokkr's admin UI with `npm start`.

The app comes from a folder of the source (`examples/ui` by default). Only
`package.json` (and `package-lock.json` when present) is copied before the
install, so an edit to the app's code reuses the installed packages. npm's
download cache lives in a cache volume mounted only for the install.

The install follows the lockfile whenever there is one. `npm ci` installs
exactly what it pins; when `npm ci` refuses the lock because it is out of step
with `package.json` (Brokkr's own lock lacks packages its `package.json`
declares), the build log says so and `npm install` runs instead, which keeps
every version the lock pins and adds what it lacks. Any other `npm ci` failure
(network, integrity, a failing install script) fails the image as it is:
falling back then would hide the error, or let `npm install` re-resolve
versions the lock pins. Without a lockfile the install is `npm install`.

`PORT` is set to the exposed port (3001): `npm start` of a Create React App
listens on `$PORT`, default 3000.

Local `file:` dependencies (Brokkr v0.9.1's `examples/ui-slim` depends on
`file:../../sdks/typescript/brokkr-client`): each folder a `file:` path of the
app's `package.json` names must be inside the source; it is copied to the same
relative place under `/app` (the app then lives at `/app/<ui path>`, so the
relative path resolves), installed, and built (`npm run build`) when its
`package.json` has a build script, all before the app's own install. Only
those folders are copied, never the rest of the source; a path leaving the
source is refused before any work. An app without `file:` dependencies is
built exactly as before (at `/app`).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

import dagger
from dagger import dag

from ci.errors import BrokkrError
from ci.rules.components import COMPONENTS, Component
from ci.rules.platforms import PlatformSpec
from ci.rules.versions import NODE_IMAGE

APP_DIR = "/app"
NPM_CACHE = "/root/.npm"
NPM_CACHE_VOLUME = "brokkr-npm"
UI_EXCLUDE: tuple[str, ...] = ("node_modules/", "**/node_modules/", ".git/")
"""Never copied from the UI folder into the image."""

STALE_LOCK_MARK = "are in sync"
"""What `npm ci` (npm 7 to 11) says when it refuses a lockfile out of step with package.json."""

STALE_LOCK_NOTE = (
    "brokkr-ui: package-lock.json is out of step with package.json, so npm ci refused it; "
    "falling back to npm install, which keeps what the lock pins and adds what it lacks"
)
"""The build-log line of the fallback."""

LOCKED_INSTALL = (
    'if out=$(npm ci 2>&1); then printf "%s\\n" "$out"; '
    'else status=$?; printf "%s\\n" "$out" >&2; '
    f'case "$out" in *"{STALE_LOCK_MARK}"*) echo "{STALE_LOCK_NOTE}" >&2; npm install ;; '
    '*) exit "$status" ;; esac; fi'
)
"""The POSIX `sh` script of an install with a lockfile: `npm ci`, `npm install` on a stale lock."""

UNLOCKED_INSTALL: list[str] = ["npm", "install"]
"""The install without a lockfile."""

START_CHECK_SCRIPT = """\
const fs = require("fs");
const path = require("path");
const pkg = JSON.parse(fs.readFileSync("package.json", "utf8"));
const start = (pkg.scripts || {}).start;
if (!start) {
  if (fs.existsSync("server.js")) {
    console.log("npm start runs node server.js (no start script)");
    process.exit(0);
  }
  console.error("package.json has no start script and there is no server.js");
  process.exit(1);
}
const words = start.trim().split(/\\s+/);
const command = words.find((word) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(word)) || "";
const dirs = [path.resolve("node_modules/.bin"), ...(process.env.PATH || "").split(":")];
const found = dirs
  .map((dir) => path.join(dir, command))
  .find((file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  });
if (!command || !found) {
  console.error(`start script "${start}": ${command} is not in node_modules/.bin or on PATH`);
  process.exit(1);
}
console.log(`node ${process.version}; start script "${start}": ${command} is ${found}`);
"""
"""Node code that resolves the start script's command (e.g. `react-scripts`, `node`)."""

START_CHECK: list[str] = ["node", "-e", START_CHECK_SCRIPT]
"""The UI image's start check: node runs, and `npm start`'s command is installed."""


def normalize_ui_path(ui_path: str) -> str:
    """`ui_path` as a clean relative path of the source; rejects absolute and escaping paths."""
    cleaned = posixpath.normpath(ui_path.strip() or ".")
    if cleaned.startswith(("/", "../")) or cleaned == "..":
        msg = f"the UI folder must be a path inside the source, like examples/ui; got {ui_path!r}"
        raise BrokkrError(msg)
    return cleaned


async def ui_folder(source: dagger.Directory, ui_path: str) -> tuple[dagger.Directory, bool]:
    """Check the UI folder of `source`; return it and whether it has a `package-lock.json`.

    Raises `BrokkrError` naming the path looked for when the folder or its
    `package.json` is missing.
    """
    path = normalize_ui_path(ui_path)
    if not await source.exists(path, expected_type=dagger.ExistsType.DIRECTORY_TYPE):
        msg = (
            f"the UI folder {path!r} is not in the source (looked for the directory "
            f"{path}/ holding package.json); pass the folder that holds the UI app"
        )
        raise BrokkrError(msg)
    folder = source.directory(path)
    if not await folder.exists("package.json", expected_type=dagger.ExistsType.REGULAR_TYPE):
        msg = f"the UI folder {path!r} has no package.json (looked for {path}/package.json)"
        raise BrokkrError(msg)
    return folder, await has_lockfile(folder)


async def has_lockfile(folder: dagger.Directory) -> bool:
    """Whether the UI `folder` has a `package-lock.json` (the install follows it)."""
    return await folder.exists("package-lock.json", expected_type=dagger.ExistsType.REGULAR_TYPE)


DEPENDENCY_SECTIONS: tuple[str, ...] = ("dependencies", "devDependencies", "optionalDependencies")
"""The package.json sections whose `file:` entries npm installs for the app."""

BUILD: list[str] = ["npm", "run", "build"]
"""The build of a local dependency that has a build script."""


@dataclass(frozen=True)
class LocalDependency:
    """A folder of the source the UI app depends on through a `file:` path."""

    path: str
    """Its path in the source, e.g. `sdks/typescript/brokkr-client`."""
    has_lock: bool
    """It has a package-lock.json (installed with `npm ci`)."""
    has_build: bool
    """Its package.json has a build script (`npm run build` runs after its install)."""


def file_paths(package_json: str, ui_path: str) -> list[tuple[str, str]]:
    """`(name, source path)` of every `file:` dependency of the app at `ui_path`.

    Raises `BrokkrError` for a package.json that is not JSON and for a `file:`
    path that leaves the source (absolute, or `..` above its root).
    """
    try:
        package = json.loads(package_json)
    except json.JSONDecodeError as exc:
        msg = f"{ui_path}/package.json is not valid JSON: {exc}"
        raise BrokkrError(msg) from exc
    found: list[tuple[str, str]] = []
    for section in DEPENDENCY_SECTIONS:
        deps = package.get(section) if isinstance(package, dict) else None
        if not isinstance(deps, dict):
            continue
        for name, spec in deps.items():
            if not isinstance(spec, str) or not spec.startswith("file:"):
                continue
            rel = spec[len("file:") :]
            resolved = posixpath.normpath(posixpath.join(ui_path, rel))
            if rel.startswith("/") or resolved == ".." or resolved.startswith("../"):
                msg = (
                    f"{ui_path}/package.json depends on {name!r} through {spec!r}, which leaves "
                    "the source: only file: paths inside the source can be built"
                )
                raise BrokkrError(msg)
            if resolved == ui_path or resolved == ".":
                msg = f"{ui_path}/package.json depends on {name!r} through {spec!r}: itself"
                raise BrokkrError(msg)
            if (name, resolved) not in found:
                found.append((name, resolved))
    return found


async def local_dependencies(source: dagger.Directory, ui_path: str) -> list[LocalDependency]:
    """The app's `file:` dependencies, checked: each is a folder of the source with a
    package.json. Reads only; `BrokkrError` names the path looked for."""
    path = normalize_ui_path(ui_path)
    text = await source.file(f"{path}/package.json").contents()
    out: list[LocalDependency] = []
    for name, dep in file_paths(text, path):
        manifest = f"{dep}/package.json"
        if not await source.exists(manifest, expected_type=dagger.ExistsType.REGULAR_TYPE):
            msg = (
                f"{path}/package.json depends on {name!r} through a file: path, but the "
                f"source has no {manifest}"
            )
            raise BrokkrError(msg)
        try:
            scripts = json.loads(await source.file(manifest).contents()).get("scripts") or {}
        except (json.JSONDecodeError, AttributeError) as exc:
            msg = f"{manifest} is not a valid package.json: {exc}"
            raise BrokkrError(msg) from exc
        has_lock = await has_lockfile(source.directory(dep))
        has_build = isinstance(scripts, dict) and "build" in scripts
        out.append(LocalDependency(path=dep, has_lock=has_lock, has_build=has_build))
    return out


def install_command(*, has_lock: bool) -> list[str]:
    """The install exec: `LOCKED_INSTALL` under `sh -c` with a lockfile, else `npm install`."""
    return ["sh", "-c", LOCKED_INSTALL] if has_lock else list(UNLOCKED_INSTALL)


def ui_image(
    folder: dagger.Directory,
    *,
    target: PlatformSpec,
    has_lock: bool,
    source: dagger.Directory | None = None,
    ui_path: str = "",
    local: tuple[LocalDependency, ...] = (),
) -> dagger.Container:
    """The UI runtime image for `target` from the checked UI `folder`.

    With `local` dependencies (read from `source`), each is copied to
    `/app/<its path>`, installed and built first; the app is then at
    `/app/<ui_path>`.
    """
    port = COMPONENTS[Component.UI].port
    ctr = dag.container(platform=dagger.Platform(target.platform)).from_(NODE_IMAGE)
    app_dir = APP_DIR
    if local:
        assert source is not None
        app_dir = f"{APP_DIR}/{normalize_ui_path(ui_path)}"
        for dep in local:
            dep_dir = f"{APP_DIR}/{dep.path}"
            ctr = (
                ctr.with_directory(dep_dir, source.directory(dep.path), exclude=list(UI_EXCLUDE))
                .with_workdir(dep_dir)
                .with_mounted_cache(NPM_CACHE, dag.cache_volume(NPM_CACHE_VOLUME))
                .with_exec(install_command(has_lock=dep.has_lock))
            )
            if dep.has_build:
                ctr = ctr.with_exec(BUILD)
            ctr = ctr.without_mount(NPM_CACHE)
    ctr = ctr.with_workdir(app_dir)
    ctr = ctr.with_file(f"{app_dir}/package.json", folder.file("package.json"))
    if has_lock:
        ctr = ctr.with_file(f"{app_dir}/package-lock.json", folder.file("package-lock.json"))
    return (
        ctr.with_mounted_cache(NPM_CACHE, dag.cache_volume(NPM_CACHE_VOLUME))
        .with_exec(install_command(has_lock=has_lock))
        .without_mount(NPM_CACHE)
        .with_directory(app_dir, folder, exclude=list(UI_EXCLUDE))
        .with_env_variable("PORT", str(port))
        .with_exposed_port(port)
        .with_default_args(["npm", "start"])
    )
