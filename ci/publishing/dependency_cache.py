"""The dependency cache in a publish: look the cooks up before building, save new ones after.

`prepare` runs before anything is built: it computes the key of every cook the
publish needs (one per Rust component and platform; components with the same
features share one), looks every key up in the cache repository with the
publish's registry client (its credentials, anonymous without them), and pulls
each hit by digest (`CachePlan.images`). Every other cook runs as without a
cache. `save`, once every release image is pushed under its immutable tag and
read back (beside the moving tags' pushes, `deliver`'s `after_release`),
pushes a cache image for every cook that ran, when the publish may write there
(the `can_write` rule of SBOMs and signatures: with --username/--password, or
on a loopback registry). Nothing here fails a publish: a lookup or a push that
fails is a note (`# dependency cache …`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import dagger

from ci.build import console as _console
from ci.build import dependencies as _deps
from ci.build import rust as _rust
from ci.build.stages import native_platform
from ci.errors import BrokkrError, first_line
from ci.registry import dependency_cache as _lookup
from ci.registry.client import RegistryClient
from ci.rules import cache_key as _key
from ci.rules.components import Component, ComponentSpec, component_spec
from ci.rules.platforms import BuildPlan, plan_build
from ci.rules.reference import ImageReference

NOTE = "# dependency cache"


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
    native = await native_platform()
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
            async with anyio.create_task_group() as tg:
                for tag, cooks in wanted.items():
                    tg.start_soon(one, tag, cooks[0])
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


async def save(
    cache: CachePlan,
    *,
    created: str,
    username: str,
    password: dagger.Secret | None,
    registry_service: dagger.Service | None = None,
) -> None:
    """Push a cache image for every cook that ran; a failure is a note, never an error.

    `created` (the publish's `--created`) becomes each image's created label.
    """
    if cache.repository is None or not cache.cooks or cache.recipe is None:
        return
    if not cache.writable:
        cache.note(
            f"read-only: {len(cache.cooks)} new cook(s) not saved to {cache.repository.name} "
            "(saving needs --username/--password, except on a loopback registry)"
        )
        return
    repository, recipe = cache.repository, cache.recipe
    notes: list[str] = []

    async def one(cook: Cook) -> None:
        cooked = cache.cookers.get(cook.component, {}).get(cook.plan.target.platform)
        if cooked is None:
            return
        address = f"{repository.name}:{cook.tag}"
        try:
            ref = await _deps.push_cache_image(
                cook.plan,
                cooked,
                cook.key,
                recipe.members,
                address,
                created=created,
                username=username,
                password=password,
                registry_service=registry_service,
            )
        except BrokkrError as e:
            notes.append(f"saving {address} failed (the publish is not affected): {e}")
            return
        notes.append(f"saved {ref} ({recipe.crates} dependency crates)")

    async with anyio.create_task_group() as tg:
        for cook in cache.cooks:
            tg.start_soon(one, cook)
    for note in sorted(notes):
        cache.note(note)
