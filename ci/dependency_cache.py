"""Reading the dependency cache: key every cook, look each key up, start from the hits.

The cooked dependency layer (`cargo chef cook`) travels between engines as a
small image in the registry (docs/dependency-cache.md). This module is its
read side, shared by `publish` (which also saves new cooks, in
`ci.publishing.dependency_cache`) and by `build`, `stage` and `image`, which
only read:

- `prepare` computes the key of every cook (one per Rust component and
  platform; components with the same features share one,
  `ci.rules.cache_key`), looks every key up with a registry client
  (`ci.registry.dependency_cache`) and pulls each hit by digest
  (`CachePlan.images`); every other cook runs as without a cache.
- `CacheReader` is `--dependency-cache REPO` of the build functions, with its
  login and route; `build_image`, `build_stage` and `build_each` check the
  source, look the cooks up (`read_only`) and build as `ci.build` does, each
  hit's cacher starting from the cache image instead of cooking. They never
  write the cache, and no cache problem fails them: a lookup that fails, an
  image that does not fit or cannot be pulled is a miss (with a note in
  `CachePlan.notes`), and the cook runs.

Rule: may import `ci.errors`, `ci.concurrency`, `ci.inputs`, `ci.rules`,
`ci.build`, `ci.registry` and `ci.access`; imported by `ci.publishing` and
`ci.main`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dagger

from ci.access import RegistryAccess, registry_access
from ci.build import console as _console
from ci.build import dependencies as _deps
from ci.build import image as _image
from ci.build import rust as _rust
from ci.build import stages as _stages
from ci.concurrency import run_all
from ci.errors import BrokkrError, first_line
from ci.registry import dependency_cache as _lookup
from ci.registry.client import RegistryClient
from ci.rules import cache_key as _key
from ci.rules.components import Component, ComponentSpec, Stage, component_spec
from ci.rules.platforms import BuildPlan, PlatformSpec, plan_build
from ci.rules.reference import ImageReference

NOTE = "# dependency cache"

COOKED_STAGES = frozenset({Stage.CACHER, Stage.BUILDER, Stage.RUNTIME})
"""The stages built on the cook (the planner and the console are not)."""


async def cook_features(source: dagger.Directory, spec: ComponentSpec) -> tuple[str, ...]:
    """The cargo features `cargo chef cook` gets for `spec`'s component: `embed-ui` for
    the broker of a source with a console (`_rust.cargo_features`, as the build chooses)."""
    console = await _console.detect(source, spec) is not None
    return _rust.cargo_features(spec, console=console)


@dataclass
class Cook:
    """One cook of the publish: its plan, key and cache tag."""

    component: Component
    plan: BuildPlan
    key: str
    tag: str


@dataclass
class CachePlan:
    """What `prepare` found: cache images to start from, cooks to save, notes."""

    repository: ImageReference | None
    writable: bool = False
    """Whether the publish may save new cooks there (`publish.can_write`)."""
    recipe: _deps.SourceRecipe | None = None
    images: dict[Component, dict[str, dagger.Container]] = field(default_factory=dict)
    """Component -> target platform -> the cache image (pulled by digest) to start from."""
    cooks: list[Cook] = field(default_factory=list)
    """The cooks that run (misses); `save` pushes their cache images."""
    cookers: dict[Component, dict[str, dagger.Container]] = field(default_factory=dict)
    """Filled by the build: component -> target platform -> the cacher that cooked."""
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(f"{NOTE}: {text}")

    @property
    def saves(self) -> bool:
        """Whether the cooks that run are saved: the cache key, not the engine's own cache,
        then keeps a source-only edit from cooking again, so the build need not read the
        planner's recipe first (`compose_variants(read_recipe=False)`)."""
        return self.repository is not None and self.writable


async def prepare(
    repository: ImageReference | None,
    source: dagger.Directory,
    components: Sequence[Component],
    platforms: Sequence[str],
    client: RegistryClient,
    *,
    emulate: bool,
    writable: bool,
    username: str,
    password: dagger.Secret | None,
    registry_service: dagger.Service | None = None,
) -> CachePlan:
    """Key every cook of `components` x `platforms` and look each key up (see the module).

    `writable`: whether `save` may push the cooks that run (see `CachePlan.saves`).
    """
    cache = CachePlan(repository, writable=writable)
    rust = [c for c in components if component_spec(c).rust]
    if repository is None or not rust:
        return cache
    native = await _stages.native_platform()
    # The source the cargo-chef stages see (without an excluded console crate).
    cache.recipe = await _deps.source_recipe(await _console.rust_input(source))
    wanted: dict[str, list[Cook]] = {}
    for component in rust:
        spec = component_spec(component)
        features = await cook_features(source, spec)
        for platform in platforms:
            plan = plan_build(native=native, target=platform, emulate=emulate)
            inputs = _rust.cook_inputs(plan, features)
            key = _key.dependency_key(cache.recipe.digest, inputs)
            cook = Cook(component, plan, key, _key.cache_tag(plan.target.platform, key))
            wanted.setdefault(cook.tag, []).append(cook)

    found: dict[str, _lookup.Lookup] = {}

    async def one(tag: str, cook: Cook) -> None:
        found[tag] = await _lookup.lookup(
            client,
            repository,
            key=cook.key,
            target_platform=cook.plan.target.platform,
            build_platform=cook.plan.build_platform,
        )

    try:
        with client.operation(
            repository.registry,
            f"looking up the dependency cache in {repository.name}",
            _lookup.LOOKUP_SECONDS,
        ):
            await run_all([lambda t=t, c=c: one(t, c[0]) for t, c in wanted.items()])
    except BrokkrError as e:  # the deadline: every key not answered is a miss
        cache.note(f"lookup stopped ({first_line(e)}); cooking what was not found")
    for tag, cooks in sorted(wanted.items()):
        answer = found.get(tag, _lookup.Lookup(tag))
        if answer.note:
            cache.note(answer.note)
        if answer.digest is None:
            cache.cooks.append(cooks[0])
            continue
        address = f"{repository.name}@{answer.digest}"
        cache.note(f"hit {tag} ({address}): no cargo chef cook")
        for cook in cooks:
            cache.images.setdefault(cook.component, {})[cook.plan.target.platform] = _deps.pull(
                cook.plan,
                address,
                username=username,
                password=password,
                registry_service=registry_service,
            )
    return cache


# ---------------------------------------------------------------------------
# build, stage and image: read only


@dataclass(frozen=True)
class CacheReader:
    """`--dependency-cache REPO` of `build`, `stage` and `image`: where to look, and the
    login and route (`--username`/`--password`/`--registry-service`) to look with."""

    repository: ImageReference
    access: RegistryAccess


async def reader(
    repository: ImageReference | None,
    username: str,
    password: dagger.Secret | None,
    registry_service: dagger.Service | None,
) -> CacheReader | None:
    """The cache reader of a build function's flags (`repository` comes parsed,
    `_key.parse_cache_repository`), checked before any work; None without a repository.

    The login and the service belong to the cache: given without
    --dependency-cache they are refused. A service for a registry that is not
    loopback, a password without a user (or the reverse) and an empty password
    are refused as for every other registry function (`registry_access`).
    """
    if repository is None:
        if username or password is not None or registry_service is not None:
            msg = (
                "--username, --password and --registry-service are the dependency cache's "
                "login and route here: give --dependency-cache REPO with them"
            )
            raise BrokkrError(msg)
        return None
    access = await registry_access(repository, username, password, registry_service)
    return CacheReader(repository, access)


async def read_only(
    cache: CacheReader,
    source: dagger.Directory,
    components: Sequence[Component],
    platforms: Sequence[str] | None,
    *,
    emulate: bool,
) -> CachePlan:
    """`prepare` for a build that only reads the cache; never raises for a cache problem.

    `platforms`: target platforms (None: the engine's own). The key, the
    lookup and the hits are `prepare`'s. Anything that goes wrong (the source's
    recipe cannot be read, the registry cannot be reached) is a note and every
    cook runs. Each hit is then pulled by the engine (`Container.sync`: one
    engine round, before the build): an image the engine cannot pull (another
    route, another login than the module's client) is dropped with a note and
    its cook runs, so a build never fails for the cache.
    """
    if platforms is None:
        platforms = [await _stages.native_platform()]
    try:
        async with cache.access.client() as client:
            plan = await prepare(
                cache.repository,
                source,
                components,
                platforms,
                client,
                emulate=emulate,
                writable=False,
                username=cache.access.username,
                password=cache.access.password,
                registry_service=cache.access.service,
            )
    except (BrokkrError, dagger.QueryError, ValueError) as e:  # ValueError: unreadable TOML
        plan = CachePlan(cache.repository)
        plan.note(f"lookup failed ({first_line(e)}); cooking")
        return plan
    await _pull_hits(plan)
    return plan


async def _pull_hits(plan: CachePlan) -> None:
    """Pull every hit in the engine; drop (with a note) those that cannot be pulled."""
    failed: dict[tuple[Component, str], str] = {}

    async def one(component: Component, platform: str, image: dagger.Container) -> None:
        try:
            await image.sync()
        except dagger.QueryError as e:
            failed[component, platform] = first_line(e)

    await run_all(
        [
            lambda c=component, p=platform, i=image: one(c, p, i)
            for component, images in plan.images.items()
            for platform, image in images.items()
        ]
    )
    for (component, platform), why in sorted(failed.items()):
        del plan.images[component][platform]
        plan.note(f"the engine could not pull the {platform} cache image ({why}); cooking")


async def _cached(
    cache: CacheReader,
    source: dagger.Directory,
    components: Sequence[Component],
    platforms: Sequence[PlatformSpec] | None,
    *,
    emulate: bool,
) -> dict[Component, dict[str, dagger.Container]]:
    """The cache images the build of `components` starts from (none for the UI alone)."""
    if not any(component_spec(c).rust for c in components):
        return {}
    names = [p.platform for p in platforms] if platforms is not None else None
    plan = await read_only(cache, source, components, names, emulate=emulate)
    return plan.images


async def build_image(
    source: dagger.Directory,
    cache: CacheReader | None,
    *,
    component: Component,
    platform: PlatformSpec | None,
    emulate: bool = False,
    ui_path: str = _stages.DEFAULT_UI_PATH,
) -> dagger.Container:
    """`_stages.build_image` with the cache read: the source is checked first, then the
    cook is looked up, then the image is built (its cacher from a hit) and start-checked."""
    cached: Mapping[Component, Mapping[str, dagger.Container]] = {}
    if cache is not None:
        await _stages.check_source(source, component_spec(component), ui_path)
        platforms = [platform] if platform is not None else None
        cached = await _cached(cache, source, [component], platforms, emulate=emulate)
    return await _stages.build_image(
        source,
        component=component,
        platform=platform,
        emulate=emulate,
        ui_path=ui_path,
        source_checked=cache is not None,
        cached=cached.get(component),
    )


async def build_stage(
    source: dagger.Directory,
    cache: CacheReader | None,
    *,
    component: Component,
    stage: Stage,
    platform: PlatformSpec | None,
    emulate: bool = False,
    ui_path: str = _stages.DEFAULT_UI_PATH,
) -> dagger.Container:
    """`_stages.build_stage` with the cache read for the stages built on the cook
    (cacher, builder, runtime): the stage and the source are checked first."""
    cached: Mapping[Component, Mapping[str, dagger.Container]] = {}
    if cache is not None:
        spec = component_spec(component)
        _stages.check_stage(spec, stage)
        await _stages.check_source(source, spec, ui_path)
        if stage in COOKED_STAGES:
            platforms = [platform] if platform is not None else None
            cached = await _cached(cache, source, [component], platforms, emulate=emulate)
    return await _stages.build_stage(
        source,
        component=component,
        stage=stage,
        platform=platform,
        emulate=emulate,
        ui_path=ui_path,
        source_checked=cache is not None,
        cached=cached.get(component),
    )


async def build_each(
    source: dagger.Directory,
    cache: CacheReader | None,
    *,
    components: Sequence[Component],
    platforms: Sequence[PlatformSpec],
    emulate: bool = False,
    ui_path: str = _stages.DEFAULT_UI_PATH,
) -> list[_image.Image]:
    """`_image.build_each` with the cache read: every component's source is checked, then
    every cook is looked up (one lookup for all), then the images are built."""
    cached: Mapping[Component, Mapping[str, dagger.Container]] = {}
    if cache is not None:
        await run_all(
            [
                lambda c=c: _stages.check_source(source, component_spec(c), ui_path)
                for c in components
            ]
        )
        cached = await _cached(cache, source, components, platforms, emulate=emulate)
    return await _image.build_each(
        source,
        components=components,
        platforms=platforms,
        emulate=emulate,
        ui_path=ui_path,
        source_checked=cache is not None,
        cached=cached,
    )
