"""A CycloneDX SBOM of one image and platform, made from what the image really contains.

Why not a scanner image: the issue allows a scanner pinned by digest (syft) or
another way that can be defended. This module builds every image itself, so it
knows where each kind of software lives, and it reads those places from the
built container, through the engine, for the platform being described
(`_cyclonedx` turns what was read into the document):

- **Debian packages** (broker, agent): the runtime image's dpkg database,
  `/var/lib/dpkg/status` (installed packages only), with the distribution from
  its `/etc/os-release`: `pkg:deb/debian/<name>@<version>?arch=…&distro=debian-12`.
- **Alpine packages** (UI): its apk database, `/lib/apk/db/installed`:
  `pkg:apk/alpine/<name>@<version>?arch=…&distro=alpine-<version>`.
- **Rust crates** (broker, agent): the binary is linked with `cargo auditable`,
  which embeds the resolved crate graph of *that* binary (for its target) in its
  `.dep-v0` section. `rust-audit-info` (pinned in `ci/rules/versions.py`, installed
  in the chef base on the engine's platform) reads it from the binary copied out
  of the runtime image; every runtime crate becomes `pkg:cargo/<name>@<version>`
  (crates.io) with the dependency graph. This is the same data trivy, grype and
  syft read, so the SBOM and a scanner agree on the crates.
- **kubectl** (agent): the pinned version and the sha256 the engine verified
  when it downloaded the binary (`pkg:generic/kubectl@<version>` with its
  download URL and SHA-256 hash).
- **npm packages** (UI): the app's installed tree, `/app/node_modules/.package-lock.json`
  (npm's record of what is in `node_modules`), `pkg:npm/<scope>/<name>@<version>`
  with the SHA-512 of each tarball; and the Node.js runtime from the base image's
  `NODE_VERSION`.

The document is CycloneDX 1.5 JSON. `metadata.component` is the image (for a
published image, `pkg:oci/<name>@<platform manifest digest>`). The output is
deterministic (sorted components, a serial number derived from the content, no
wall-clock timestamp), so the same image gives the same SBOM and attaching it
again pushes nothing new.

A database whose packages are for another architecture than the platform asked
for is refused: an SBOM always describes the runtime image of its own platform.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import anyio
import dagger
from dagger import dag

from ci.build import rust as _rust
from ci.build.stages import DEFAULT_UI_PATH, build_image, native_platform
from ci.errors import BrokkrError, first_line
from ci.registry import referrers as _referrers
from ci.registry.client import RegistryClient
from ci.rules.components import Component, ComponentSpec, component_spec
from ci.rules.platforms import PlatformSpec, parse_platform
from ci.rules.reference import ImageReference
from ci.rules.versions import RUST_AUDIT_INFO_VERSION
from ci.supply_chain.cyclonedx import (
    APK_INSTALLED,
    DPKG_STATUS,
    MEDIA_TYPE,
    NPM_INSTALLED,
    OS_RELEASE,
    ImageContents,
    Subject,
    build_document,
    render,
)

SCAN_DIR = "/scan"


# -- reading an image through the engine -------------------------------------------


def audit_reader(native_platform: str) -> dagger.Container:
    """The chef base on the engine's platform with the pinned `rust-audit-info` installed."""
    return _rust.chef_base(native_platform).with_exec(
        ["cargo", "install", "rust-audit-info", "--locked", "--version", RUST_AUDIT_INFO_VERSION]
    )


def audit_data(
    image: dagger.Container, spec: ComponentSpec, native_platform: str
) -> dagger.Container:
    """`rust-audit-info` run on the binary copied out of `image` (its stdout is the JSON)."""
    scanned = f"{SCAN_DIR}/{spec.binary}"
    return (
        audit_reader(native_platform)
        .with_mounted_file(scanned, image.file(f"/usr/local/bin/{spec.binary}"))
        .with_exec(["rust-audit-info", scanned])
    )


async def read_contents(
    image: dagger.Container, spec: ComponentSpec, native_platform: str
) -> ImageContents:
    """Read the SBOM's inputs out of the runtime `image` of `spec`'s component (concurrently)."""
    contents = ImageContents(os_release="", kubectl=spec.kubectl)

    async def os_release() -> None:
        contents.os_release = await image.file(OS_RELEASE).contents()

    async def dpkg() -> None:
        contents.dpkg_status = await image.file(DPKG_STATUS).contents()

    async def crates() -> None:
        contents.audit_data = await audit_data(image, spec, native_platform).stdout()

    async def apk() -> None:
        contents.apk_installed = await image.file(APK_INSTALLED).contents()

    async def npm() -> None:
        if await image.exists(NPM_INSTALLED, expected_type=dagger.ExistsType.REGULAR_TYPE):
            contents.npm_installed = await image.file(NPM_INSTALLED).contents()

    async def node() -> None:
        contents.node_version = (await image.env_variable("NODE_VERSION")) or None

    jobs = [os_release, dpkg, crates] if spec.rust else [os_release, apk, npm, node]
    if spec.rust:
        contents.tools.append(("rust-audit-info", RUST_AUDIT_INFO_VERSION))
    failures: list[str] = []

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except dagger.QueryError as e:
            failures.append(first_line(e))

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(run, job)
    if failures:
        raise BrokkrError(f"reading the SBOM inputs of {spec.name} failed: {failures[0]}")
    return contents


async def sbom_text(
    image: dagger.Container,
    spec: ComponentSpec,
    subject: Subject,
    native_platform: str,
) -> str:
    """The CycloneDX JSON of the runtime `image` (which must be `subject.platform`'s)."""
    contents = await read_contents(image, spec, native_platform)
    return render(build_document(spec, subject, contents))


def sbom_file(spec: ComponentSpec, platform: PlatformSpec, text: str) -> dagger.File:
    """The SBOM as a `File` named `<image>-<arch>.cdx.json`."""
    return dag.file(f"{spec.name}-{platform.debian_arch}.cdx.json", text)


async def image_sbom(
    source: dagger.Directory,
    *,
    component: Component,
    platform: str | None,
    emulate: bool = False,
    ui_path: str = DEFAULT_UI_PATH,
) -> dagger.File:
    """Build `component`'s runtime image for `platform` (default: the engine's) and describe it.

    The image is the one `build` returns for the same arguments; the SBOM is
    read from it (see the module docstring) and returned as a `File`.
    """
    spec = component_spec(component)
    native = await native_platform()
    target = parse_platform(platform or native)
    image = await build_image(
        source, component=component, platform=target.platform, emulate=emulate, ui_path=ui_path
    )
    text = await sbom_text(image, spec, Subject(spec.name, target), native)
    return sbom_file(spec, target, text)


# -- publish: read before the push, attach after it ----------------------------------

NOT_ATTACHED_REASON = (
    "they are written by the module's own registry client, which logs in only with "
    "--username and --password (the Docker login the Dagger CLI forwards reaches only the "
    "engine's pushes) and writes anonymously only to a loopback registry; pass both to "
    "attach them"
)
"""Why `publish` attaches no SBOMs to a non-loopback registry without credentials
(`sboms_not_attached` in its JSON)."""
NOT_ATTACHED = f"# SBOMs not attached: {NOT_ATTACHED_REASON}"
"""The line `publish` ends its text output with when it may not write the SBOMs."""


@dataclass(frozen=True)
class PublishJob:
    """One platform of one component that `publish` is about to push."""

    spec: ComponentSpec
    repository: ImageReference
    version: str
    platform: str
    image: dagger.Container


@dataclass(frozen=True)
class Pending:
    """An SBOM read from a built image, waiting for its platform manifest digest."""

    job: PublishJob
    target: PlatformSpec
    contents: ImageContents


async def read_pending(job: PublishJob, native: str) -> Pending:
    """Read `job`'s SBOM inputs from its (built) image, before it is pushed (`native`: the
    engine's platform, where `rust-audit-info` runs).

    `publish` calls it for each variant as soon as that variant is built. A
    failure is a `BrokkrError` naming the image and platform.
    """
    try:
        contents = await read_contents(job.image, job.spec, native)
    except BrokkrError as e:
        raise BrokkrError(f"{job.spec.name} for {job.platform}: {e}") from None
    return Pending(job, parse_platform(job.platform), contents)


@dataclass(frozen=True)
class AttachReport:
    """What `attach_for_publish` did."""

    lines: list[str]
    """One `# sbom <platform> <repository>@<manifest>: <repository>@<artifact> (<how>)` line per
    attached SBOM, in the order of the pending SBOMs."""
    failures: list[str]
    """One entry per SBOM that was not attached, saying why."""
    attached: dict[tuple[str, str], str]
    """(repository, platform) -> the digest of the SBOM's artifact manifest (the referrer)."""


async def attach_for_publish(
    client: RegistryClient,
    pending: Sequence[Pending],
    digests: Mapping[tuple[str, str], str],
    *,
    created: str,
) -> AttachReport:
    """Attach each pending SBOM to its pushed platform manifest (`digests[(repository, platform)]`).

    A failure does not stop the others; the report has what was attached and
    what was not.
    """
    lines: dict[int, str] = {}
    attached_digests: dict[tuple[str, str], str] = {}
    failures: list[str] = []

    async def one(index: int, item: Pending) -> None:
        job = item.job
        name = job.repository.name
        digest = digests.get((name, item.target.platform))
        if digest is None:
            failures.append(f"{name} {item.target.platform}: its platform manifest was not found")
            return
        subject = Subject(name, item.target, version=job.version, digest=digest)
        try:
            text = render(build_document(job.spec, subject, item.contents))
            attached = await _referrers.attach(
                client,
                job.repository,
                digest,
                text.encode(),
                artifact_type=MEDIA_TYPE,
                annotations={"org.opencontainers.image.created": created},
            )
        except BrokkrError as e:
            failures.append(f"{name}@{digest} ({item.target.platform}): {e}")
            return
        attached_digests[(name, item.target.platform)] = attached.digest
        lines[index] = (
            f"# sbom {item.target.platform} {name}@{digest}: {name}@{attached.digest} "
            f"({attached.via})"
        )

    async with anyio.create_task_group() as tg:
        for index, item in enumerate(pending):
            tg.start_soon(one, index, item)
    return AttachReport([lines[i] for i in sorted(lines)], sorted(failures), attached_digests)
