"""Dispatch from (component, stage, platform) to the stage builders.

Everything the user can get wrong is checked before a single container is
composed: the platform, a stage the component does not have, a source without
the workspace manifest, the crate or its binary, a source without the UI
folder. Each problem is a `BrokkrError` that names what was looked for.

Every image `build_image` returns (and `_image.build_multi` composes for
`image` and `publish`) has started once before it is handed back: its start
check (`start_check`) runs in the image, on the image's own platform (under
the engine's emulation for a foreign one), and a failure is a `BrokkrError`
naming the image, the platform and the check's output.
"""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Mapping, Sequence

import dagger
from dagger import dag

from ci.build import rust as _rust
from ci.build import ui as _ui
from ci.build.ui import has_lockfile, normalize_ui_path, ui_folder, ui_image
from ci.concurrency import run_all
from ci.errors import BrokkrError, first_line
from ci.rules.components import Component, ComponentSpec, Stage, component_spec
from ci.rules.platforms import BuildPlan, PlatformSpec, parse_platform, plan_build

DEFAULT_UI_PATH = "examples/ui"
WORKSPACE_MANIFEST = "Cargo.toml"
NOTHING_PUSHED = "; nothing was pushed or returned"
CHECK_OUTPUT_LIMIT = 2000
"""How many characters of a failed start check's output go into the error (the last ones)."""


def binary_candidates(manifest_text: str, spec: ComponentSpec) -> list[str]:
    """Crate-relative files, any of which provides `spec.binary` per the crate's manifest.

    A `[[bin]]` entry named after the binary gives its `path` (or cargo's
    default for it); without one, cargo's auto-discovery applies: `src/main.rs`
    when the package is named after the binary, and `src/bin/<name>.rs` or
    `src/bin/<name>/main.rs` unless `autobins = false`. Raises `BrokkrError`
    when the manifest is not valid TOML or cannot produce the binary at all.
    """
    try:
        manifest = tomllib.loads(manifest_text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{spec.manifest} is not valid TOML: {exc}"
        raise BrokkrError(msg) from exc
    package = manifest.get("package")
    if not isinstance(package, dict):
        msg = f"{spec.manifest} has no [package] section; expected the crate {spec.name}"
        raise BrokkrError(msg)
    package_name = package.get("name")
    bins = manifest.get("bin", [])
    if isinstance(bins, list):
        for entry in bins:
            if isinstance(entry, dict) and entry.get("name") == spec.binary:
                path = entry.get("path")
                if isinstance(path, str):
                    return [path]
                if package_name == spec.binary:
                    return ["src/main.rs", f"src/bin/{spec.binary}.rs"]
                return [f"src/bin/{spec.binary}.rs", f"src/bin/{spec.binary}/main.rs"]
    candidates: list[str] = []
    if package.get("autobins", True) is not False:
        if package_name == spec.binary:
            candidates.append("src/main.rs")
        candidates += [f"src/bin/{spec.binary}.rs", f"src/bin/{spec.binary}/main.rs"]
    if not candidates:
        msg = (
            f"{spec.manifest} declares no binary {spec.binary!r}: add "
            f'[[bin]] name = "{spec.binary}" (autobins is off)'
        )
        raise BrokkrError(msg)
    return candidates


async def check_rust_source(source: dagger.Directory, spec: ComponentSpec) -> None:
    """Check that `source` is a Cargo workspace with `spec`'s crate and binary."""
    found: dict[str, bool] = {}

    async def probe(path: str) -> None:
        found[path] = await source.exists(path, expected_type=dagger.ExistsType.REGULAR_TYPE)

    await run_all([lambda p=p: probe(p) for p in (WORKSPACE_MANIFEST, spec.manifest)])
    missing = [path for path in (WORKSPACE_MANIFEST, spec.manifest) if not found[path]]
    if missing:
        msg = (
            f"the source is not a Brokkr workspace with the {spec.name} crate: looked for "
            f"the workspace {WORKSPACE_MANIFEST} and {spec.manifest}, missing "
            f"{' and '.join(missing)}"
        )
        raise BrokkrError(msg)
    manifest_text = await source.file(spec.manifest).contents()
    candidates = binary_candidates(manifest_text, spec)
    for candidate in candidates:
        path = f"{spec.crate_dir}/{candidate}"
        if await source.exists(path, expected_type=dagger.ExistsType.REGULAR_TYPE):
            return
    looked = " or ".join(f"{spec.crate_dir}/{c}" for c in candidates)
    msg = (
        f"the crate {spec.crate_dir} has no source for the binary {spec.binary}: "
        f"looked for {looked}"
    )
    raise BrokkrError(msg)


def check_stage(spec: ComponentSpec, stage: Stage) -> None:
    """Reject a stage the component does not have (the UI has only `runtime`)."""
    if not spec.rust and stage is not Stage.RUNTIME:
        msg = (
            f"the {spec.component.value} image has a single stage, runtime; "
            f"{stage.value} exists only for broker and agent"
        )
        raise BrokkrError(msg)


async def recipes(plans: Sequence[BuildPlan], source: dagger.Directory) -> dict[str, str]:
    """The cargo-chef recipe text per build platform of `plans`, planners run concurrently."""
    out: dict[str, str] = {}
    by_platform = {plan.build_platform: plan for plan in plans}

    async def run(platform: str, plan: BuildPlan) -> None:
        out[platform] = await _rust.recipe(_rust.planner(plan, source))

    await run_all([lambda p=p, b=b: run(p, b) for p, b in by_platform.items()])
    return out


def compose_rust(
    source: dagger.Directory,
    spec: ComponentSpec,
    plan: BuildPlan,
    stage: Stage,
    recipe_text: str = "",
    *,
    cache_image: dagger.Container | None = None,
) -> dagger.Container:
    """The container of a cacher, builder or runtime `stage` built from `recipe_text`, or
    from the dependency-cache `cache_image` (`_rust.cached_cacher`: no cook)."""
    deps = (
        _rust.cacher(plan, recipe_text)
        if cache_image is None
        else _rust.cached_cacher(plan, cache_image)
    )
    if stage is Stage.CACHER:
        return deps
    built = _rust.builder(plan, spec, source, dependencies=deps)
    if stage is Stage.BUILDER:
        return built
    return _rust.runtime(plan, spec, built.file(_rust.binary_path(plan, spec)))


async def native_platform() -> str:
    """The Dagger engine's own platform."""
    return str(await dag.default_platform())


async def check_source(
    source: dagger.Directory, spec: ComponentSpec, ui_path: str = DEFAULT_UI_PATH
) -> None:
    """Check that `source` can build `spec`'s component, reading only (nothing is built).

    Rust components: the workspace manifest, the crate and its binary
    (`check_rust_source`). The UI: the folder `ui_path` and its `package.json`.
    Raises `BrokkrError` naming what was looked for.
    """
    if spec.rust:
        await check_rust_source(source, spec)
    else:
        await ui_folder(source, ui_path)


async def compose_variants(
    source: dagger.Directory,
    spec: ComponentSpec,
    targets: Sequence[PlatformSpec] | None,
    *,
    stage: Stage,
    emulate: bool = False,
    ui_path: str = DEFAULT_UI_PATH,
    source_checked: bool = False,
    cached: Mapping[str, dagger.Container] | None = None,
    cooks: dict[str, dagger.Container] | None = None,
) -> list[dagger.Container]:
    """The `stage` container of `spec`'s component for each of `targets`, in order.

    `cached` maps a target platform to its dependency-cache image (pulled by
    digest): that platform's cacher starts from it (no cook, no planner). Into
    `cooks`, when given, go the cachers that cook (target platform -> container),
    from which publish makes the new cache images.

    `targets=None` means the engine's own platform. The stage is checked first,
    then the source (unless `source_checked` says the caller already ran
    `check_source` with the same `ui_path`). The only evaluation is the
    cargo-chef planner of a Rust cacher, builder or runtime stage: once per
    distinct build platform (one for every cross-compiled target, one per
    platform when emulating), run concurrently; a planner stage is composed,
    not run. The containers themselves are built when they are used.
    """
    check_stage(spec, stage)
    if not spec.rust:
        if source_checked:
            folder = source.directory(normalize_ui_path(ui_path))
            has_lock = await has_lockfile(folder)
        else:
            folder, has_lock = await ui_folder(source, ui_path)
        if targets is None:
            targets = [parse_platform(await native_platform())]
        return [ui_image(folder, target=t, has_lock=has_lock) for t in targets]
    if not source_checked:
        await check_rust_source(source, spec)
    native = await native_platform()
    platforms = [t.platform for t in targets] if targets is not None else [native]
    plans = [plan_build(native=native, target=p, emulate=emulate) for p in platforms]
    if stage is Stage.PLANNER:
        return [_rust.planner(plan, source) for plan in plans]
    cached = cached or {}
    to_cook = [plan for plan in plans if plan.target.platform not in cached]
    recipe_texts = await recipes(to_cook, source) if to_cook else {}
    out = []
    for plan in plans:
        image = cached.get(plan.target.platform)
        if image is not None:
            out.append(compose_rust(source, spec, plan, stage, cache_image=image))
            continue
        text = recipe_texts[plan.build_platform]
        if cooks is not None:
            cooks[plan.target.platform] = _rust.cacher(plan, text)
        out.append(compose_rust(source, spec, plan, stage, text))
    return out


async def build_stage(
    source: dagger.Directory,
    *,
    component: Component,
    stage: Stage,
    platform: PlatformSpec | None,
    emulate: bool = False,
    ui_path: str = DEFAULT_UI_PATH,
) -> dagger.Container:
    """The container of one build stage of `component` for `platform` (default: the engine's).

    Rust components run the planner to read the recipe before composing the
    cacher, builder or runtime stages.
    """
    targets = [platform] if platform is not None else None
    (ctr,) = await compose_variants(
        source, component_spec(component), targets, stage=stage, emulate=emulate, ui_path=ui_path
    )
    return ctr


def start_check(spec: ComponentSpec) -> list[str]:
    """The exec that shows `spec`'s runtime image starts.

    Broker and agent: `./brokkr-<component> --help` from the working directory
    `/usr/local/bin`, and for the agent `kubectl version --client`. UI: node
    runs and resolves the command of the app's start script (`react-scripts`
    for Brokkr's UI) in `node_modules/.bin` or on `PATH`.
    """
    return _rust.start_check(spec) if spec.rust else list(_ui.START_CHECK)


async def check_one(spec: ComponentSpec, image: dagger.Container, platform: str) -> str | None:
    """Build `image` by running its start check; None if it starts, else what went wrong:
    `… did not build: …` or `… does not start: its check … exited N; output: …`."""
    check = start_check(spec)
    try:
        await image.with_exec(check).stdout()
    except dagger.ExecError as e:
        if list(e.command)[-len(check) :] != check:
            return f"{spec.name} for {platform} did not build: {first_line(e)}"
        output = f"{e.stdout}\n{e.stderr}".strip()[-CHECK_OUTPUT_LIMIT:] or "(no output)"
        return (
            f"{spec.name} for {platform} does not start: its check `{_describe(check)}` "
            f"exited {e.exit_code}; output:\n{output}"
        )
    except dagger.QueryError as e:
        return f"{spec.name} for {platform} did not build: {first_line(e)}"
    return None


async def check_starts(
    spec: ComponentSpec, images: Sequence[dagger.Container], platforms: Sequence[str]
) -> None:
    """Build each of `images` (`platforms[i]` is the platform of `images[i]`) and run its check.

    All run concurrently. Raises one `BrokkrError` listing every image that did
    not build or whose start check failed, with the check's output.
    """
    failures: list[str] = []

    async def one(image: dagger.Container, platform: str) -> None:
        if (problem := await check_one(spec, image, platform)) is not None:
            failures.append(problem)

    await run_all([lambda i=i, p=p: one(i, p) for i, p in zip(images, platforms, strict=True)])
    if failures:
        raise BrokkrError("; ".join(sorted(failures)) + NOTHING_PUSHED)


def _describe(check: list[str]) -> str:
    """`check` as a shell line, a multi-line script argument shown by its first line."""
    return shlex.join(arg.splitlines()[0] + " …" if "\n" in arg else arg for arg in check)


async def build_image(
    source: dagger.Directory,
    *,
    component: Component,
    platform: PlatformSpec | None,
    emulate: bool = False,
    ui_path: str = DEFAULT_UI_PATH,
) -> dagger.Container:
    """The runtime image of `component` for `platform` (default: the engine's), start-checked.

    The image is built and its start check (`start_check`) run before it is
    returned; a failure is a `BrokkrError` naming the image, the platform and
    the check's output.
    """
    image = await build_stage(
        source,
        component=component,
        stage=Stage.RUNTIME,
        platform=platform,
        emulate=emulate,
        ui_path=ui_path,
    )
    await check_starts(component_spec(component), [image], [str(await image.platform())])
    return image
