"""Attaching an artifact to an image as an OCI 1.1 referrer, and finding it again.

An artifact (here, an image's SBOM) is pushed as an OCI image manifest whose
`artifactType` says what it is, whose config is the empty descriptor
(`application/vnd.oci.empty.v1+json`, the two bytes `{}`), whose one layer is
the artifact, and whose `subject` is the descriptor of the manifest it
describes.

Attaching decides as the OCI distribution specification says: a registry with
the referrers API answers the push of a manifest that has a `subject` with an
`OCI-Subject` header naming that subject, and indexes it itself. Without that
header (distribution 2.8, GHCR) the client keeps the *referrers tag schema*:
an image index under the tag `<alg>-<ref>` (`sha256-<hex of the subject
digest>`; the encoded part cut to 64 characters, so `sha512-<first 64 hex>`)
that lists the referrers' descriptors. Attaching reads that index, adds the new
descriptor unless a descriptor with the same digest is there already, keeps
every other entry (other tools' signatures and attestations), and writes it
back; it then reads the tag again and repeats the merge if a concurrent writer
replaced it. Attaching the same artifact twice therefore changes nothing.

Reading (`find`) uses the referrers API only when the registry's own origin
answers `200` with an OCI image index, and the tag otherwise
(`RegistryClient.get_referrers`); a redirect of the referrers endpoint to
another origin is never followed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ci.errors import BrokkrError
from ci.registry.client import (
    MAX_REFERRERS,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    descriptor,
    sha256_digest,
)
from ci.rules.reference import ImageReference, validate_digest

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
EMPTY_DESCRIPTOR: Mapping[str, Any] = descriptor(EMPTY_MEDIA_TYPE, EMPTY_CONFIG)
"""The OCI empty descriptor, the config of an artifact manifest."""

FALLBACK_WRITES = 3
"""How many times the fallback index is merged and written when a concurrent writer races us."""


@dataclass(frozen=True)
class Attached:
    """An artifact attached to a subject manifest."""

    subject: str
    """The digest of the manifest the artifact refers to."""
    digest: str
    """The digest of the artifact manifest."""
    via: str
    """`referrers API` or `tag sha256-<hex>` (the fallback)."""


TAG_SCHEMA_REF_CHARS = 64
"""The referrers tag schema keeps this many characters of the encoded digest."""


def fallback_tag(subject_digest: str) -> str:
    """The referrers tag schema's tag for a subject: `<alg>:<hex>` → `<alg>-<hex>`.

    The encoded part is cut to 64 characters, as the specification says: a
    `sha512:` subject gets `sha512-` and the first 64 of its 128 hex digits.
    """
    validate_digest(subject_digest)
    algorithm, _, encoded = subject_digest.partition(":")
    return f"{algorithm}-{encoded[:TAG_SCHEMA_REF_CHARS]}"


def artifact_manifest(
    subject: Mapping[str, Any],
    *,
    artifact_type: str,
    blob: bytes,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """The OCI 1.1 artifact manifest for `blob` (of media type `artifact_type`) on `subject`."""
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": dict(EMPTY_DESCRIPTOR),
        "layers": [descriptor(artifact_type, blob)],
        "subject": dict(subject),
    }
    if annotations:
        document["annotations"] = dict(sorted(annotations.items()))
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def referrer_descriptor(manifest_body: bytes) -> dict[str, Any]:
    """The descriptor a referrers list holds for an artifact manifest (with its type and
    annotations, as the specification asks)."""
    document = json.loads(manifest_body)
    descriptor: dict[str, Any] = {
        "mediaType": document.get("mediaType", OCI_MANIFEST),
        "digest": sha256_digest(manifest_body),
        "size": len(manifest_body),
    }
    artifact_type = document.get("artifactType") or document.get("config", {}).get("mediaType")
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    if document.get("annotations"):
        descriptor["annotations"] = document["annotations"]
    return descriptor


def _entries(document: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    manifests = document.get("manifests", [])
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise BrokkrError(f"{where} has a malformed manifest list")
    if len(manifests) > MAX_REFERRERS:
        raise BrokkrError(f"{where} lists more than {MAX_REFERRERS} referrers; refusing it")
    return list(manifests)


def merged_index(
    existing: Mapping[str, Any] | None, descriptor: Mapping[str, Any], *, where: str
) -> bytes | None:
    """The fallback index with `descriptor` added; None when it is listed already.

    Every other entry of `existing` is kept as it was, in its order.
    """
    entries = [] if existing is None else _entries(existing, where)
    if any(entry.get("digest") == descriptor["digest"] for entry in entries):
        return None
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [*entries, dict(descriptor)],
    }
    if existing is not None and isinstance(existing.get("annotations"), dict):
        document["annotations"] = existing["annotations"]
    return json.dumps(document, separators=(",", ":")).encode()


async def attach(
    client: RegistryClient,
    repository: ImageReference,
    subject_digest: str,
    blob: bytes,
    *,
    artifact_type: str,
    annotations: Mapping[str, str] | None = None,
) -> Attached:
    """Push `blob` as an artifact referring to `repository@subject_digest`.

    The referrers tag is updated unless the registry's `OCI-Subject` answer
    says it indexed the artifact itself.

    Needs push access to the repository. Errors are `BrokkrError`s naming the
    repository and subject.
    """
    validate_digest(subject_digest)
    subject = await client.get_manifest(repository.with_digest(subject_digest))
    subject_descriptor = {
        "mediaType": subject.media_type,
        "digest": subject.digest,
        "size": len(subject.body),
    }
    body = artifact_manifest(
        subject_descriptor, artifact_type=artifact_type, blob=blob, annotations=annotations
    )
    await client.push_blob(repository, EMPTY_CONFIG)
    await client.push_blob(repository, blob)
    digest, indexed = await client.push_referrer(repository, body, OCI_MANIFEST)
    if indexed is not None and indexed.strip() == subject.digest:
        return Attached(subject_digest, digest, "referrers API")
    tag = fallback_tag(subject_digest)
    await _update_fallback(client, repository, tag, referrer_descriptor(body))
    return Attached(subject_digest, digest, f"tag {tag}")


async def _update_fallback(
    client: RegistryClient, repository: ImageReference, tag: str, descriptor: Mapping[str, Any]
) -> None:
    ref = repository.with_tag(tag)
    writes = 0
    while True:
        current = await client.fetch_manifest_or_none(ref)
        if current is not None and not current.is_index:
            raise BrokkrError(
                f"{ref} holds a {current.media_type}, not a referrers index; not overwriting it"
            )
        updated = merged_index(
            None if current is None else current.document, descriptor, where=str(ref)
        )
        if updated is None:
            return  # listed (read back after our write: another tool may have replaced it)
        if writes == FALLBACK_WRITES:
            raise BrokkrError(
                f"could not add {descriptor['digest']} to {ref}: the tag kept changing under "
                f"{FALLBACK_WRITES} writes (another tool is writing it at the same time)"
            )
        await client.push_manifest(repository, tag, updated, OCI_INDEX)
        writes += 1


async def find(
    client: RegistryClient,
    repository: ImageReference,
    subject_digest: str,
    *,
    artifact_type: str | None = None,
) -> list[dict[str, Any]]:
    """The referrers of `repository@subject_digest` (of `artifact_type` only, when given).

    The referrers API when the registry has it, else the fallback tag; an
    absent tag means no referrers.
    """
    validate_digest(subject_digest)
    listed = await client.get_referrers(repository, subject_digest)
    if listed is None:
        ref = repository.with_tag(fallback_tag(subject_digest))
        current = await client.fetch_manifest_or_none(ref)
        if current is None:
            return []
        if not current.is_index:
            raise BrokkrError(f"{ref} holds a {current.media_type}, not a referrers index")
        listed = _entries(current.document, str(ref))
    return [d for d in listed if artifact_type is None or d.get("artifactType") == artifact_type]
