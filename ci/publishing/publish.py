"""Publishing: every computed tag, every platform, verified, never overwriting a release.

The order is the contract (SPEC "Publish"):

1. every input is checked before anything runs (`PublishRequest`);
2. the registry is read: the semver tags already there decide where moving
   tags may go, and an immutable tag that already exists stops the run before
   anything is built (unless `force`);
3. every platform variant of every component is built, concurrently, and each
   platform's SBOM (`_sbom`) is read from its variant as soon as that variant
   is built; a failed build or read stops the run and nothing is pushed;
4. each component is pushed as one multi-platform manifest under its
   immutable tag, then under its other tags;
5. its tags are read back and must resolve to the pushed index digest with
   every requested platform;
6. its SBOMs are attached to its pushed platform manifests as OCI referrers
   (`_referrers`) when the module's client may write there (`can_write`:
   with credentials, or anonymously on a loopback registry); otherwise the
   output says they were not;
7. with a signing key, its platform manifests and then its index are signed
   in cosign's format (`_signing`), each signature stored under its
   `sha256-<hex>.sig` tag next to the image (the same `can_write` rule,
   checked before anything runs).

Steps 4 to 7 are one chain per component, the components' chains running in
parallel (`deliver`): one component's SBOMs and signatures are written while
another's tags are still being pushed. The plan's reads, and each
component's read-back, SBOM attaches and signing, each run under one registry
deadline (`RegistryClient.operation`). The output (`render`) reports steps 5
to 7: text lines, or one JSON array. A failure in step 6 does not stop step
7; once every chain has finished, failures in either are one error
(`after_push_failure`) naming what was pushed, attached and signed.

Two runs for the same repository at once could both find a tag absent and
both push it; CI serialises runs per ref (`concurrency` in the workflow).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import dagger

from ci.build import image as _image
from ci.build import push as _push
from ci.build.stages import DEFAULT_UI_PATH, check_source, native_platform
from ci.build.ui import normalize_ui_path
from ci.errors import BrokkrError, first_line
from ci.registry.client import Credentials, ImageDescription, RegistryClient
from ci.rules.components import Component, ComponentSpec, component_spec
from ci.rules.labels import REVISION_LABEL, image_labels, validate_created, validate_source_url
from ci.rules.platforms import parse_platform, parse_platforms
from ci.rules.reference import ImageReference, is_loopback_host, parse_repository
from ci.rules.tags import Tag, compute_tags, released_versions, validate_sha
from ci.supply_chain import sbom as _sbom
from ci.supply_chain import signing as _signing

DEFAULT_REGISTRY = "ghcr.io/colliery-io"
VERIFY_ATTEMPTS = 5
"""How many times a pushed tag is read back before its absence is an error."""
READ_LOGIN_HINT = (
    "reading the registry needs credentials here: pass --username and --password (the "
    "Docker login the Dagger CLI forwards reaches only the engine's pushes)"
)
"""What an anonymous publish is told when the registry wants a login to be read."""
READ_BACK_DELAY = 0.5
"""Seconds between read-back attempts, grown by the attempt number (registries may lag)."""
SIGNING_LOGIN_HINT = (
    "--signing-key stores signatures through the module's own registry client, which logs "
    "in only with --username and --password (the Docker login the Dagger CLI forwards "
    "reaches only the engine's pushes): pass both"
)


@dagger.enum_type
class OutputFormat(enum.Enum):
    """What `publish` prints."""

    TEXT = "text"
    """One `address@sha256:…` line per pushed tag."""

    JSON = "json"
    """One JSON array, one object per pushed tag: component, repository, tag, address,
    digest (of the index), platforms (platform -> manifest digest), sbom (platform ->
    digest of the attached SBOM referrer), sboms_not_attached (why not, or null) and
    signatures (`index` and each platform -> its `sha256-<hex>.sig` tag; empty without
    --signing-key). Nothing else is printed."""


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
    output: OutputFormat = OutputFormat.TEXT
    ui_path: str = DEFAULT_UI_PATH
    """The UI app's folder in the source (normalised)."""
    emulate: bool = False
    """Build the Rust stages under emulation instead of cross-compiling."""

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
        output: OutputFormat = OutputFormat.TEXT,
        ui_path: str = DEFAULT_UI_PATH,
        emulate: bool = False,
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
        names = [s.platform for s in parse_platforms(list(platforms))]
        registry = validate_registry(registry)
        components = tuple(Component) if component is None else (component,)
        if dry_run and output is OutputFormat.JSON:
            msg = (
                "--format json describes pushed images (their digests); --dry-run pushes "
                "none: use the default text format with --dry-run"
            )
            raise BrokkrError(msg)
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
            output=output,
            ui_path=normalize_ui_path(ui_path),
            emulate=emulate,
        )


def validate_registry(registry: str) -> str:
    """Check a registry namespace such as `ghcr.io/colliery-io` (no tag, no digest)."""
    registry = registry.strip().rstrip("/")
    namespace = registry.split("/", 1)[1] if "/" in registry else ""  # after the host[:port]
    if not registry or "@" in registry or ":" in namespace:
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
    revisions: dict[str, str] = field(default_factory=dict)
    """The commit each existing immutable tag of this run was published from, where known."""
    pushed: list[str] = field(default_factory=list)
    digest: str = ""
    """The pushed index digest, once read back."""
    platform_digests: dict[str, str] = field(default_factory=dict)
    """Platform (`linux/amd64`) -> its manifest digest in the index, once read back."""
    sboms: dict[str, str] = field(default_factory=dict)
    """Platform -> the digest of its attached SBOM artifact manifest, once attached."""
    signatures: dict[str, str] = field(default_factory=dict)
    """`index` or platform -> the `sha256-<hex>.sig` tag its signature is stored under."""

    def address(self, tag: str) -> str:
        """`{repository}:{tag}`."""
        return f"{self.repository.name}:{tag}"

    @property
    def conflicts(self) -> list[str]:
        """Immutable tags of this run that the repository already has."""
        return [t.name for t in self.tags if t.immutable and t.name in self.existing]


async def check_sources(request: PublishRequest, source: dagger.Directory) -> None:
    """Check the source holds every requested component (reads only, nothing is built)."""
    await _gather(
        [
            lambda c=c: check_source(source, component_spec(c), request.ui_path)
            for c in request.components
        ]
    )


async def plan(request: PublishRequest, client: RegistryClient) -> list[Target]:
    """Read each repository's tags and compute the tags of this run (concurrently).

    Existing immutable tags of this run are looked at too: the commit they were
    published from goes into the refusal message.
    """
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
        target = Target(component_spec(component), repository, tags, frozenset(existing))
        for name in target.conflicts:
            labels = await client.config_labels(repository.with_tag(name))
            if revision := labels.get(REVISION_LABEL):
                target.revisions[name] = revision
        targets[component] = target

    host = parse_repository(repository_address(request.registry, request.components[0])).registry
    # One deadline for all of the plan's reads (the client's Limits.deadline).
    with client.operation(host, f"reading the tags of {request.registry} to plan the publish"):
        await _gather([lambda c=c: one(c) for c in request.components])
    return [targets[c] for c in request.components]


def refuse_overwrites(request: PublishRequest, targets: Sequence[Target]) -> None:
    """Stop before anything is built or pushed if an immutable tag already exists."""
    conflicts = [
        f"{t.address(tag)} ({_provenance(request, t.revisions.get(tag))})"
        for t in targets
        for tag in t.conflicts
    ]
    if conflicts and not request.force:
        msg = (
            "refusing to overwrite immutable tags that already exist: "
            + ", ".join(conflicts)
            + ". Nothing was built or pushed. Release a new version, or pass --force "
            "if replacing them is really intended."
        )
        raise BrokkrError(msg)


def _provenance(request: PublishRequest, revision: str | None) -> str:
    if revision is None:
        return "published from an unknown commit"
    if revision == request.sha:
        return f"already published from this commit {revision[:7]}"
    return f"published from commit {revision[:7]}"


def dry_run_report(request: PublishRequest, targets: Sequence[Target]) -> list[str]:
    """What a real run would push, one line per address, and what it would refuse."""
    platforms = ", ".join(request.platforms)
    lines = []
    for target in targets:
        for tag in target.tags:
            address = target.address(tag.name)
            if tag.immutable and tag.name in target.existing:
                verdict = "would overwrite (--force)" if request.force else "exists, would refuse"
                origin = _provenance(request, target.revisions.get(tag.name))
                lines.append(f"{address} ({platforms}) immutable tag {verdict}; {origin}")
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
            source,
            component=component,
            platforms=request.platforms,
            emulate=request.emulate,
            ui_path=request.ui_path,
            source_checked=True,
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
    *,
    read_sboms: bool = False,
) -> tuple[dict[str, list[dagger.Container]], list[_sbom.Pending] | None]:
    """Label and build every variant of every target, concurrently; any failure stops the run.

    With `read_sboms`, each variant's SBOM inputs are read from it
    (`_sbom.read_pending`) as soon as it is built, while the others still build.
    Returns the built variants and the SBOMs read (one per platform of every
    target, in that order; None without `read_sboms`). A failed build or read
    is one `BrokkrError` once every build and read has finished: nothing has
    been pushed then.
    """
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

    native = await native_platform() if read_sboms else ""
    failures: list[str] = []
    read_failures: list[str] = []
    read: dict[tuple[str, int], _sbom.Pending] = {}

    async def one(target: Target, index: int, platform: str) -> None:
        name = target.spec.name
        try:
            # The synced container is loaded by its ID: pushing it later sends the
            # ID instead of resolving the whole build graph again.
            variants[name][index] = await variants[name][index].sync()
        except dagger.QueryError as e:
            failures.append(f"{name} for {platform}: {first_line(e)}")
            return
        if not read_sboms or failures:  # after a failed build nothing is pushed
            return
        try:
            read[(name, index)] = await _sbom.read_pending(
                sbom_job(target, platform, variants[name][index]), native
            )
        except BrokkrError as e:
            read_failures.append(str(e))

    await _gather(
        [
            lambda t=target, i=index, p=platform: one(t, i, p)
            for target in targets
            for index, platform in enumerate(request.platforms)
        ]
    )
    if failures:
        msg = "build failed, nothing was pushed: " + "; ".join(sorted(failures))
        raise BrokkrError(msg)
    if read_failures:
        msg = "reading the SBOMs failed, nothing was pushed: " + "; ".join(sorted(read_failures))
        raise BrokkrError(msg)
    if not read_sboms:
        return variants, None
    pending = [
        read[(target.spec.name, index)]
        for target in targets
        for index in range(len(request.platforms))
    ]
    return variants, pending


def sbom_job(target: Target, platform: str, image: dagger.Container) -> _sbom.PublishJob:
    """The SBOM of `target` for `platform`, read from its built (labelled) variant `image`."""
    return _sbom.PublishJob(
        spec=target.spec,
        repository=target.repository,
        version=pinned_first(target.tags)[0].name,
        platform=platform,
        image=image,
    )


async def deliver(
    request: PublishRequest,
    targets: Sequence[Target],
    variants: dict[str, list[dagger.Container]],
    client: RegistryClient,
    *,
    username: str,
    password: dagger.Secret | None,
    registry_service: dagger.Service | None = None,
    pending: Sequence[_sbom.Pending] | None = None,
    signing_key: _signing.SigningKey | None = None,
) -> tuple[list[str], list[str]]:
    """Push, read back, attach the SBOMs of and sign every target: one chain per target.

    Components go in parallel, each as one chain: its immutable tag is pushed
    first and its other tags after it (GHCR has lost tags under parallel
    pushes of a new image); then its tags are read back; then its `pending`
    SBOMs are attached (None: they are not); then, with `signing_key`, it is
    signed. One component's attaches and signatures overlap another's pushes.
    A chain that fails stops there and does not stop the others.

    Once every chain has finished: a push that failed for good (or a read-back
    that could not finish) is a `BrokkrError` listing every address that was
    pushed, a tag the registry does not serve is one naming it; either also
    says what was attached and signed meanwhile. Otherwise a failed SBOM or
    signature is one error (`after_push_failure`). Returns every tag's
    `address@digest` (targets' order) and the `# sbom …` notes.
    """
    refs: dict[str, str] = {}
    push_errors: list[str] = []
    problems: list[str] = []
    reports: dict[str, _sbom.AttachReport] = {}
    signing_failures: list[str] = []

    async def chain(target: Target) -> None:
        primary, *others = variants[target.spec.name]
        primary = _push.with_auth(
            primary, target.repository.name, username=username, password=password
        )
        first, *rest = pinned_first(target.tags)

        async def tag(t: Tag) -> None:
            address = target.address(t.name)
            refs[address] = await _push.push(
                primary, others, address, registry_service=registry_service
            )
            target.pushed.append(t.name)

        try:
            await tag(first)
            await _gather([lambda t=t: tag(t) for t in rest])
            read_back = await verify(request, target, refs, client)
        except BrokkrError as e:
            push_errors.append(str(e))
            return
        if read_back:
            problems.extend(read_back)
            return
        if pending is not None:
            mine = [p for p in pending if p.job.spec.name == target.spec.name]
            reports[target.spec.name] = await attach_sboms(request, [target], client, mine)
        if signing_key is not None:
            signing_failures.extend(await sign(request, [target], client, signing_key))

    await _gather([lambda t=t: chain(t) for t in targets])

    sbom_lines = [_sbom.NOT_ATTACHED] if pending is None else []
    for target in targets:
        if (report := reports.get(target.spec.name)) is not None:
            sbom_lines += report.lines
    sbom_failures = sorted(f for report in reports.values() for f in report.failures)
    written = written_after_push(
        targets,
        sbom_lines=sbom_lines,
        sbom_failures=sbom_failures,
        signing=signing_key is not None,
        signing_failures=sorted(signing_failures),
    )
    meanwhile = ""
    if any(t.sboms or t.signatures for t in targets) or sbom_failures or signing_failures:
        meanwhile = " For the images that were pushed and verified: " + " ".join(written)
    if push_errors:
        done = [target.address(t) for target in targets for t in target.pushed]
        note = f" Already pushed: {', '.join(done)}." if done else " Nothing was pushed."
        raise BrokkrError(f"{push_errors[0]}{note}{meanwhile}")
    if problems:
        msg = "published, but the registry does not serve what was pushed: " + "; ".join(problems)
        raise BrokkrError(msg + meanwhile)
    pushed = [refs[t.address(tag.name)] for t in targets for tag in t.tags]
    if sbom_failures or signing_failures:
        raise BrokkrError(after_push_failure(pushed, written))
    return pushed, sbom_lines


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
        problem, described = await _read_back(request, client, ref, expected)
        if problem:
            problems.append(f"{target.address(tag.name)}: {problem}")
        elif described is not None and not target.digest:
            target.digest = described.digest
            target.platform_digests = {
                _platform_name(p.platform): p.digest for p in described.platforms
            }

    # One deadline for reading back all of this target's tags (the client's Limits.deadline).
    with client.operation(target.repository.registry, f"reading back {target.repository.name}"):
        await _gather([lambda t=t: one(t) for t in target.tags])
    return sorted(problems)


async def _read_back(
    request: PublishRequest, client: RegistryClient, ref: ImageReference, expected: str
) -> tuple[str, ImageDescription | None]:
    """('', what the registry serves) when `ref` is the pushed image, else (problem, None)."""
    problem = ""
    for attempt in range(1, VERIFY_ATTEMPTS + 1):
        try:
            described = await client.inspect(ref)
        except BrokkrError as e:
            problem = str(e)
        else:
            platforms = {_platform_name(p.platform) for p in described.platforms}
            if described.digest != expected:
                problem = f"resolves to {described.digest}, pushed {expected}"
            elif platforms != set(request.platforms):
                problem = f"has platforms {sorted(platforms)}, pushed {list(request.platforms)}"
            else:
                return "", described
        if attempt < VERIFY_ATTEMPTS:  # registries may lag behind a write for a moment
            await anyio.sleep(READ_BACK_DELAY * attempt)
    return problem, None


def _platform_name(platform: str) -> str:
    """A registry's `os/arch[/variant]` as the request names it (`linux/arm64/v8` too)."""
    try:
        return parse_platform(platform).platform
    except BrokkrError:
        return platform


async def attach_sboms(
    request: PublishRequest,
    targets: Sequence[Target],
    client: RegistryClient,
    pending: Sequence[_sbom.Pending],
) -> _sbom.AttachReport:
    """Attach every pending SBOM to its pushed platform manifest, under one registry deadline.

    `publish` calls it for one component at a time, once its tags are read
    back. Fills each target's `sboms`; a failure is in the report, not raised.
    """
    digests = {(t.repository.name, p): d for t in targets for p, d in t.platform_digests.items()}
    # One deadline for all the attaches (the client's Limits.deadline).
    try:
        with client.operation(
            targets[0].repository.registry,
            f"attaching the SBOMs of the images in {request.registry}",
        ):
            report = await _sbom.attach_for_publish(
                client, pending, digests, created=request.created
            )
    except BrokkrError as e:  # each attach reports its own failure; this is anything else
        report = _sbom.AttachReport([], [str(e)], {})
    for target in targets:
        for platform in target.platform_digests:
            if (digest := report.attached.get((target.repository.name, platform))) is not None:
                target.sboms[platform] = digest
    return report


async def sign(
    request: PublishRequest,
    targets: Sequence[Target],
    client: RegistryClient,
    key: _signing.SigningKey,
) -> list[str]:
    """Sign every pushed platform manifest, then the index, of every target (cosign format).

    Components go in parallel, all under one registry deadline (the client's
    `Limits.deadline`); `publish` calls it for one component at a time, once
    its SBOMs are attached. Fills each target's `signatures`. Returns one entry per
    target whose signing failed, naming it and why (empty when all is
    signed); the images themselves stay as pushed.
    """
    problems: list[str] = []

    async def one(target: Target) -> None:
        async def sign_one(what: str, digest: str) -> None:
            await _signing.sign_manifest(
                client, target.repository, digest, key, created=request.created
            )
            target.signatures[what] = _signing.signature_tag(digest)

        try:
            await _gather(
                [lambda p=p, d=d: sign_one(p, d) for p, d in target.platform_digests.items()]
            )
            await sign_one("index", target.digest)
        except BrokkrError as e:
            problems.append(f"{target.repository.name}@{target.digest}: {e}")

    try:
        with client.operation(
            targets[0].repository.registry, f"signing the pushed images in {request.registry}"
        ):
            await _gather([lambda t=t: one(t) for t in targets])
    except BrokkrError as e:
        problems.append(str(e))
    return sorted(problems)


def written_after_push(
    targets: Sequence[Target],
    *,
    sbom_lines: Sequence[str],
    sbom_failures: Sequence[str],
    signing: bool,
    signing_failures: Sequence[str],
) -> list[str]:
    """Sentences saying which SBOMs were and were not attached and (with a signing
    key) which signatures were and were not written."""
    parts = []
    if sbom_failures:
        parts.append("SBOMs were not attached to: " + "; ".join(sbom_failures) + ".")
    if sbom_lines == [_sbom.NOT_ATTACHED]:
        parts.append(f"SBOMs not attached: {_sbom.NOT_ATTACHED_REASON}.")
    elif sbom_lines:
        attached = "; ".join(line.removeprefix("# sbom ") for line in sbom_lines)
        parts.append(f"Attached: {attached}.")
    else:
        parts.append("No SBOM was attached.")
    if signing_failures:
        parts.append("Signing failed for: " + "; ".join(signing_failures) + ".")
    if signing:
        signed = [line.removeprefix("# signature ") for line in signature_lines(targets)]
        parts.append(f"Signed: {'; '.join(signed)}." if signed else "Nothing was signed.")
    return parts


def after_push_failure(refs: Sequence[str], written: Sequence[str]) -> str:
    """The one error of a publish whose images were pushed but whose SBOMs or signatures
    were not all written: what was pushed, and `written` (`written_after_push`)."""
    return " ".join(
        [
            f"the images were pushed and verified ({', '.join(refs)}), but not all their "
            "SBOMs and signatures were written.",
            *written,
            "The images stay as pushed; `inspect` shows which manifests have an SBOM and a "
            "signature, `verify` what is unsigned.",
        ]
    )


def signature_lines(targets: Sequence[Target]) -> list[str]:
    """`# signature <index|platform> <repository>@<manifest>: <repository>:<sha256-<hex>.sig>`."""
    lines = []
    for target in targets:
        manifests = {**target.platform_digests, "index": target.digest}
        name = target.repository.name
        lines += [
            f"# signature {what} {name}@{digest}: {name}:{target.signatures[what]}"
            for what, digest in manifests.items()
            if what in target.signatures
        ]
    return lines


def render(
    request: PublishRequest,
    targets: Sequence[Target],
    refs: Sequence[str],
    *,
    notes: Sequence[str] = (),
    sboms_not_attached: str | None = None,
) -> str:
    """What `publish` prints: `address@digest` lines and `# …` notes, or one JSON array.

    In JSON the notes' content is in each object instead (`sbom`,
    `sboms_not_attached`, `signatures`; see `OutputFormat.JSON`).
    """
    if request.output is OutputFormat.TEXT:
        return "\n".join([*refs, *notes])
    entries = [
        {
            "component": target.spec.component.value,
            "repository": target.repository.name,
            "tag": tag.name,
            "address": target.address(tag.name),
            "digest": target.digest,
            "platforms": {
                p: target.platform_digests[p]
                for p in request.platforms
                if p in target.platform_digests
            },
            "sbom": {p: target.sboms[p] for p in request.platforms if p in target.sboms},
            "sboms_not_attached": sboms_not_attached,
            "signatures": {
                what: target.signatures[what]
                for what in ("index", *request.platforms)
                if what in target.signatures
            },
        }
        for target in targets
        for tag in target.tags
    ]
    return json.dumps(entries, indent=2)


def can_write(request: PublishRequest, credentials: Credentials | None) -> bool:
    """Whether the module's own registry client may write SBOMs and signatures to the registry.

    It logs in only with --username/--password; without them it writes
    anonymously, which only a loopback registry (a throw-away one, also one
    reached through --registry-service) is taken to accept.
    """
    if credentials is not None:
        return True
    repository = parse_repository(repository_address(request.registry, request.components[0]))
    return is_loopback_host(repository.host)


def check_signing_login(
    request: PublishRequest, credentials: Credentials | None, key: _signing.SigningKey | None
) -> None:
    """Signing writes through the module's registry client: it needs a login (but on
    loopback). A dry run writes nothing, so it needs none; it says so instead."""
    if key is not None and not request.dry_run and not can_write(request, credentials):
        raise BrokkrError(SIGNING_LOGIN_HINT)


async def publish(
    request: PublishRequest,
    source: dagger.Directory,
    *,
    username: str,
    password: dagger.Secret | None,
    credentials: Credentials | None,
    signing_key: _signing.SigningKey | None = None,
    registry_service: dagger.Service | None = None,
    connect_to: Mapping[str, tuple[str, int]] | None = None,
) -> str:
    """Run a publish: plan, refuse overwrites, build, push, verify, sign (or report, dry run).

    `registry_service` goes to every push; `connect_to` (its endpoint, from
    `_service.connect_to`) to the registry client (`--registry-service`).
    """
    check_signing_login(request, credentials, signing_key)
    await check_sources(request, source)
    async with RegistryClient(
        credentials=credentials, anonymous_hint=READ_LOGIN_HINT, connect_to=connect_to
    ) as client:
        targets = await plan(request, client)
        if request.dry_run:
            lines = dry_run_report(request, targets)
            if signing_key is not None:
                needs = "" if can_write(request, credentials) else "; needs --username/--password"
                lines += [
                    f"{t.repository.name}: would sign the index and every platform manifest "
                    f"(cosign format, sha256-<hex>.sig tags{needs})"
                    for t in targets
                ]
            return "\n".join(lines)
        refuse_overwrites(request, targets)
        images = await compose(request, source)
        # SBOMs are read from each variant once it is built, and before the first push
        # (a failure pushes nothing); each component's are attached after its read-back
        # where the module's client may write; elsewhere publish says they were not.
        sboms = can_write(request, credentials)
        variants, pending = await build(request, targets, images, read_sboms=sboms)
        refs, sbom_lines = await deliver(
            request,
            targets,
            variants,
            client,
            username=username,
            password=password,
            registry_service=registry_service,
            pending=pending,
            signing_key=signing_key,
        )
        return render(
            request,
            targets,
            refs,
            notes=[*sbom_lines, *signature_lines(targets)],
            sboms_not_attached=None if sboms else _sbom.NOT_ATTACHED_REASON,
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
