"""What `dagger call inspect` returns, and the glue from Dagger arguments to the client.

The protocol lives in ``_registry``; this module only turns its results into
Dagger object types (so ``dagger call inspect --address … digest`` can chain a
field) and readable text, and turns a username plus a ``Secret`` into
``Credentials``.
"""

from typing import Annotated

import dagger
from dagger import Doc, field, function, object_type

from ci._errors import BrokkrError
from ci._http import markdown_cell
from ci._reference import parse_reference, parse_repository
from ci._registry import Credentials, ImageDescription, RegistryClient

__all__ = [
    "ImageInfo",
    "PlatformImage",
    "credentials_from",
    "format_megabytes",
    "image_info",
    "inspect_address",
    "repository_tags",
    "size_table",
]

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

    @function
    def summary(self) -> str:
        """A readable description: address, digest, media type and a row per platform."""
        lines = [
            f"address:    {self.address}",
            f"digest:     {self.digest}",
            f"media type: {self.media_type}",
            "",
        ]
        rows = [("PLATFORM", "SIZE", "DIGEST")] + [
            (p.platform, format_megabytes(p.size), p.digest) for p in self.platforms
        ]
        width_platform = max(len(row[0]) for row in rows)
        width_size = max(len(row[1]) for row in rows)
        lines += [
            f"{platform:<{width_platform}}  {size:>{width_size}}  {digest}"
            for platform, size, digest in rows
        ]
        return "\n".join(lines) + "\n"


def image_info(description: ImageDescription) -> ImageInfo:
    """The Dagger object for what the registry client found."""
    return ImageInfo(
        address=str(description.reference),
        digest=description.digest,
        media_type=description.media_type,
        platforms=[
            PlatformImage(platform=p.platform, digest=p.digest, size=p.size)
            for p in description.platforms
        ],
    )


def size_table(info: ImageInfo) -> str:
    """The image size table: one Markdown row per platform, compressed MB with 1 decimal.

    Cells are cleaned (no control characters, ``|`` escaped), so whatever a
    registry calls a platform stays in its cell.

    ::

        | Image | Platform | Compressed size |
        |---|---|---|
        | ghcr.io/colliery-io/brokkr-broker:1.2.3 | linux/amd64 | 28.4 MB |
    """
    lines = ["| Image | Platform | Compressed size |", "|---|---|---|"]
    lines += [
        f"| {markdown_cell(info.address)} | {markdown_cell(p.platform)} | "
        f"{format_megabytes(p.size)} |"
        for p in info.platforms
    ]
    return "\n".join(lines) + "\n"


async def credentials_from(username: str, password: dagger.Secret | None) -> Credentials | None:
    """Registry credentials from a username and a Dagger secret; None for anonymous.

    The secret's plaintext is read only when one is given. A username without a
    password, or a password without a username, is an error.
    """
    if password is None:
        if username:
            raise BrokkrError(
                f"a username ({username!r}) was given without a password: pass --password "
                "as a secret (e.g. env://GITHUB_TOKEN), or neither for anonymous access"
            )
        return None
    if not username:
        raise BrokkrError(
            "a password was given without a username: pass --username too "
            "(for GHCR, your GitHub user name)"
        )
    plaintext = await password.plaintext()
    if not plaintext:
        raise BrokkrError(f"the password secret for {username!r} is empty")
    return Credentials(username, plaintext)


async def inspect_address(address: str, *, credentials: Credentials | None = None) -> ImageInfo:
    """Parse ``address`` and describe the image it names (see ``RegistryClient.inspect``)."""
    ref = parse_reference(address)
    async with RegistryClient(credentials=credentials) as client:
        return image_info(await client.inspect(ref))


async def repository_tags(repository: str, *, credentials: Credentials | None = None) -> list[str]:
    """Parse ``repository`` (no tag or digest) and list every tag it has, sorted."""
    ref = parse_repository(repository)
    async with RegistryClient(credentials=credentials) as client:
        return sorted(await client.list_tags(ref))
