"""The engine side of the dependency cache: the source's recipe digest, pulling a cache
image by digest, pushing a new one.

Reading the source here reads the host directory the user gave (`--source`),
never a built container: no build runs, so the key is known before the first
build starts (`ci.rules.cache_key` explains what the key covers).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

import dagger
from dagger import dag

from ci.build import push as _push
from ci.build import rust as _rust
from ci.concurrency import run_all
from ci.rules import cache_key as _key
from ci.rules.platforms import BuildPlan
from ci.rules.reference import parse_reference


@dataclass(frozen=True)
class SourceRecipe:
    """What the dependency cache knows of a source: its recipe digest, its own crates and
    how many dependency crates its lockfile holds."""

    digest: str
    members: frozenset[str]
    crates: int


async def source_recipe(source: dagger.Directory) -> SourceRecipe:
    """Read the Rust source's file list and its manifests, lockfile and toolchain files."""
    rust = _rust.rust_source(source)
    paths = [p for p in await rust.glob("**/*") if not p.endswith("/")]
    wanted = _key.recipe_content_paths(paths)
    texts = await run_all([lambda p=p: rust.file(p).contents() for p in wanted])
    contents = {path: text.encode() for path, text in zip(wanted, texts, strict=True)}
    # Only files have contents: glob also lists folders (a folder named like a manifest
    # would fail to read above, which no Cargo workspace has).
    digest = _key.recipe_digest(paths, contents)
    members = set()
    for path, data in contents.items():
        if path.rsplit("/", 1)[-1] == "Cargo.toml":
            package = tomllib.loads(data.decode()).get("package")
            if isinstance(package, dict) and isinstance(package.get("name"), str):
                members.add(package["name"])
    lock = contents.get("Cargo.lock")
    crates = _key.dependency_crates(lock.decode()) if lock is not None else 0
    return SourceRecipe(digest, frozenset(members), crates)


def pull(
    plan: BuildPlan,
    address: str,
    *,
    username: str,
    password: dagger.Secret | None,
    registry_service: dagger.Service | None = None,
) -> dagger.Container:
    """The cache image at `address` (`repository@sha256:…`) for `plan`'s build platform."""
    ctr = dag.container(platform=dagger.Platform(plan.build_platform))
    ctr = _push.with_auth(ctr, parse_reference(address), username=username, password=password)
    return ctr.from_(address, registry_service=registry_service)


async def push_cache_image(
    plan: BuildPlan,
    cooked: dagger.Container,
    key: str,
    members: frozenset[str],
    address: str,
    *,
    created: str,
    username: str,
    password: dagger.Secret | None,
    registry_service: dagger.Service | None = None,
) -> str:
    """Push the cache image of `cooked` to `address`, labelled `created` (the publish's
    commit time, `_rust.cache_image`); return `address@sha256:…`."""
    image = _rust.cache_image(plan, cooked, key, members, created=created)
    image = _push.with_auth(image, parse_reference(address), username=username, password=password)
    return await _push.push(image, [], address, registry_service=registry_service)
