"""Checking an image's cosign-format signatures against a public key (`verify`).

For the address given, the index (or single manifest) and every platform
manifest in it (attestation manifests left out) must each carry, under its
`sha256-<hex>.sig` tag, at least one signature that

- verifies with the public key (ECDSA P-256, SHA-256, over the exact payload
  blob), and
- whose payload is a cosign container image signature naming that very
  manifest digest and the image's own repository (the `matchRepository` rule of
  containers/image policies).

This is what `cosign verify --key` (with `--insecure-ignore-tlog`) and a
containers/image `sigstoreSigned` policy check. Each manifest is reported as
signed, unsigned (no signature stored at all) or failed (signatures stored,
none valid for this key and this manifest).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ci.access import RegistryAccess
from ci.concurrency import run_all
from ci.errors import BrokkrError
from ci.registry.client import DOCKER_MANIFEST, OCI_MANIFEST, RegistryClient
from ci.rules.reference import ImageReference, parse_reference
from ci.supply_chain.signing import (
    MAX_PAYLOAD_BYTES,
    MAX_SIGNATURE_LAYERS,
    SIGNATURE_ANNOTATION,
    SIGNATURE_TYPE,
    signature_layers,
    signature_tag,
    signature_valid,
)


class Verdict(enum.Enum):
    """What `verify` says of one manifest (the value is the report's word)."""

    SIGNED = "signed"
    """A signature by the key names this manifest and this repository."""
    UNSIGNED = "unsigned"
    """No signature is stored for it."""
    FAILED = "failed"
    """Signatures are stored, none valid for this key, this manifest and this repository."""


@dataclass(frozen=True)
class ManifestCheck:
    """The verdict on one manifest: `signed`, `unsigned` or `failed`, and why."""

    what: str
    """`index`, `manifest` (a single-platform image) or the platform, e.g. `linux/arm64`."""
    digest: str
    status: Verdict
    detail: str = ""

    def line(self) -> str:
        """`what digest status[: detail]`, one row of the report."""
        text = f"{self.what:<12} {self.digest}  {self.status.value}"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass(frozen=True)
class VerifyReport:
    """Every manifest of one image and its verdict."""

    reference: ImageReference
    checks: tuple[ManifestCheck, ...]

    @property
    def ok(self) -> bool:
        """Whether every manifest is signed by the key."""
        return all(c.status is Verdict.SIGNED for c in self.checks)

    def text(self) -> str:
        """The image address, then one row per manifest."""
        return "\n".join([str(self.reference), *(f"  {c.line()}" for c in self.checks)])

    def raise_unless_ok(self) -> None:
        """A `BrokkrError` with the whole report when a manifest is unsigned or fails."""
        if self.ok:
            return
        bad = [c.what for c in self.checks if c.status is not Verdict.SIGNED]
        msg = (
            f"{self.reference} is not fully signed by this key ({', '.join(bad)}: unsigned "
            f"or failing):\n" + "\n".join(f"  {c.line()}" for c in self.checks)
        )
        raise BrokkrError(msg)


async def verify_address(
    ref: ImageReference,
    public_key: ec.EllipticCurvePublicKey,
    access: RegistryAccess,
) -> str:
    """`verify`: the report when every manifest of `ref` is signed, else a `BrokkrError`.

    `access`: the login and `--registry-service` route to `ref`'s registry.
    """
    async with access.client() as client:
        with client.operation(ref.registry, f"verifying the signatures of {ref}"):
            report = await verify_image(client, ref, public_key)
    report.raise_unless_ok()
    return report.text()


async def verify_image(
    client: RegistryClient, ref: ImageReference, public_key: ec.EllipticCurvePublicKey
) -> VerifyReport:
    """Check the signatures of `ref`'s index (or manifest) and of every platform manifest."""
    described = await client.inspect(ref)
    repository = ImageReference(ref.registry, ref.repository)
    targets: list[tuple[str, str]] = []
    if described.media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
        targets.append((described.platforms[0].platform, described.digest))
    else:
        targets.append(("index", described.digest))
        targets.extend((p.platform, p.digest) for p in described.platforms)
    checks = await run_all(
        [
            lambda w=what, d=digest: check_manifest(client, repository, d, public_key, w)
            for what, digest in targets
        ]
    )
    return VerifyReport(ref, tuple(checks))


async def check_manifest(
    client: RegistryClient,
    repository: ImageReference,
    digest: str,
    public_key: ec.EllipticCurvePublicKey,
    what: str,
) -> ManifestCheck:
    """The verdict on `repository@digest`: is one of its stored signatures valid for the key?"""
    tag = signature_tag(digest)
    stored = await client.fetch_manifest_or_none(repository.with_tag(tag))
    if stored is None:
        return ManifestCheck(what, digest, Verdict.UNSIGNED, f"no signature (no tag {tag})")
    signatures = signature_layers(stored)
    if signatures is None:
        return ManifestCheck(what, digest, Verdict.FAILED, f"{tag} is not a signature image")
    if not signatures:
        return ManifestCheck(what, digest, Verdict.UNSIGNED, f"{tag} holds no cosign signature")
    if len(signatures) > MAX_SIGNATURE_LAYERS:
        return ManifestCheck(
            what,
            digest,
            Verdict.FAILED,
            f"{tag} holds {len(signatures)} signatures; not reading them",
        )
    problems: list[str] = []
    for layer in signatures:
        problem = await _check_layer(client, repository, digest, public_key, layer)
        if problem is None:
            return ManifestCheck(what, digest, Verdict.SIGNED)
        problems.append(problem)
    count = f"{len(signatures)} signature{'s' if len(signatures) > 1 else ''}"
    return ManifestCheck(
        what, digest, Verdict.FAILED, f"{count}, none valid: " + "; ".join(sorted(set(problems)))
    )


async def _check_layer(
    client: RegistryClient,
    repository: ImageReference,
    digest: str,
    public_key: ec.EllipticCurvePublicKey,
    layer: Mapping[str, Any],
) -> str | None:
    """What is wrong with `layer` as a signature of `digest` by the key; None when it is one."""
    annotations = layer.get("annotations")
    signature = annotations.get(SIGNATURE_ANNOTATION) if isinstance(annotations, Mapping) else None
    if not isinstance(signature, str):
        return "a layer without a signature annotation (keyless signatures need cosign)"
    size, blob_digest = layer.get("size"), layer.get("digest")
    malformed = not isinstance(size, int) or isinstance(size, bool) or size < 0
    if malformed or not isinstance(blob_digest, str):
        return "a malformed signature layer"
    if size > MAX_PAYLOAD_BYTES:
        return f"a payload larger than {MAX_PAYLOAD_BYTES} bytes (not read)"
    try:
        # Exactly the size the layer gives: no more bytes are read than that.
        payload = await client.get_blob(repository, blob_digest, size)
    except BrokkrError as e:
        return f"its payload could not be read ({e})"
    if not signature_valid(public_key, payload, signature):
        return "not signed by this key, or the signature does not match its payload"
    return _check_payload(payload, repository, digest)


def _check_payload(payload: bytes, repository: ImageReference, digest: str) -> str | None:
    """What the (authentic) payload claims instead of this image; None when it claims it."""
    try:
        document = json.loads(payload)
        critical = document["critical"]
        kind = critical["type"]
        signed_digest = critical["image"]["docker-manifest-digest"]
        identity = critical["identity"]["docker-reference"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return "a payload that is not a cosign simple-signing document"
    if kind != SIGNATURE_TYPE:
        return f"a payload of type {kind!r}, not {SIGNATURE_TYPE!r}"
    if signed_digest != digest:
        return f"a signature by this key for another manifest ({signed_digest})"
    try:
        signed = parse_reference(str(identity))
    except BrokkrError:
        return f"a signature naming an unreadable repository {identity!r}"
    if (signed.registry, signed.repository) != (repository.registry, repository.repository):
        return f"a signature by this key for another repository ({identity})"
    return None
