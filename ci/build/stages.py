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

from ci.build import console as _console
from ci.build import failures as _failures
from ci.build import rust as _rust
from ci.build import ui as _ui
from ci.build.ui import has_lockfile, normalize_ui_path, ui_folder, ui_image
from ci.concurrency import run_all
from ci.errors import BrokkrError
from ci.rules.components import Component, ComponentSpec, Stage, component_spec
from ci.rules.platforms import BuildPlan, PlatformSpec, parse_platform, plan_build
from ci.rules.toolchain import check_fits, toolchain_channel, workspace_rust_version

TOOLCHAIN_FILES: tuple[str, ...] = ("rust-toolchain.toml", "rust-toolchain")

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
            await check_toolchain(source)
            await _console.detect(source, spec)  # a console's lockfile is checked here too
            return
    looked = " or ".join(f"{spec.crate_dir}/{c}" for c in candidates)
    msg = (
        f"the crate {spec.crate_dir} has no source for the binary {spec.binary}: "
        f"looked for {looked}"
    )
    raise BrokkrError(msg)


async def check_toolchain(source: dagger.Directory) -> None:
    """Refuse a source that needs a newer Rust than the pinned Rust image has.

    Reads `rust-toolchain.toml`, `rust-toolchain` and the workspace's
    `rust-version`; the error names both versions.
    """
    wanted: dict[str, str] = {}
    for name in TOOLCHAIN_FILES:
        if await source.exists(name, expected_type=dagger.ExistsType.REGULAR_TYPE):
            channel = toolchain_channel(name, await source.file(name).contents())
            if channel:
                wanted[name] = channel
    manifest = await source.file(WORKSPACE_MANIFEST).contents()
    if (version := workspace_rust_version(manifest)) is not None:
        wanted[f"the workspace's rust-version in {WORKSPACE_MANIFEST}"] = version
    check_fits(wanted)


def check_stage(spec: ComponentSpec, stage: Stage) -> None:
    """Reject a stage the component does not have (the UI has only `runtime`, the console
    stage is the broker's)."""
    if not spec.rust and stage is not Stage.RUNTIME:
        msg = (
            f"the {spec.component.value} image has a single stage, runtime; "
            f"{stage.value} exists only for broker and agent"
        )
        raise BrokkrError(msg)
    if stage is Stage.CONSOLE and spec.component is not Component.BROKER:
        msg = f"the console stage is the broker's; {spec.name} has none"
        raise BrokkrError(msg)


def no_console_error(spec: ComponentSpec) -> BrokkrError:
    """The error of `--stage console` on a source without a console."""
    return BrokkrError(
        f"this source's {spec.name} embeds no console: the console stage needs "
        f"{_console.TRUNK_TOML} and the {_console.EMBED_UI_FEATURE} feature in {spec.manifest}"
    )


async def recipes(
    plans: Sequence[BuildPlan], source: dagger.Directory, image: str = "the workspace"
) -> dict[str, str]:
    """The cargo-chef recipe text per build platform of `plans`, planners run concurrently.

    A failing planner is one `BrokkrError` naming `image`, the platform, the
    stage and the last lines of its output.
    """
    out: dict[str, str] = {}
    failures: list[str] = []
    by_platform = {plan.build_platform: plan for plan in plans}

    async def run(platform: str, plan: BuildPlan) -> None:
        try:
            out[platform] = await _rust.recipe(_rust.planner(plan, source))
        except dagger.QueryError as e:
            failures.append(_failures.describe(e, image=image, platform=platform))

    await run_all([lambda p=p, b=b: run(p, b) for p, b in by_platform.items()])
    if failures:
        raise BrokkrError("; ".join(sorted(failures)) + "; nothing was pushed or returned")
    return out


def compose_rust(
    source: dagger.Directory,
    spec: ComponentSpec,
    plan: BuildPlan,
    stage: Stage,
    recipe: str | dagger.File = "",
    console: dagger.Container | None = None,
    *,
    cache_image: dagger.Container | None = None,
) -> dagger.Container:
    """The container of a cacher, builder or runtime `stage` built from `recipe` (its text or
    the planner's file, `_rust.cacher`), or from the dependency-cache `cache_image`
    (`_rust.cached_cacher`: no cook).

    With the `console` stage (the broker of a source with a console), the cook
    and the build get `_rust.cargo_features` (`embed-ui`) and the builder the
    console's dist/ at crates/brokkr-web/dist.
    """
    features = _rust.cargo_features(spec, console=console is not None)
    deps = (
        _rust.cacher(plan, recipe, features)
        if cache_image is None
        else _rust.cached_cacher(plan, cache_image)
    )
    if stage is Stage.CACHER:
        return deps
    bundle = (
        (f"{_console.CONSOLE_DIR}/dist", _console.dist(console)) if console is not None else None
    )
    built = _rust.builder(
        plan, spec, source, features=features, console_dist=bundle, dependencies=deps
    )
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
        await _ui.local_dependencies(source, ui_path)


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
    read_recipe: bool = True,
) -> list[dagger.Container]:
    """The `stage` container of `spec`'s component for each of `targets`, in order.

    `cached` maps a target platform to its dependency-cache image (pulled by
    digest): that platform's cacher starts from it (no cook, no planner). Into
    `cooks`, when given, go the cachers that cook (target platform -> container),
    from which publish makes the new cache images.

    `targets=None` means the engine's own platform. The stage is checked first,
    then the source (unless `source_checked` says the caller already ran
    `check_source` with the same `ui_path`). With `read_recipe` the only
    evaluation is the cargo-chef planner of a Rust cacher, builder or runtime
    stage: once per distinct build platform (one for every cross-compiled
    target, one per platform when emulating), run concurrently, its recipe read
    so that the engine keys the cook on its content (`ci.build.rust`,
    "Caching"). With `read_recipe=False` (a publish that saves its cooks to the
    dependency cache) the cook takes the planner's file and nothing is
    evaluated. A planner stage is composed, not run. The containers themselves
    are built when they are used.
    """
    check_stage(spec, stage)
    if not spec.rust:
        if source_checked:
            folder = source.directory(normalize_ui_path(ui_path))
            has_lock = await has_lockfile(folder)
        else:
            folder, has_lock = await ui_folder(source, ui_path)
        local = tuple(await _ui.local_dependencies(source, ui_path))
        if targets is None:
            targets = [parse_platform(await native_platform())]
        return [
            ui_image(
                folder, target=t, has_lock=has_lock, source=source, ui_path=ui_path, local=local
            )
            for t in targets
        ]
    if not source_checked:
        await check_rust_source(source, spec)
    found = await _console.detect(source, spec)
    if stage is Stage.CONSOLE and found is None:
        raise no_console_error(spec)
    native = await native_platform()
    # WASM is platform-independent: one console build on the engine's platform serves all.
    console = _console.console_stage(found, source, native) if found is not None else None
    platforms = [t.platform for t in targets] if targets is not None else [native]
    if stage is Stage.CONSOLE:
        assert console is not None
        return [console for _ in platforms]
    rust_in = await _console.rust_input(source)
    plans = [plan_build(native=native, target=p, emulate=emulate) for p in platforms]
    if stage is Stage.PLANNER:
        return [_rust.planner(plan, rust_in) for plan in plans]
    cached = cached or {}
    to_cook = [plan for plan in plans if plan.target.platform not in cached]
    recipe_for: dict[str, str | dagger.File]
    if not to_cook:
        recipe_for = {}
    elif read_recipe:
        recipe_for = dict(await recipes(to_cook, rust_in, spec.name))
    else:
        recipe_for = {
            plan.build_platform: _rust.recipe_file(_rust.planner(plan, rust_in)) for plan in to_cook
        }
    features = _rust.cargo_features(spec, console=console is not None)
    out = []
    for plan in plans:
        image = cached.get(plan.target.platform)
        if image is not None:
            out.append(compose_rust(rust_in, spec, plan, stage, console=console, cache_image=image))
            continue
        recipe = recipe_for[plan.build_platform]
        if cooks is not None:
            cooks[plan.target.platform] = _rust.cacher(plan, recipe, features)
        out.append(compose_rust(rust_in, spec, plan, stage, recipe, console))
    return out


async def console_marker(source: dagger.Directory, spec: ComponentSpec) -> str | None:
    """A file name the console stage wrote into dist/ (builds the console), or None without one.

    The broker's start check greps its binary for it (`start_check`).
    """
    found = await _console.detect(source, spec)
    if found is None:
        return None
    bundle = _console.dist(_console.console_stage(found, source, await native_platform()))
    try:
        return await _console.marker(bundle)
    except dagger.QueryError as e:
        platform = await native_platform()
        raise BrokkrError(
            _failures.describe(e, image=f"{spec.name}'s console", platform=platform)
            + "; nothing was pushed or returned"
        ) from e


async def build_stage(
    source: dagger.Directory,
    *,
    component: Component,
    stage: Stage,
    platform: PlatformSpec | None,
    emulate: bool = False,
    ui_path: str = DEFAULT_UI_PATH,
    source_checked: bool = False,
    cached: Mapping[str, dagger.Container] | None = None,
) -> dagger.Container:
    """The container of one build stage of `component` for `platform` (default: the engine's).

    Rust components run the planner to read the recipe before composing the
    cacher, builder or runtime stages. `source_checked` and `cached` (a
    dependency-cache image per target platform, whose cacher then starts from
    it): as for `compose_variants`.
    """
    targets = [platform] if platform is not None else None
    (ctr,) = await compose_variants(
        source,
        component_spec(component),
        targets,
        stage=stage,
        emulate=emulate,
        ui_path=ui_path,
        source_checked=source_checked,
        cached=cached,
    )
    return ctr


def start_check(spec: ComponentSpec, embedded: str | None = None) -> list[str]:
    """The exec that shows `spec`'s runtime image starts.

    Broker and agent: `./brokkr-<component> --help` from the working directory
    `/usr/local/bin`, and for the agent `kubectl version --client`. A broker
    with a console (`embedded`: a file name trunk wrote into dist/) must also
    carry that name in its binary. UI: node runs and resolves the command of
    the app's start script (`react-scripts` for Brokkr's UI) in
    `node_modules/.bin` or on `PATH`.
    """
    return _rust.start_check(spec, embedded) if spec.rust else list(_ui.START_CHECK)


async def check_one(
    spec: ComponentSpec,
    image: dagger.Container,
    platform: str,
    *,
    embedded: str | None = None,
) -> str | None:
    """Build `image` by running its start check; None if it starts, else what went wrong:
    the failing stage with the last lines of its output (`_failures.describe`), or
    `… does not start: its check … exited N; output: …`."""
    check = start_check(spec, embedded)
    try:
        await image.with_exec(check).stdout()
    except dagger.ExecError as e:
        if list(e.command)[-len(check) :] != check:
            return _failures.describe(e, image=spec.name, platform=platform)
        output = f"{e.stdout}\n{e.stderr}".strip()[-CHECK_OUTPUT_LIMIT:] or "(no output)"
        return (
            f"{spec.name} for {platform} does not start: its check `{_describe(check)}` "
            f"exited {e.exit_code}; output:\n{output}"
        )
    except dagger.QueryError as e:
        return _failures.describe(e, image=spec.name, platform=platform)
    return None


async def check_starts(
    spec: ComponentSpec,
    images: Sequence[dagger.Container],
    platforms: Sequence[str],
    *,
    embedded: str | None = None,
) -> None:
    """Build each of `images` (`platforms[i]` is the platform of `images[i]`) and run its check.

    All run concurrently. Raises one `BrokkrError` listing every image that did
    not build (with the failing stage and the last lines of its output) or
    whose start check failed, with the check's output.
    """
    failures: list[str] = []

    async def one(image: dagger.Container, platform: str) -> None:
        if (problem := await check_one(spec, image, platform, embedded=embedded)) is not None:
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
    source_checked: bool = False,
    cached: Mapping[str, dagger.Container] | None = None,
) -> dagger.Container:
    """The runtime image of `component` for `platform` (default: the engine's), start-checked.

    The image is built and its start check (`start_check`) run before it is
    returned; a failure is a `BrokkrError` naming the image, the platform and
    the check's output. `source_checked` and `cached`: as for `build_stage`.
    """
    image = await build_stage(
        source,
        component=component,
        stage=Stage.RUNTIME,
        platform=platform,
        emulate=emulate,
        ui_path=ui_path,
        source_checked=source_checked,
        cached=cached,
    )
    spec = component_spec(component)
    embedded = await console_marker(source, spec) if spec.rust else None
    await check_starts(spec, [image], [str(await image.platform())], embedded=embedded)
    return image
