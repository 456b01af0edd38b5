"""Cosign-format image signatures made with a key: the payload, the key, the storage.

What `publish --signing-key` writes is what `cosign sign --key` (without a
transparency log upload) writes, so `cosign verify --key`, containers/image
(`skopeo`, `podman`, CRI-O) with a `sigstoreSigned` policy, Kyverno and the
sigstore policy-controller all accept it:

- the **payload** is cosign's "simple signing" JSON naming the repository and
  the signed manifest digest (`simple_signing_payload`);
- the **signature** is ECDSA P-256 with SHA-256 over the exact payload bytes,
  DER-encoded, then base64 (`SigningKey.sign`);
- both are stored as an OCI image manifest under the tag `sha256-<hex>.sig` in
  the image's own repository: one layer per signature, the layer blob being
  the payload (media type `application/vnd.dev.cosign.simplesigning.v1+json`)
  and its annotation `dev.cosignproject.cosign/signature` the signature; the
  config is the one go-containerregistry writes for such an image (empty
  architecture and os, one `diff_ids` entry and one history entry per layer).

Signatures already stored under that tag (other keys, keyless ones) are kept
and ours is appended; a payload this key has already signed is not added again.

Keys: a PEM EC P-256 private key (PKCS#8 `BEGIN PRIVATE KEY` or SEC1
`BEGIN EC PRIVATE KEY`), optionally encrypted with a password (`BEGIN
ENCRYPTED PRIVATE KEY`). cosign's own encrypted format (`BEGIN ENCRYPTED
SIGSTORE PRIVATE KEY`) is refused with a clear message: it is sealed with NaCl
secretbox (XSalsa20-Poly1305), which `cryptography` does not provide. The key's
text never appears in an error message, a log line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagger
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ci.errors import BrokkrError
from ci.inputs import read_secret
from ci.registry.client import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Manifest,
    RegistryClient,
    descriptor,
    sha256_digest,
)
from ci.rules.reference import ImageReference, validate_digest

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
"""Media type of a signature layer: its blob is the signed payload."""
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
"""Layer annotation holding the base64 DER ECDSA signature over the payload."""
SIGNATURE_TYPE = "cosign container image signature"
"""`critical.type` of every cosign payload."""
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
ZERO_TIME = "0001-01-01T00:00:00Z"
"""What go-containerregistry writes as each signature layer's history time."""

MAX_KEY_BYTES = 64 * 1024
"""A PEM key is a few hundred bytes; anything far larger is not one."""
MAX_PAYLOAD_BYTES = 64 * 1024
"""Signature payloads are a few hundred bytes; larger layers are not read."""
MAX_CONFIG_BYTES = 1024 * 1024
"""The config of a signature image grows by ~100 bytes per signature."""
MAX_SIGNATURE_LAYERS = 1000
"""More signatures than this under one tag are refused rather than read."""

ENCRYPTED_COSIGN_KEY = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
COSIGN_KEY_HINT = (
    "cosign's encrypted key format (BEGIN ENCRYPTED SIGSTORE PRIVATE KEY) is not "
    "supported: it is sealed with NaCl secretbox, which the module's crypto library "
    "(cryptography) does not provide. Use a PEM EC P-256 key instead, e.g. "
    "`openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt` "
    "(add `-v2 aes-256-cbc` instead of -nocrypt and pass --signing-password to encrypt "
    "it); `cosign import-key-pair --key <that file>` makes a cosign key of the same "
    "pair, and `cosign verify --key` accepts the PEM public key as it is"
)


def signature_tag(digest: str) -> str:
    """The tag cosign stores a manifest's signatures under: `sha256-<hex>.sig`."""
    algorithm, _, hex_part = validate_digest(digest).partition(":")
    return f"{algorithm}-{hex_part}.sig"


def simple_signing_payload(repository: str, digest: str) -> bytes:
    """The bytes that are signed: cosign's simple-signing JSON for `repository@digest`.

    `repository` is `registry/namespace/name` (no tag, no digest), as cosign
    writes it into `critical.identity.docker-reference`; `optional` is null, as
    cosign writes it when no annotations are given.
    """
    document = {
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": validate_digest(digest)},
            "type": SIGNATURE_TYPE,
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SigningKey:
    """An EC P-256 private key that signs payloads; it never shows in repr or str."""

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def __repr__(self) -> str:
        return "SigningKey(<EC P-256, redacted>)"

    __str__ = __repr__

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The matching public key (what `verify --public-key` and cosign check with)."""
        return self.private_key.public_key()

    def sign(self, payload: bytes) -> str:
        """Base64 of the DER ECDSA-SHA256 signature over `payload`, as cosign annotates it."""
        der = self.private_key.sign(payload, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode("ascii")


def load_signing_key(pem: str, password: str | None = None) -> SigningKey:
    """Read `--signing-key` (and `--signing-password`): a PEM EC P-256 private key.

    Errors say what is wrong with the key without quoting any of it.
    """
    text = pem.strip()
    if not text:
        raise BrokkrError("--signing-key is empty")
    if len(text) > MAX_KEY_BYTES:
        raise BrokkrError(f"--signing-key is larger than {MAX_KEY_BYTES} bytes: not a PEM key")
    if ENCRYPTED_COSIGN_KEY in text:
        raise BrokkrError(f"--signing-key: {COSIGN_KEY_HINT}")
    if "-----BEGIN " not in text:
        raise BrokkrError(
            "--signing-key is not a PEM key: expected a -----BEGIN PRIVATE KEY----- block "
            "(EC P-256)"
        )
    if "PRIVATE KEY-----" not in text:
        raise BrokkrError(
            "--signing-key holds no private key (a public key or certificate?): publish "
            "signs with the private key; verify takes the public key"
        )
    encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text or "Proc-Type: 4,ENCRYPTED" in text
    if password and not encrypted:
        raise BrokkrError("--signing-password was given, but the --signing-key is not encrypted")
    if encrypted and not password:
        raise BrokkrError("--signing-key is encrypted: pass its password with --signing-password")
    try:
        key = serialization.load_pem_private_key(
            text.encode(), password=password.encode() if password else None
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        if encrypted:
            msg = "--signing-key could not be decrypted with --signing-password (wrong password?)"
        else:
            msg = "--signing-key could not be read: not a valid PEM private key"
        raise BrokkrError(msg) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
        raise BrokkrError(
            f"--signing-key is not an EC key (it is {kind or 'another type'}); an EC P-256 "
            "key (cosign's default) is needed"
        )
    if not isinstance(key.curve, ec.SECP256R1):
        raise BrokkrError(
            f"--signing-key is an EC key on curve {key.curve.name}; P-256 (prime256v1, "
            "cosign's default) is needed"
        )
    return SigningKey(key)


def load_public_key(pem: str, *, what: str = "--public-key") -> ec.EllipticCurvePublicKey:
    """Read a PEM EC P-256 public key (`-----BEGIN PUBLIC KEY-----`, as in cosign.pub)."""
    text = pem.strip()
    if not text:
        raise BrokkrError(f"{what} is empty")
    if len(text) > MAX_KEY_BYTES:
        raise BrokkrError(f"{what} is larger than {MAX_KEY_BYTES} bytes: not a PEM public key")
    if "PRIVATE KEY-----" in text:
        raise BrokkrError(
            f"{what} holds a private key; give the public key (cosign.pub, or "
            "`openssl ec -pubout` of the private key) and keep the private key secret"
        )
    try:
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise BrokkrError(
            f"{what} is not a PEM public key (expected -----BEGIN PUBLIC KEY-----)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BrokkrError(f"{what} is not an EC P-256 public key, the kind publish signs with")
    return key


def signature_valid(public_key: ec.EllipticCurvePublicKey, payload: bytes, signature: str) -> bool:
    """Whether `signature` (base64 DER, as annotated) is `public_key`'s over `payload`."""
    try:
        der = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(der, payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def signature_layer(payload: bytes, signature: str) -> dict[str, Any]:
    """The layer descriptor of one signature: the payload blob, annotated with the signature."""
    return {
        **descriptor(SIMPLE_SIGNING_MEDIA_TYPE, payload),
        "annotations": {SIGNATURE_ANNOTATION: signature},
    }


def signature_config(
    layers: Sequence[Mapping[str, Any]],
    *,
    created: str,
    previous: Mapping[str, Any] | None = None,
) -> bytes:
    """The config blob of a signature image holding `layers`.

    As go-containerregistry writes it for cosign: empty architecture and os,
    `rootfs.diff_ids` the layer digests (the payloads are stored uncompressed),
    one history entry per layer, an empty `config`. `created` and history come
    from the `previous` config when it matches the earlier layers.
    """
    history: list[Any] = [{"created": ZERO_TIME} for _ in layers]
    if previous is not None:
        old = previous.get("history")
        if isinstance(old, list) and len(old) == len(layers) - 1:
            history = [*old, {"created": ZERO_TIME}]
        if isinstance(previous.get("created"), str) and previous["created"]:
            created = previous["created"]
    document = {
        "architecture": "",
        "created": created,
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(layer["digest"]) for layer in layers]},
        "config": {},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def signature_manifest(
    config: bytes, layers: Sequence[Mapping[str, Any]], *, media_type: str = OCI_MANIFEST
) -> bytes:
    """The manifest of a signature image (OCI image manifest, as cosign pushes it)."""
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(OCI_CONFIG, config),
        "layers": list(layers),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def signature_layers(stored: Manifest) -> list[Mapping[str, Any]] | None:
    """The cosign signature layers of what a `sha256-<hex>.sig` tag holds.

    None when it is not a signature image (not an image manifest with a layer
    list); `[]` when it is one without a cosign simple-signing layer.
    """
    layers = stored.document.get("layers")
    if stored.media_type not in (OCI_MANIFEST, DOCKER_MANIFEST) or not isinstance(layers, list):
        return None
    return [
        layer
        for layer in layers
        if isinstance(layer, Mapping) and layer.get("mediaType") == SIMPLE_SIGNING_MEDIA_TYPE
    ]


async def sign_manifest(
    client: RegistryClient,
    repository: ImageReference,
    digest: str,
    key: SigningKey,
    *,
    created: str,
) -> bool:
    """Sign `repository@digest` and store the signature; False when this key already had.

    Reads the `sha256-<hex>.sig` tag first: existing signatures stay, ours is
    appended, and the payload blob, the new config and the manifest are pushed
    (blobs before the manifest that names them).
    """
    payload = simple_signing_payload(repository.name, digest)
    tag = signature_tag(digest)
    where = f"{repository.name}:{tag}"
    existing = await client.fetch_manifest_or_none(repository.with_tag(tag))
    layers: list[Mapping[str, Any]] = []
    previous: Mapping[str, Any] | None = None
    media_type = OCI_MANIFEST
    if existing is not None:
        layers, media_type = _existing_layers(existing.document, existing.media_type, where)
        for layer in layers:
            annotations = layer.get("annotations")
            if (
                layer.get("digest") == sha256_digest(payload)
                and isinstance(annotations, Mapping)
                and signature_valid(
                    key.public_key, payload, str(annotations.get(SIGNATURE_ANNOTATION))
                )
            ):
                return False  # this key has signed this payload already
        previous = await _previous_config(client, repository, existing.document)
    layer = signature_layer(payload, key.sign(payload))
    layers = [*layers, layer]
    config = signature_config(layers, created=created, previous=previous)
    await client.push_blob(repository, payload)
    await client.push_blob(repository, config)
    body = signature_manifest(config, layers, media_type=media_type)
    await client.push_manifest(repository, tag, body, media_type)
    return True


def _existing_layers(
    document: Mapping[str, Any], media_type: str, where: str
) -> tuple[list[Mapping[str, Any]], str]:
    layers = document.get("layers")
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST) or not isinstance(layers, list):
        raise BrokkrError(
            f"{where} exists but is not a signature image (no image manifest with layers); "
            "not overwriting it"
        )
    if len(layers) >= MAX_SIGNATURE_LAYERS:
        raise BrokkrError(f"{where} already holds {len(layers)} signatures; refusing to add more")
    if not all(
        isinstance(layer, Mapping) and isinstance(layer.get("digest"), str) for layer in layers
    ):
        raise BrokkrError(f"{where} has a malformed layer list; not overwriting it")
    return layers, media_type


async def _previous_config(
    client: RegistryClient, repository: ImageReference, document: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The existing signature image's config, when it is small and readable (else None)."""
    config = document.get("config")
    if not isinstance(config, Mapping):
        return None
    digest, size = config.get("digest"), config.get("size")
    if not isinstance(digest, str) or not isinstance(size, int) or size > MAX_CONFIG_BYTES:
        return None
    try:
        blob = await client.get_blob(repository, digest)
        parsed = json.loads(blob)
    except (BrokkrError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


async def key_from_secrets(
    signing_key: dagger.Secret | None, signing_password: dagger.Secret | None
) -> SigningKey | None:
    """Read and check `--signing-key`/`--signing-password` (None when no key is given).

    The plaintext is read here, inside the module, and goes nowhere else.
    """
    if signing_key is None:
        if signing_password is not None:
            raise BrokkrError("--signing-password was given without --signing-key")
        return None
    pem = await read_secret(signing_key, "--signing-key")
    password = None
    if signing_password is not None:
        password = await read_secret(signing_password, "--signing-password")
    return load_signing_key(pem, password)
