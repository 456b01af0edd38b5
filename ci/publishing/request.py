"""A `publish` call's inputs, checked and normalised before any work starts."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import dagger

from ci.build.stages import DEFAULT_UI_PATH
from ci.build.ui import normalize_ui_path
from ci.errors import BrokkrError
from ci.rules.cache_key import CACHE_REPOSITORY, parse_cache_repository
from ci.rules.components import Component, requested_components
from ci.rules.labels import validate_created, validate_source_url
from ci.rules.namespace import Namespace
from ci.rules.platforms import PlatformSpec
from ci.rules.reference import ImageReference
from ci.rules.tags import compute_tags, validate_sha

DEFAULT_REGISTRY = "ghcr.io/colliery-io"


@dagger.enum_type
class OutputFormat(enum.Enum):
    """What `publish` prints."""

    TEXT = "text"
    """One `address@sha256:…` line per pushed tag."""

    JSON = "json"
    """One JSON array, one object per pushed tag: component, repository, tag, address,
    digest (of the index), platforms (platform -> manifest digest), sbom (platform ->
    digest of the attached SBOM referrer), sboms_not_attached (why not, or null),
    signatures (`index` and each platform -> its `sha256-<hex>.sig` tag; empty without
    --signing-key) and no_ui_image (why the source's default has no UI image, or
    null). Nothing else is printed."""


@dataclass(frozen=True)
class PublishRequest:
    """A validated `publish` call: nothing in it can fail a later step for bad input."""

    ref: str
    sha: str
    pr: int | None
    components: tuple[Component, ...]
    registry: Namespace
    platforms: tuple[PlatformSpec, ...]
    created: str
    source_url: str
    dry_run: bool = False
    force: bool = False
    output: OutputFormat = OutputFormat.TEXT
    ui_path: str = DEFAULT_UI_PATH
    """The UI app's folder in the source (normalised; empty: the default, if the source has it)."""
    emulate: bool = False
    """Build the Rust stages under emulation instead of cross-compiling."""
    nightly: bool = False
    """A scheduled build: the only tag is `nightly` (`compute_tags`)."""
    commit_tag: bool = True
    """Give a branch push its `<branch>-sha-<7 hex>` tag (the seed's policy)."""
    no_ui: str | None = None
    """Why there is no UI image, when the source's default left it out (`with_components`)."""
    dependency_cache: ImageReference | None = None
    """The dependency cache's repository (None: no cache)."""

    @property
    def platform_names(self) -> tuple[str, ...]:
        """The platforms as the output names them (`linux/amd64`), in the order given."""
        return tuple(p.platform for p in self.platforms)

    @classmethod
    def create(
        cls,
        *,
        ref: str,
        sha: str,
        pr: int | None,
        registry: Namespace,
        platforms: Sequence[PlatformSpec],
        created: str,
        source_url: str,
        dry_run: bool = False,
        force: bool = False,
        output: OutputFormat = OutputFormat.TEXT,
        ui_path: str = "",
        emulate: bool = False,
        components: Sequence[Component] = (),
        component: Component | None = None,
        nightly: bool = False,
        commit_tag: bool = True,
        dependency_cache: str = "",
        no_dependency_cache: bool = False,
    ) -> PublishRequest:
        """Check every input and normalise it; a `BrokkrError` names the first bad one.

        The namespace and the platforms come parsed (`parse_namespace`,
        `parse_platforms`, in `ci.main`). `components` (with `component`, its
        one-item alias) may be empty: the default, every component the source
        holds, is decided by `images.with_components` once the source is read.
        """
        if not sha:
            msg = "--sha is required: the commit being published (e.g. $GITHUB_SHA)"
            raise BrokkrError(msg)
        sha = validate_sha(sha)
        # The ref, sha, pr and tag policy make sense together.
        compute_tags(ref, sha=sha, pr=pr, nightly=nightly, commit_tag=commit_tag)
        if not platforms:
            msg = "--platforms is empty: give at least one of linux/amd64, linux/arm64"
            raise BrokkrError(msg)
        requested = requested_components(components, component)
        if dry_run and output is OutputFormat.JSON:
            msg = (
                "--format json describes pushed images (their digests); --dry-run pushes "
                "none: use the default text format with --dry-run"
            )
            raise BrokkrError(msg)
        if no_dependency_cache and dependency_cache:
            msg = "--dependency-cache and --no-dependency-cache exclude each other: give one"
            raise BrokkrError(msg)
        cache = None
        if not no_dependency_cache:
            cache = parse_cache_repository(dependency_cache or f"{registry}/{CACHE_REPOSITORY}")
        return cls(
            ref=ref,
            sha=sha,
            pr=pr,
            components=requested,
            registry=registry,
            platforms=tuple(platforms),
            created=validate_created(created),
            source_url=validate_source_url(source_url),
            dry_run=dry_run,
            force=force,
            output=output,
            ui_path=normalize_ui_path(ui_path) if ui_path.strip() else "",
            emulate=emulate,
            nightly=nightly,
            commit_tag=commit_tag,
            dependency_cache=cache,
        )
