"""What `dagger call inspect` returns, and the glue from Dagger arguments to the client.

The protocol lives in ``_registry``; this module only turns its results into
Dagger object types (so ``dagger call inspect --address … digest`` can chain a
field) and readable text.
"""

from collections.abc import Mapping
from typing import Annotated

from dagger import Doc, field, function, object_type

from ci.access import RegistryAccess
from ci.concurrency import run_all
from ci.registry import referrers as _referrers
from ci.registry.client import ImageDescription, RegistryClient
from ci.registry.text import markdown_cell
from ci.rules.reference import ImageReference
from ci.rules.sizes import reference_size
from ci.supply_chain import signing as _signing
from ci.supply_chain.cyclonedx import MEDIA_TYPE as SBOM_MEDIA_TYPE

__all__ = [
    "ImageInfo",
    "PlatformImage",
    "format_megabytes",
    "image_info",
    "inspect_address",
    "repository_tags",
    "size_table",
]

SIGNATURE_DOC = (
    "Whether a cosign signature is stored for this manifest (its sha256-<hex>.sig tag holds "
    "a cosign signature image); not checked against any key: `verify` does that"
)

BYTES_PER_MB = 1_000_000
"""Sizes are reported in decimal megabytes, as Docker and GHCR show them."""


def format_megabytes(size: int) -> str:
    """``28_400_000`` → ``28.4 MB`` (decimal megabytes, one decimal)."""
    return f"{size / BYTES_PER_MB:.1f} MB"


@object_type
class PlatformImage:
    """One platform of an image in a registry."""

    platform: Annotated[str, Doc("The platform, os/arch[/variant], e.g. linux/arm64")] = field()
    digest: Annotated[str, Doc("The digest of this platform's manifest")] = field()
    size: Annotated[int, Doc("Compressed size in bytes: the config plus every layer")] = field()
    sbom: Annotated[
        bool,
        Doc(
            "Whether a CycloneDX SBOM refers to this manifest (an OCI referrer, found through "
            "the referrers API or its sha256-<hex> fallback tag)"
        ),
    ] = field(default=False)
    signature: Annotated[bool, Doc(SIGNATURE_DOC)] = field(default=False)


@object_type
class ImageInfo:
    """An image as its registry describes it: digest, media type, platforms and sizes."""

    address: Annotated[str, Doc("The address that was inspected, normalised")] = field()
    digest: Annotated[
        str, Doc("The digest the address resolves to (the index digest for multi-platform images)")
    ] = field()
    media_type: Annotated[
        str, Doc("The media type of that manifest: an OCI index, a Docker manifest list, …")
    ] = field()
    platforms: Annotated[
        list[PlatformImage], Doc("One entry per platform; attestation manifests are left out")
    ] = field(default=list)
    signature: Annotated[
        bool,
        Doc(
            "Whether a cosign signature is stored for `digest` (the index, or the single "
            "manifest): its sha256-<hex>.sig tag holds a cosign signature image; not checked "
            "against any key: `verify` does that"
        ),
    ] = field(default=False)

    @function
    def summary(self) -> str:
        """A readable description: address, digest, media type, whether the digest has a
        cosign signature stored, and a row per platform (size, SBOM, signature, digest)."""
        lines = [
            f"address:    {self.address}",
            f"digest:     {self.digest}",
            f"media type: {self.media_type}",
            f"signature:  {_yes(self.signature)}",
            "",
        ]
        rows = [("PLATFORM", "SIZE", "SBOM", "SIGNATURE", "DIGEST")] + [
            (
                p.platform,
                format_megabytes(p.size),
                _yes(p.sbom),
                _yes(p.signature),
                p.digest,
            )
            for p in self.platforms
        ]
        width_platform = max(len(row[0]) for row in rows)
        width_size = max(len(row[1]) for row in rows)
        lines += [
            f"{platform:<{width_platform}}  {size:>{width_size}}  {sbom:<4}  {signature:<9}  "
            f"{digest}"
            for platform, size, sbom, signature, digest in rows
        ]
        return "\n".join(lines) + "\n"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def image_info(
    description: ImageDescription,
    sboms: Mapping[str, bool] | None = None,
    signatures: Mapping[str, bool] | None = None,
) -> ImageInfo:
    """The Dagger object for what the registry client found.

    `sboms` and `signatures` say, by manifest digest, whether an SBOM refers to
    it and whether a cosign signature is stored for it.
    """
    sboms, signatures = sboms or {}, signatures or {}
    return ImageInfo(
        address=str(description.reference),
        digest=description.digest,
        media_type=description.media_type,
        platforms=[
            PlatformImage(
                platform=p.platform,
                digest=p.digest,
                size=p.size,
                sbom=sboms.get(p.digest, False),
                signature=signatures.get(p.digest, False),
            )
            for p in description.platforms
        ],
        signature=signatures.get(description.digest, False),
    )


async def sbom_attached(client: RegistryClient, description: ImageDescription) -> dict[str, bool]:
    """Whether each platform manifest of `description` has an SBOM referrer, by digest."""
    found: dict[str, bool] = {}
    repository = description.reference

    async def one(digest: str) -> None:
        referrers = await _referrers.find(client, repository, digest, artifact_type=SBOM_MEDIA_TYPE)
        found[digest] = bool(referrers)

    await run_all([lambda d=p.digest: one(d) for p in description.platforms])
    return found


async def signatures_stored(
    client: RegistryClient, description: ImageDescription
) -> dict[str, bool]:
    """Whether a cosign signature is stored for the digest of `description` and for each of
    its platform manifests, by digest.

    Stored means: the tag `sha256-<hex>.sig` exists in the image's repository and
    holds an image manifest with at least one cosign simple-signing layer. No key
    is checked here (`verify` does that).
    """
    found: dict[str, bool] = {}
    repository = description.reference

    async def one(digest: str) -> None:
        stored = await client.fetch_manifest_or_none(
            repository.with_tag(_signing.signature_tag(digest))
        )
        found[digest] = stored is not None and bool(_signing.signature_layers(stored))

    digests = dict.fromkeys([description.digest, *(p.digest for p in description.platforms)])
    await run_all([lambda d=d: one(d) for d in digests])
    return found


def size_table(info: ImageInfo, *, reference: bool = False) -> str:
    """The image size table: one Markdown row per platform, compressed MB with 1 decimal.

    Cells are cleaned (no control characters, ``|`` escaped), so whatever a
    registry calls a platform stays in its cell. With ``reference`` a fourth
    column gives Brokkr's documented size of that image and architecture
    (``ci.rules.sizes``; ``-`` when it documents none).

    ::

        | Image | Platform | Compressed size |
        |---|---|---|
        | ghcr.io/colliery-io/brokkr-broker:1.2.3 | linux/amd64 | 28.4 MB |
    """
    header = "| Image | Platform | Compressed size |"
    rule = "|---|---|---|"
    if reference:
        header += " Brokkr's reference |"
        rule += "---|"
    lines = [header, rule]
    for p in info.platforms:
        row = (
            f"| {markdown_cell(info.address)} | {markdown_cell(p.platform)} | "
            f"{format_megabytes(p.size)} |"
        )
        if reference:
            row += f" {reference_size(info.address, p.platform) or '-'} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


async def inspect_address(
    ref: ImageReference, access: RegistryAccess, *, supply_chain: bool = True
) -> ImageInfo:
    """Describe the image ``ref`` names (see ``RegistryClient.inspect``), reached through
    ``access`` (login and ``--registry-service``). With
    ``supply_chain=False`` the SBOM and signature lookups (a referrers request
    and a signature-tag request per manifest) are skipped and every ``sbom``
    and ``signature`` is False: for callers that show neither, such as ``sizes``.
    """
    async with access.client() as client:
        # One deadline for the whole inspection, the SBOM lookups included.
        with client.operation(ref.registry, f"inspecting {ref}"):
            description = await client.inspect(ref)
            if not supply_chain:
                return image_info(description)
            sboms: dict[str, bool] = {}
            signatures: dict[str, bool] = {}

            async def find_sboms() -> None:
                sboms.update(await sbom_attached(client, description))

            async def find_signatures() -> None:
                signatures.update(await signatures_stored(client, description))

            await run_all([find_sboms, find_signatures])
            return image_info(description, sboms, signatures)


async def repository_tags(repository: ImageReference, access: RegistryAccess) -> list[str]:
    """Every tag of ``repository`` (no tag or digest), sorted, reached through ``access``."""
    async with access.client() as client:
        return sorted(await client.list_tags(repository))
