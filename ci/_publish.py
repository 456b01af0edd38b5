"""Publishing: every computed tag, every platform, verified, never overwriting a release.

The order is the contract (SPEC "Publish"):

1. every input is checked before anything runs (`PublishRequest`);
2. the registry is read: the semver tags already there decide where moving
   tags may go, and an immutable tag that already exists stops the run
   (unless `force`);
3. every platform variant of every component is built, concurrently; one
   failure stops the run and nothing is pushed;
4. each component is pushed as one multi-platform manifest under its first
   tag, then under its other tags (components in parallel);
5. every tag is read back and must resolve to the pushed index digest with
   every requested platform.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
import dagger

from ci import _image
from ci._build import DEFAULT_UI_PATH, check_rust_source
from ci._components import Component, ComponentSpec, component_spec
from ci._errors import BrokkrError
from ci._labels import image_labels, validate_created, validate_source_url
from ci._platforms import parse_platforms
from ci._reference import ImageReference, parse_repository
from ci._registry import Credentials, RegistryClient
from ci._tags import Tag, compute_tags, released_versions, validate_sha
from ci._ui import ui_folder

DEFAULT_REGISTRY = "ghcr.io/colliery-io"
PUSH_ATTEMPTS = 3
"""How many times one push is tried when the registry fails transiently."""
VERIFY_ATTEMPTS = 5
"""How many times a pushed tag is read back before its absence is an error."""
RETRY_DELAY = 2.0
"""Seconds before the first retry of a push or read-back; doubled (pushes) or grown after."""

_AUTH_MARKERS = ("401", "403", "unauthorized", "denied", "authentication required", "forbidden")


@dataclass(frozen=True)
class PublishRequest:
    """A validated `publish` call: nothing in it can fail a later step for bad input."""

    ref: str
    sha: str
    pr: int | None
    components: tuple[Component, ...]
    registry: str
    platforms: tuple[str, ...]
    created: str
    source_url: str
    dry_run: bool = False
    force: bool = False

    @classmethod
    def create(
        cls,
        *,
        ref: str,
        sha: str,
        pr: int | None,
        component: Component | None,
        registry: str,
        platforms: Sequence[str],
        created: str,
        source_url: str,
        dry_run: bool = False,
        force: bool = False,
    ) -> PublishRequest:
        """Check every input and normalise it; a `BrokkrError` names the first bad one."""
        if not sha:
            msg = "--sha is required: the commit being published (e.g. $GITHUB_SHA)"
            raise BrokkrError(msg)
        sha = validate_sha(sha)
        compute_tags(ref, sha=sha, pr=pr)  # the ref, sha and pr make sense together
        if not platforms:
            msg = "--platforms is empty: give at least one of linux/amd64, linux/arm64"
            raise BrokkrError(msg)
        specs = parse_platforms(list(platforms))
        names = [s.platform for s in specs]
        if len(set(names)) != len(names):
            msg = f"--platforms names a platform twice: {', '.join(names)}"
            raise BrokkrError(msg)
        registry = validate_registry(registry)
        components = tuple(Component) if component is None else (component,)
        return cls(
            ref=ref,
            sha=sha,
            pr=pr,
            components=components,
            registry=registry,
            platforms=tuple(names),
            created=validate_created(created),
            source_url=validate_source_url(source_url),
            dry_run=dry_run,
            force=force,
        )


def validate_registry(registry: str) -> str:
    """Check a registry namespace such as `ghcr.io/colliery-io` (no tag, no digest)."""
    registry = registry.strip().rstrip("/")
    if not registry or "@" in registry or registry.rsplit("/", 1)[-1].count(":"):
        msg = (
            f"--registry must be a registry and namespace such as ghcr.io/colliery-io "
            f"(no tag or digest), got {registry!r}"
        )
        raise BrokkrError(msg)
    try:
        parse_repository(repository_address(registry, Component.BROKER))
    except BrokkrError as e:
        msg = f"--registry {registry!r} is not a usable registry namespace: {e}"
        raise BrokkrError(msg) from None
    return registry


def repository_address(registry: str, component: Component) -> str:
    """`{registry}/brokkr-{component}`."""
    return f"{registry}/{component_spec(component).name}"


@dataclass
class Target:
    """Where one component goes, and what its repository already holds."""

    spec: ComponentSpec
    repository: ImageReference
    tags: list[Tag]
    existing: frozenset[str]
    pushed: list[str] = field(default_factory=list)

    def address(self, tag: str) -> str:
        return f"{self.repository.name}:{tag}"

    @property
    def conflicts(self) -> list[str]:
        """Immutable tags of this run that the repository already has."""
        return [t.name for t in self.tags if t.immutable and t.name in self.existing]


async def check_sources(request: PublishRequest, source: dagger.Directory) -> None:
    """Check the source holds every requested component (reads only, nothing is built)."""

    async def one(component: Component) -> None:
        spec = component_spec(component)
        if spec.rust:
            await check_rust_source(source, spec)
        else:
            await ui_folder(source, DEFAULT_UI_PATH)

    await _gather([lambda c=c: one(c) for c in request.components])


async def plan(request: PublishRequest, client: RegistryClient) -> list[Target]:
    """Read each repository's tags and compute the tags of this run (concurrently)."""
    targets: dict[Component, Target] = {}

    async def one(component: Component) -> None:
        repository = parse_repository(repository_address(request.registry, component))
        existing = await client.list_tags(repository, missing_ok=True)
        tags = compute_tags(
            request.ref,
            sha=request.sha,
            pr=request.pr,
            released=released_versions(existing),
        )
        targets[component] = Target(
            component_spec(component), repository, tags, frozenset(existing)
        )

    await _gather([lambda c=c: one(c) for c in request.components])
    return [targets[c] for c in request.components]


def refuse_overwrites(targets: Sequence[Target], *, force: bool) -> None:
    """Stop before anything is built or pushed if a release tag already exists."""
    conflicts = [t.address(tag) for t in targets for tag in t.conflicts]
    if conflicts and not force:
        msg = (
            "refusing to overwrite immutable tags that already exist: "
            + ", ".join(conflicts)
            + ". Nothing was built or pushed. Release a new version, or pass --force "
            "if replacing them is really intended."
        )
        raise BrokkrError(msg)


def dry_run_report(request: PublishRequest, targets: Sequence[Target]) -> list[str]:
    """What a real run would push, one line per address, and what it would refuse."""
    platforms = ", ".join(request.platforms)
    lines = []
    for target in targets:
        for tag in target.tags:
            address = target.address(tag.name)
            if tag.immutable and tag.name in target.existing:
                verdict = "would overwrite (--force)" if request.force else "exists, would refuse"
                lines.append(f"{address} ({platforms}) immutable tag {verdict}")
            else:
                kind = "immutable" if tag.immutable else "moving"
                lines.append(f"{address} ({platforms}) would push, {kind}")
    return lines


async def compose(
    request: PublishRequest, source: dagger.Directory
) -> dict[Component, _image.Image]:
    """Compose every component's multi-platform image (runs the cargo-chef planners).

    The sources were checked by `check_sources` already.
    """
    images: dict[Component, _image.Image] = {}

    async def one(component: Component) -> None:
        images[component] = await _image.build_multi(
            source, component=component, platforms=request.platforms, source_checked=True
        )

    await _gather([lambda c=c: one(c) for c in request.components])
    return images


def pinned_first(tags: Sequence[Tag]) -> list[Tag]:
    """The tags in push order: the immutable tag (the most specific) before moving ones."""
    return sorted(tags, key=lambda t: not t.immutable)


async def build(
    request: PublishRequest,
    targets: Sequence[Target],
    images: dict[Component, _image.Image],
) -> dict[str, list[dagger.Container]]:
    """Label and build every variant of every target, concurrently; any failure stops the run."""
    variants: dict[str, list[dagger.Container]] = {}
    for target in targets:
        labels = image_labels(
            target.spec,
            revision=request.sha,
            version=pinned_first(target.tags)[0].name,
            created=request.created,
            source_url=request.source_url,
        )
        labelled = []
        for variant in images[target.spec.component].variants:
            for name, value in labels.items():
                variant = variant.with_label(name, value)
            labelled.append(variant)
        variants[target.spec.name] = labelled

    failures: list[str] = []

    async def sync(name: str, index: int, platform: str) -> None:
        try:
            # The synced container is loaded by its ID: pushing it later sends the
            # ID instead of resolving the whole build graph again.
            variants[name][index] = await variants[name][index].sync()
        except dagger.QueryError as e:
            failures.append(f"{name} for {platform}: {_first_line(str(e))}")

    await _gather(
        [
            lambda n=name, i=index, p=platform: sync(n, i, p)
            for name in variants
            for index, platform in enumerate(request.platforms)
        ]
    )
    if failures:
        msg = "build failed, nothing was pushed: " + "; ".join(sorted(failures))
        raise BrokkrError(msg)
    return variants


async def push_and_verify(
    request: PublishRequest,
    targets: Sequence[Target],
    variants: dict[str, list[dagger.Container]],
    client: RegistryClient,
    *,
    username: str,
    password: dagger.Secret | None,
) -> list[str]:
    """Push each target under all its tags and read every tag back.

    Components go in parallel. Within one, the pinned tag is pushed first and
    its other tags after it (GHCR has lost tags under parallel pushes of a new
    image); then its tags are read back while other components may still push.
    """
    refs: dict[str, str] = {}
    problems: list[str] = []

    async def one(target: Target) -> None:
        primary, *others = variants[target.spec.name]
        if password is not None:
            primary = primary.with_registry_auth(target.repository.name, username, password)
        first, *rest = pinned_first(target.tags)

        async def tag(t: Tag) -> None:
            address = target.address(t.name)
            refs[address] = await _publish(primary, others, address)
            target.pushed.append(t.name)

        await tag(first)
        await _gather([lambda t=t: tag(t) for t in rest])
        problems.extend(await verify(request, target, refs, client))

    try:
        await _gather([lambda t=t: one(t) for t in targets])
    except BrokkrError as e:
        done = [target.address(t) for target in targets for t in target.pushed]
        note = f" Already pushed: {', '.join(done)}." if done else " Nothing was pushed."
        raise BrokkrError(f"{e}{note}") from None
    if problems:
        msg = "published, but the registry does not serve what was pushed: " + "; ".join(problems)
        raise BrokkrError(msg)
    return [refs[t.address(tag.name)] for t in targets for tag in t.tags]


async def _publish(
    container: dagger.Container,
    others: list[dagger.Container],
    address: str,
) -> str:
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            return await container.publish(address, platform_variants=others)
        except dagger.QueryError as e:
            reason = _first_line(str(e))
            if any(m in reason.lower() for m in _AUTH_MARKERS):
                msg = f"the registry refused {address}: {reason} (check --username/--password)"
                raise BrokkrError(msg) from None
            if attempt == PUSH_ATTEMPTS:
                msg = f"pushing {address} failed after {attempt} attempts: {reason}"
                raise BrokkrError(msg) from None
            await anyio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover


async def verify(
    request: PublishRequest, target: Target, refs: dict[str, str], client: RegistryClient
) -> list[str]:
    """Read every tag of `target` back: all must name the pushed index with every platform."""
    digests = {refs[target.address(t.name)].rsplit("@", 1)[1] for t in target.tags}
    if len(digests) != 1:
        return [f"{target.repository.name}: the tags were pushed as different images"]
    (expected,) = digests
    problems: list[str] = []

    async def one(tag: Tag) -> None:
        ref = target.repository.with_tag(tag.name)
        if problem := await _read_back(request, client, ref, expected):
            problems.append(f"{target.address(tag.name)}: {problem}")

    await _gather([lambda t=t: one(t) for t in target.tags])
    return sorted(problems)


async def _read_back(
    request: PublishRequest, client: RegistryClient, ref: ImageReference, expected: str
) -> str:
    problem = ""
    for attempt in range(1, VERIFY_ATTEMPTS + 1):
        try:
            described = await client.inspect(ref)
        except BrokkrError as e:
            problem = str(e)
        else:
            platforms = {p.platform for p in described.platforms}
            if described.digest != expected:
                problem = f"resolves to {described.digest}, pushed {expected}"
            elif platforms != set(request.platforms):
                problem = f"has platforms {sorted(platforms)}, pushed {list(request.platforms)}"
            else:
                return ""
        if attempt < VERIFY_ATTEMPTS:  # registries may lag behind a write for a moment
            await anyio.sleep(RETRY_DELAY * attempt / 4)
    return problem


async def publish(
    request: PublishRequest,
    source: dagger.Directory,
    *,
    username: str,
    password: dagger.Secret | None,
    credentials: Credentials | None,
) -> list[str]:
    """Run a publish: plan, refuse overwrites, build, push, verify (or report, for a dry run)."""
    await check_sources(request, source)
    async with RegistryClient(credentials=credentials) as client:
        if request.dry_run:
            return dry_run_report(request, await plan(request, client))
        # Reading the registry and running the planners do not depend on each other.
        planned: list[Target] = []
        images: dict[Component, _image.Image] = {}

        async def read_registry() -> None:
            planned.extend(await plan(request, client))

        async def plan_builds() -> None:
            images.update(await compose(request, source))

        await _gather([read_registry, plan_builds])
        refuse_overwrites(planned, force=request.force)
        variants = await build(request, planned, images)
        return await push_and_verify(
            request, planned, variants, client, username=username, password=password
        )


async def _gather(jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Run `jobs` concurrently; re-raise the first `BrokkrError` (or other error) plainly."""
    errors: list[BaseException] = []

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except Exception as e:  # collected and re-raised below, outside the group
            errors.append(e)

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(run, job)
    if errors:
        raise errors[0]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
