"""Manifests and indexes: media types, what a well-formed one is, reading and pushing them.

A manifest read is checked before anything trusts it: its bytes hash to the
digest the registry names and to the digest asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ci.errors import BrokkrError
from ci.registry.api import RegistryApi
from ci.registry.documents import parse_json
from ci.registry.limits import BodyLimit
from ci.registry.replies import Reply, error_codes, status_text
from ci.registry.text import clean
from ci.rules.reference import ImageReference, validate_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = INDEX_MEDIA_TYPES | IMAGE_MEDIA_TYPES
ACCEPT_MANIFESTS = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

_ATTESTATION_ANNOTATION = "vnd.docker.reference.type"


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry served it, digest verified."""

    reference: ImageReference
    digest: str
    media_type: str
    body: bytes = field(repr=False)
    document: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def is_index(self) -> bool:
        """Whether this is a multi-platform index (OCI index or Docker manifest list)."""
        return self.media_type in INDEX_MEDIA_TYPES


def hash_of(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def sha256_digest(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of a blob or manifest body."""
    return hash_of("sha256", data)


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    """The OCI descriptor of ``data``: media type, size and sha256 digest."""
    return {"mediaType": media_type, "size": len(data), "digest": sha256_digest(data)}


def platform_string(platform: Mapping[str, Any], where: str) -> str:
    parts = []
    for key in ("os", "architecture", "variant"):
        value = platform.get(key)
        if value is None or value == "":
            if key == "variant":
                continue
            value = "unknown"
        if not isinstance(value, str):
            raise BrokkrError(f"{where} gives a platform {key} that is not a string")
        parts.append(clean(value, 64))
    return "/".join(parts)


def is_attestation(descriptor: Mapping[str, Any]) -> bool:
    annotations = descriptor.get("annotations")
    if isinstance(annotations, dict) and annotations.get(_ATTESTATION_ANNOTATION) == (
        "attestation-manifest"
    ):
        return True
    platform = descriptor.get("platform")
    return isinstance(platform, dict) and (
        platform.get("os") == "unknown" and platform.get("architecture") == "unknown"
    )


def descriptor_size(descriptor: Any, where: str) -> int:
    size = descriptor.get("size") if isinstance(descriptor, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BrokkrError(f"{where}: a descriptor has no valid size")
    return size


def descriptor_digest(descriptor: Any, where: str) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str):
        raise BrokkrError(f"{where}: a descriptor has no digest")
    try:
        return validate_digest(digest)
    except BrokkrError:
        raise BrokkrError(
            f"{where}: a descriptor has an invalid digest {clean(digest, 80)!r}"
        ) from None


def check_unambiguous(document: Mapping[str, Any], media_type: str, what: str) -> None:
    """Refuse a document that reads as both a manifest and an index (CVE-2021-41190).

    An index has ``manifests`` and no ``config`` or ``layers``; an image manifest
    has ``config``/``layers`` and no ``manifests``; the media type, when it is
    one of the four, must match the shape.
    """
    has_manifests = "manifests" in document
    has_image_parts = "layers" in document or "config" in document
    wrong = (
        (has_manifests and has_image_parts)
        or (media_type in INDEX_MEDIA_TYPES and has_image_parts)
        or (media_type in IMAGE_MEDIA_TYPES and has_manifests)
    )
    if wrong:
        raise BrokkrError(
            f"{what} is ambiguous: it has "
            + ", ".join(k for k in ("manifests", "config", "layers") if k in document)
            + f" and says it is {clean(media_type, 100) or 'of no media type'}; refusing it"
        )


def check_stored_digest(header: str | None, data: bytes, what: str) -> None:
    """Refuse a push whose answer names a digest ``data`` does not hash to (any algorithm)."""
    if not header:
        return
    try:
        validate_digest(header.strip())
    except BrokkrError:
        raise BrokkrError(
            f"pushing {what}: the registry says it stored {clean(header, 80)!r}, which is not "
            "a valid digest"
        ) from None
    stored = header.strip()
    actual = hash_of(stored.split(":", 1)[0], data)
    if actual != stored:
        raise BrokkrError(
            f"digest mismatch pushing {what}: the registry says it stored {stored} but what "
            f"was sent hashes to {actual}"
        )


class Manifests(RegistryApi):
    """Reading and pushing manifests and indexes."""

    async def get_manifest(self, ref: ImageReference, size: int | None = None) -> Manifest:
        """Fetch the manifest or index ``ref`` names (at most ``limits.manifest_bytes``).

        The body's sha256 must equal the registry's ``Docker-Content-Digest`` and,
        for a digest reference, the digest asked for. ``size`` is what the
        descriptor pointing at it gives (an index entry): the body must have
        exactly that many bytes, and no more are read.
        """
        with self.operation(ref.registry, f"reading the manifest of {ref}"):
            manifest = await self._get_manifest(ref, missing_ok=False, size=size)
        assert manifest is not None
        return manifest

    async def fetch_manifest_or_none(self, ref: ImageReference) -> Manifest | None:
        """Like ``get_manifest``, but None when the registry answers 404.

        For read-modify-write of an index under a tag (``sha256-<hex>``,
        ``sha256-<hex>.sig``): ``body``, ``media_type`` and ``digest`` of the
        result are what the registry holds now.
        """
        with self.operation(ref.registry, f"reading the manifest of {ref}"):
            return await self._get_manifest(ref, missing_ok=True)

    async def resolve_digest(self, ref: ImageReference) -> str:
        """The digest a tag (or digest) reference points at, verified."""
        return (await self.get_manifest(ref)).digest

    async def push_manifest(
        self, ref: ImageReference, reference: str, body: bytes, media_type: str
    ) -> str:
        """Store ``body`` (of ``media_type``) as ``ref``'s repository's manifest ``reference``.

        ``reference`` is a tag or a digest; its blobs and child manifests must be
        pushed first. Returns the manifest's digest (the sha256 of ``body``).
        When the registry names the digest it stored (``Docker-Content-Digest``,
        in any algorithm it chooses), ``body`` must hash to it in that algorithm;
        a digest that is not a valid ``sha256:``/``sha512:`` one is refused too.
        A body over ``limits.manifest_bytes`` is refused before anything is sent.
        """
        digest, _ = await self._put_manifest(ref, reference, body, media_type)
        return digest

    async def push_referrer(
        self, ref: ImageReference, body: bytes, media_type: str
    ) -> tuple[str, str | None]:
        """Push a manifest that has a ``subject`` (by its digest); also say if it was indexed.

        Returns the digest (as ``push_manifest``) and the registry's ``OCI-Subject``
        answer header: a registry with the referrers API names the subject there,
        and one without it sends none (the client then keeps the referrers tag).
        """
        return await self._put_manifest(ref, hash_of("sha256", body), body, media_type)

    async def _put_manifest(
        self, ref: ImageReference, reference: str, body: bytes, media_type: str
    ) -> tuple[str, str | None]:
        if reference.startswith(("sha256:", "sha512:")):
            target = ref.with_digest(validate_digest(reference))
        else:
            target = ref.with_tag(reference)
        limit = self._limits.manifest_bytes
        if len(body) > limit:
            raise BrokkrError(
                f"the manifest for {target} is {len(body)} bytes, over "
                f"{BodyLimit.named(limit, 'manifests and indexes').text}; not pushing it"
            )
        digest = hash_of("sha256", body)
        if target.digest and hash_of(target.digest.split(":", 1)[0], body) != target.digest:
            raise BrokkrError(f"the manifest for {target} does not hash to {target.digest}")
        with self.operation(ref.registry, f"pushing the manifest {target}"):
            reply = await self._request(
                "PUT",
                f"{ref.base_url}/v2/{ref.repository}/manifests/{reference}",
                ref=ref,
                limit=BodyLimit.named(self._limits.small_body_bytes, "upload answers"),
                what="a manifest upload",
                headers={"Content-Type": media_type},
                content=body,
                push=True,
            )
            if reply.status not in (201, 204):
                raise BrokkrError(f"pushing the manifest {target} failed: {status_text(reply)}")
            check_stored_digest(
                reply.headers.get("docker-content-digest"), body, f"the manifest {target}"
            )
            return digest, reply.headers.get("oci-subject")

    async def _get_manifest(
        self, ref: ImageReference, *, missing_ok: bool, size: int | None = None
    ) -> Manifest | None:
        limit = BodyLimit.named(self._limits.manifest_bytes, "manifests and indexes")
        if size is not None:
            if size > limit.size:
                raise BrokkrError(
                    f"the manifest of {ref} is {size} bytes by its descriptor, over "
                    f"{limit.text}; refusing it"
                )
            limit = BodyLimit(size, f"the size its descriptor gives ({size} bytes)")
        reply = await self._request(
            "GET",
            f"{ref.base_url}/v2/{ref.repository}/manifests/{ref.reference}",
            ref=ref,
            limit=limit,
            what=f"the manifest of {ref}",
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        if reply.status == 404:
            if missing_ok:
                return None
            raise await self._not_found(ref, reply)
        self._expect_ok(reply, ref, "reading the manifest")
        if size is not None and len(reply.body) != size:
            raise BrokkrError(
                f"the manifest of {ref} is {len(reply.body)} bytes but its descriptor says {size}"
                " (clients refuse to pull it)"
            )
        digest = self._verify_digest(ref, reply.body, reply.headers.get("docker-content-digest"))
        document = parse_json(
            reply.body, f"the manifest of {ref}", max_values=self._limits.json_values
        )
        declared = document.get("mediaType")
        if declared is not None and not isinstance(declared, str):
            raise BrokkrError(f"the manifest of {ref} has a mediaType that is not a string")
        served = reply.headers.get("content-type", "").split(";")[0].strip().lower()
        if declared and served in MANIFEST_MEDIA_TYPES and served != declared:
            raise BrokkrError(
                f"the manifest of {ref} says it is a {clean(declared, 100)} but the registry "
                f"served it as {served}; refusing an ambiguous manifest"
            )
        media_type = declared or served
        check_unambiguous(document, media_type, f"the manifest of {ref}")
        if media_type not in MANIFEST_MEDIA_TYPES:
            if "manifests" in document:
                media_type = OCI_INDEX
            elif "config" in document and "layers" in document:
                media_type = OCI_MANIFEST
            else:
                raise BrokkrError(
                    f"{ref} has a manifest of unsupported type "
                    f"{clean(media_type, 100) or 'unknown'!r}; supported: OCI image "
                    "index/manifest, Docker manifest list/schema 2"
                )
        return Manifest(ref, digest, media_type, reply.body, document)

    @staticmethod
    def _verify_digest(ref: ImageReference, body: bytes, header: str | None) -> str:
        if header:
            try:
                validate_digest(header)
            except BrokkrError:
                raise BrokkrError(
                    f"the registry sent an invalid Docker-Content-Digest for {ref}: "
                    f"{clean(header, 80)!r}"
                ) from None
            actual = hash_of(header.split(":", 1)[0], body)
            if actual != header:
                raise BrokkrError(
                    f"digest mismatch for {ref}: the registry says {header} but the manifest "
                    f"it sent hashes to {actual}"
                )
        if ref.digest:
            actual = hash_of(ref.digest.split(":", 1)[0], body)
            if actual != ref.digest:
                raise BrokkrError(
                    f"digest mismatch for {ref}: asked for {ref.digest} but the manifest the "
                    f"registry sent hashes to {actual}"
                )
            return ref.digest
        return header or hash_of("sha256", body)

    async def _not_found(self, ref: ImageReference, reply: Reply) -> BrokkrError:
        """Say whether the repository or the tag/digest is missing.

        Registries such as distribution v2 answer MANIFEST_UNKNOWN for both, so
        when the code does not tell, the repository's tag list does.
        """
        repository_missing = "NAME_UNKNOWN" in error_codes(reply)
        if not repository_missing:
            try:
                listing = await self._request(
                    "GET",
                    f"{ref.base_url}/v2/{ref.repository}/tags/list?n=1",
                    ref=ref,
                    limit=BodyLimit.named(self._limits.manifest_bytes, "tag list pages"),
                    what=f"the tag list of {ref.name}",
                )
            except BrokkrError:
                listing = None
            repository_missing = listing is not None and listing.status == 404
        if repository_missing:
            return BrokkrError(
                f"not found: {ref} (the registry has no repository {ref.repository})"
            )
        if ref.digest:
            return BrokkrError(f"not found: {ref} (no manifest with digest {ref.digest})")
        return BrokkrError(f"not found: {ref} (no tag {ref.tag} in {ref.name})")
