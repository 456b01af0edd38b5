"""The UI image: `node:18-alpine` serving Brokkr's admin UI with `npm start`.

The app comes from a folder of the source (`examples/ui` by default). Only
`package.json` (and `package-lock.json` when present) is copied before the
install, so an edit to the app's code reuses the installed packages; with a
lockfile the install is `npm ci`, otherwise `npm install`. npm's download cache
lives in a cache volume mounted only for the install.
"""

from __future__ import annotations

import posixpath

import dagger
from dagger import dag

from ci._components import COMPONENTS, Component
from ci._errors import BrokkrError
from ci._platforms import PlatformSpec
from ci._versions import NODE_IMAGE

APP_DIR = "/app"
NPM_CACHE = "/root/.npm"
NPM_CACHE_VOLUME = "brokkr-npm"
UI_EXCLUDE: tuple[str, ...] = ("node_modules/", "**/node_modules/", ".git/")
"""Never copied from the UI folder into the image."""


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
    """Whether the UI `folder` has a `package-lock.json` (`npm ci` rather than `npm install`)."""
    return await folder.exists("package-lock.json", expected_type=dagger.ExistsType.REGULAR_TYPE)


def ui_image(folder: dagger.Directory, *, target: PlatformSpec, has_lock: bool) -> dagger.Container:
    """The UI runtime image for `target` from the checked UI `folder`."""
    port = COMPONENTS[Component.UI].port
    ctr = (
        dag.container(platform=dagger.Platform(target.platform))
        .from_(NODE_IMAGE)
        .with_workdir(APP_DIR)
        .with_file(f"{APP_DIR}/package.json", folder.file("package.json"))
    )
    if has_lock:
        ctr = ctr.with_file(f"{APP_DIR}/package-lock.json", folder.file("package-lock.json"))
    install = ["npm", "ci"] if has_lock else ["npm", "install"]
    return (
        ctr.with_mounted_cache(NPM_CACHE, dag.cache_volume(NPM_CACHE_VOLUME))
        .with_exec(install)
        .without_mount(NPM_CACHE)
        .with_directory(APP_DIR, folder, exclude=list(UI_EXCLUDE))
        .with_exposed_port(port)
        .with_default_args(["npm", "start"])
    )
