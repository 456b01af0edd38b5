"""The dependency cache's key and tags: pure functions of the cook's inputs.

The cooked dependency layer (`cargo chef cook`) travels between engines as a
small OCI image in the registry (`ci/registry/dependency_cache.py` reads it,
publish writes it). Its tag is `deps-<platform>-<key>`, and the key is a
sha256 over every input of the cook:

- the recipe: what cargo-chef's `recipe.json` is made of, taken from the Rust
  source the planner sees, masked as cargo-chef masks it (`recipe_digest`):
  every `Cargo.toml` and `Cargo.lock` parsed (so comments and layout do not
  count) with the workspace members' own versions replaced by `0.0.1`, the
  files of `.cargo/` and `rust-toolchain[.toml]`, every `build.rs`, and the
  list of every file path (cargo-chef writes a dummy file for each target it
  finds). A release's version bump or an edit of a `.rs` file leaves it
  unchanged; a changed dependency, feature or new target changes it. It holds
  more than the recipe, never less: a key can miss where cargo-chef would
  agree, never hit where it would not;
- the Rust image, the cargo-chef version, the build and target platforms, the
  build mode (native, cross, emulated), the packages and environment of the
  toolchain, the profile and the cargo features of the cook (`dependency_key`).

Nothing here reads the engine or the network.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ci.errors import BrokkrError
from ci.rules.reference import ImageReference, parse_repository

MASKED_VERSION = "0.0.1"
"""What cargo-chef writes for a workspace member's version."""

CACHE_REPOSITORY = "brokkr-build-cache"
"""The default cache repository, next to the images: `{registry}/brokkr-build-cache`."""

TAG_PREFIX = "deps-"
KEY_SCHEMA = 1
"""Bumped when the cache image's layout changes: every old key then misses."""

CONTENT = "brokkr-deps/v1: target, cargo-registry"
"""What a cache image holds (its `CONTENT_LABEL`); an image without it is not used."""

KEY_LABEL = "io.brokkr.dependency-cache.key"
CONTENT_LABEL = "io.brokkr.dependency-cache.content"
PLATFORM_LABEL = "io.brokkr.dependency-cache.build-platform"
CREATED_LABEL = "org.opencontainers.image.created"
"""When the cache image was saved: the publish's `--created` (the commit time).
`prune --dependency-cache --keep K` orders keys by it; it is no part of the key."""

_CACHE_TAG = re.compile(
    r"deps-(?P<os>linux)-(?P<arch>[a-z0-9]+)(?:-(?P<variant>[a-z0-9]+))?-(?P<key>[0-9a-f]{64})"
)

# Files whose content goes into the recipe digest; of all other files only the path counts.
_RECIPE_FILES = re.compile(r"(?:^|.*/)(?:Cargo\.toml|Cargo\.lock|build\.rs)$")
_RECIPE_PREFIXES = (".cargo/",)
_RECIPE_ROOT_FILES = frozenset({"rust-toolchain", "rust-toolchain.toml"})


def recipe_content_paths(paths: Iterable[str]) -> list[str]:
    """Of `paths` (the Rust source's files), those whose content the recipe digest reads."""
    return sorted(
        p
        for p in paths
        if _RECIPE_FILES.fullmatch(p) or p.startswith(_RECIPE_PREFIXES) or p in _RECIPE_ROOT_FILES
    )


def _toml(path: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path} is not valid TOML: {exc}"
        raise BrokkrError(msg) from exc


def workspace_members(manifests: Mapping[str, dict[str, Any]]) -> set[str]:
    """The package names of every manifest in the source (path packages, members or not)."""
    names = set()
    for manifest in manifests.values():
        package = manifest.get("package")
        if isinstance(package, dict) and isinstance(package.get("name"), str):
            names.add(package["name"])
    return names


def mask_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """A parsed `Cargo.toml` with the package's and the workspace's own version masked,
    and the version requirement of every path dependency dropped (cargo-chef's masking)."""
    out = json.loads(json.dumps(manifest))  # a deep copy of plain TOML data
    package = out.get("package")
    if isinstance(package, dict) and isinstance(package.get("version"), str):
        package["version"] = MASKED_VERSION  # `version.workspace = true` stays as it is
    workspace = out.get("workspace")
    if isinstance(workspace, dict):
        shared = workspace.get("package")
        if isinstance(shared, dict) and "version" in shared:
            shared["version"] = MASKED_VERSION
        _mask_path_dependencies(workspace)
    _mask_path_dependencies(out)
    targets = out.get("target")
    for target in targets.values() if isinstance(targets, dict) else ():
        if isinstance(target, dict):
            _mask_path_dependencies(target)
    return out


def _mask_path_dependencies(table: dict[str, Any]) -> None:
    for section in ("dependencies", "dev-dependencies", "build-dependencies"):
        deps = table.get(section)
        if not isinstance(deps, dict):
            continue
        for spec in deps.values():
            if isinstance(spec, dict) and "path" in spec:
                spec.pop("version", None)


def mask_lockfile(lock: dict[str, Any], members: set[str]) -> dict[str, Any]:
    """A parsed `Cargo.lock` with the versions of the source's own packages masked."""
    out = json.loads(json.dumps(lock))
    for package in out.get("package") or []:
        if not isinstance(package, dict):
            continue
        if package.get("name") in members and "source" not in package:
            package["version"] = MASKED_VERSION
        deps = package.get("dependencies")
        if isinstance(deps, list):
            package["dependencies"] = [
                d.split(" ", 1)[0] if isinstance(d, str) and d.split(" ", 1)[0] in members else d
                for d in deps
            ]
    return out


def dependency_crates(lock_text: str) -> int:
    """How many dependency crates a `Cargo.lock` holds (packages from a registry or git)."""
    lock = _toml("Cargo.lock", lock_text)
    return sum(1 for p in lock.get("package") or [] if isinstance(p, dict) and "source" in p)


def recipe_digest(paths: Iterable[str], contents: Mapping[str, bytes]) -> str:
    """`sha256:<hex>` over what cargo-chef's recipe is made of (see the module docstring).

    `paths` are every file of the Rust source; `contents` holds at least the files
    `recipe_content_paths(paths)` names.
    """
    all_paths = sorted(set(paths))
    wanted = recipe_content_paths(all_paths)
    manifests = {
        p: _toml(p, contents[p].decode()) for p in wanted if p.rsplit("/", 1)[-1] == "Cargo.toml"
    }
    members = workspace_members(manifests)
    files: dict[str, Any] = {}
    for path in wanted:
        name = path.rsplit("/", 1)[-1]
        if name == "Cargo.toml":
            files[path] = mask_manifest(manifests[path])
        elif name == "Cargo.lock":
            files[path] = mask_lockfile(_toml(path, contents[path].decode()), members)
        else:
            files[path] = hashlib.sha256(contents[path]).hexdigest()
    material = json.dumps({"paths": all_paths, "files": files}, sort_keys=True)
    return "sha256:" + hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class CookInputs:
    """Everything a `cargo chef cook` depends on besides the recipe."""

    rust_image: str
    cargo_chef: str
    build_platform: str
    target_platform: str
    target_triple: str
    mode: str
    packages: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    profile: str = "release"
    features: tuple[str, ...] = ()


def dependency_key(recipe: str, inputs: CookInputs) -> str:
    """The cache key (64 hex) of one cook: `recipe` (`recipe_digest`) and its `inputs`."""
    material = {
        "schema": KEY_SCHEMA,
        "content": CONTENT,
        "recipe": recipe,
        "rust_image": inputs.rust_image,
        "cargo_chef": inputs.cargo_chef,
        "build_platform": inputs.build_platform,
        "target_platform": inputs.target_platform,
        "target": inputs.target_triple,
        "mode": inputs.mode,
        "packages": sorted(inputs.packages),
        "env": sorted(inputs.env),
        "profile": inputs.profile,
        "features": sorted(set(inputs.features)),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def cache_tag(target_platform: str, key: str) -> str:
    """`deps-<os>-<arch>[-<variant>]-<key>`, e.g. `deps-linux-arm64-<64 hex>`."""
    return f"{TAG_PREFIX}{target_platform.replace('/', '-')}-{key}"


def parse_cache_tag(tag: str) -> tuple[str, str] | None:
    """`deps-<os>-<arch>[-<variant>]-<key>` → (target platform, key), e.g.
    (`linux/arm/v7`, `<64 hex>`): the inverse of `cache_tag`; None for any other tag."""
    match = _CACHE_TAG.fullmatch(tag)
    if match is None:
        return None
    platform = "/".join(p for p in (match["os"], match["arch"], match["variant"]) if p)
    return platform, match["key"]


def is_cache_tag(tag: str) -> bool:
    """Whether `tag` is a dependency-cache tag (`list-tags` hides them by default)."""
    return parse_cache_tag(tag) is not None


def image_tags(tags: Sequence[str], *, show_cache: bool) -> list[str]:
    """`tags` without the dependency-cache tags, unless `show_cache`."""
    return list(tags) if show_cache else [t for t in tags if not is_cache_tag(t)]


def cache_labels(key: str, build_platform: str, created: str | None = None) -> dict[str, str]:
    """The labels a cache image carries: its key, content and build platform (what a
    lookup checks, called without `created`), and with `created` the time it was saved
    (`CREATED_LABEL`, the publish's `--created`: the 1970 default says no age)."""
    labels = {KEY_LABEL: key, CONTENT_LABEL: CONTENT, PLATFORM_LABEL: build_platform}
    if created is not None:
        labels[CREATED_LABEL] = created
    return labels


def parse_cache_repository(repository: str) -> ImageReference:
    """`--dependency-cache REPO`: a repository (no tag, no digest), for every function
    that takes the flag; a `BrokkrError` names the flag and the value otherwise."""
    try:
        return parse_repository(repository.strip())
    except BrokkrError as e:
        msg = f"--dependency-cache {repository!r} is not a repository: {e}"
        raise BrokkrError(msg) from None
