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

Keys: cosign's own key file (`cosign.key` as `cosign generate-key-pair`
writes it, `BEGIN ENCRYPTED SIGSTORE PRIVATE KEY`, or the older `BEGIN
ENCRYPTED COSIGN PRIVATE KEY`) with its password, or a PEM EC P-256 private
key (PKCS#8 `BEGIN PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`), optionally
encrypted with a password (`BEGIN ENCRYPTED PRIVATE KEY`).

cosign's file is go-securesystemslib's envelope, opened as cosign opens it
(`open_cosign_key`): JSON holding the scrypt parameters and salt, the NaCl
secretbox nonce and the ciphertext; the password through scrypt gives the
32-byte secretbox key (`hashlib.scrypt`), secretbox (XSalsa20-Poly1305,
PyNaCl) gives the PKCS#8 DER private key. The scrypt parameters come from the
file, so they are bounded (`MAX_SCRYPT_WORK`) before any work: a hostile file
cannot make the module spend more than about 256 MiB and a second or two on
them. The key's text never appears in an error message, a log line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import dagger
import nacl.exceptions
import nacl.secret
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
from ci.registry.documents import parse_json
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
MAX_CONFIG_VALUES = 20 * MAX_SIGNATURE_LAYERS + 100
"""JSON values a signature config may hold: ~4 per signature plus a few; far fewer is usual."""
SIGNATURE_WRITES = 3
"""How many times the signature tag is merged and written when a concurrent signer races us."""

COSIGN_KEY_LABELS = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
"""The PEM labels of cosign's own key files (today's, and cosign before 2.0's)."""
MAX_SCRYPT_WORK = 2**21
"""Bound on scrypt's N*r*p from a cosign key file: memory is about 128*N*r bytes (256 MiB at
the bound; cosign writes N=32768, r=8, p=1: 32 MiB) and time grows with N*r*p."""


def _cosign_envelope(text: str) -> dict[str, Any]:
    """The JSON inside a cosign key file's PEM block (errors never quote the key)."""
    match = re.search(
        r"-----BEGIN (ENCRYPTED (?:SIGSTORE|COSIGN) PRIVATE KEY)-----(.*?)-----END \1-----",
        text,
        re.DOTALL,
    )
    if match is None:
        raise BrokkrError("--signing-key: cosign's key block has no matching END line")
    try:
        envelope = json.loads(base64.b64decode("".join(match.group(2).split()), validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise BrokkrError("--signing-key: cosign's key block is not valid base64 JSON") from None
    if not isinstance(envelope, dict):
        raise BrokkrError("--signing-key: cosign's key block is not a JSON object")
    return envelope


def _field(envelope: Mapping[str, Any], *path: str) -> Any:
    value: Any = envelope
    for name in path:
        value = value.get(name) if isinstance(value, Mapping) else None
    if value is None:
        raise BrokkrError(f"--signing-key: cosign's key has no {'.'.join(path)}")
    return value


def _b64(envelope: Mapping[str, Any], *path: str) -> bytes:
    value = _field(envelope, *path)
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise BrokkrError(f"--signing-key: cosign's key has a malformed {'.'.join(path)}") from None


def open_cosign_key(text: str, password: str) -> bytes:
    """The PKCS#8 DER private key sealed in a cosign key file, opened with `password`.

    Checks the envelope (scrypt, nacl/secretbox) and bounds scrypt's parameters
    before deriving anything; a wrong password is a `BrokkrError` that quotes
    neither the password nor the key.
    """
    envelope = _cosign_envelope(text)
    kdf, cipher = _field(envelope, "kdf", "name"), _field(envelope, "cipher", "name")
    if kdf != "scrypt" or cipher != "nacl/secretbox":
        raise BrokkrError(
            "--signing-key: cosign's key uses an unknown kdf or cipher (expected scrypt and "
            "nacl/secretbox)"
        )
    n, r, p = (_field(envelope, "kdf", "params", k) for k in ("N", "r", "p"))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (n, r, p)):
        raise BrokkrError("--signing-key: cosign's key has malformed scrypt parameters")
    if n < 2 or n & (n - 1):
        raise BrokkrError("--signing-key: cosign's key has a scrypt N that is not a power of 2")
    if n * r * p > MAX_SCRYPT_WORK:
        raise BrokkrError(
            f"--signing-key: cosign's key asks for scrypt N*r*p = {n * r * p}, more than the "
            f"{MAX_SCRYPT_WORK} accepted (cosign writes {32768 * 8})"
        )
    salt, nonce = _b64(envelope, "kdf", "salt"), _b64(envelope, "cipher", "nonce")
    ciphertext = _b64(envelope, "ciphertext")
    if len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise BrokkrError("--signing-key: cosign's key has a nonce of the wrong size")
    secret = hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=128 * r * (n + p + 2) + 1024 * 1024,
        dklen=nacl.secret.SecretBox.KEY_SIZE,
    )
    try:
        return nacl.secret.SecretBox(secret).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        what = "with --signing-password" if password else "without a password"
        raise BrokkrError(
            f"--signing-key (a cosign key) could not be decrypted {what} (wrong password?)"
        ) from None


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
    """Read `--signing-key` (and `--signing-password`): cosign's key file or a PEM EC P-256
    private key.

    Errors say what is wrong with the key without quoting any of it.
    """
    text = pem.strip()
    if not text:
        raise BrokkrError("--signing-key is empty")
    if len(text) > MAX_KEY_BYTES:
        raise BrokkrError(f"--signing-key is larger than {MAX_KEY_BYTES} bytes: not a PEM key")
    if any(f"-----BEGIN {label}-----" in text for label in COSIGN_KEY_LABELS):
        # cosign writes a key with an empty password when none is given; so does this.
        der = open_cosign_key(text, password or "")
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise BrokkrError("--signing-key: cosign's key holds no readable private key") from None
        return _checked(key)
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
    return _checked(key)


def _checked(key: object) -> SigningKey:
    """`key` as a `SigningKey` if it is EC P-256 (what cosign-format signatures use)."""
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
    (blobs before the manifest that names them). The tag is then read again:
    when a concurrent signer replaced it without our signature, the merge is
    redone on what it holds now, at most `SIGNATURE_WRITES` writes in all.
    """
    payload = simple_signing_payload(repository.name, digest)
    tag = signature_tag(digest)
    where = f"{repository.name}:{tag}"
    for writes in range(SIGNATURE_WRITES + 1):
        existing = await client.fetch_manifest_or_none(repository.with_tag(tag))
        layers: list[Mapping[str, Any]] = []
        previous: Mapping[str, Any] | None = None
        media_type = OCI_MANIFEST
        if existing is not None:
            layers, media_type = _existing_layers(existing.document, existing.media_type, where)
            if any(_signed_by(layer, key, payload) for layer in layers):
                return writes > 0  # ours is stored (False: this key had signed already)
            previous = await _previous_config(client, repository, existing.document)
        if writes == SIGNATURE_WRITES:
            break
        layers = [*layers, signature_layer(payload, key.sign(payload))]
        config = signature_config(layers, created=created, previous=previous)
        await client.push_blob(repository, payload)
        await client.push_blob(repository, config)
        body = signature_manifest(config, layers, media_type=media_type)
        await client.push_manifest(repository, tag, body, media_type)
    raise BrokkrError(
        f"could not store the signature of {digest} in {where}: the tag kept changing under "
        f"{SIGNATURE_WRITES} writes (another signer is writing it at the same time)"
    )


def _signed_by(layer: Mapping[str, Any], key: SigningKey, payload: bytes) -> bool:
    """Whether `layer` is `key`'s signature over `payload`."""
    annotations = layer.get("annotations")
    return (
        layer.get("digest") == sha256_digest(payload)
        and isinstance(annotations, Mapping)
        and signature_valid(key.public_key, payload, str(annotations.get(SIGNATURE_ANNOTATION)))
    )


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
    """The existing signature image's config, when it is small and readable (else None).

    Read with its descriptor's size (no more bytes than that), at most
    `MAX_CONFIG_BYTES`, and parsed within the client's JSON bounds.
    """
    config = document.get("config")
    if not isinstance(config, Mapping):
        return None
    digest, size = config.get("digest"), config.get("size")
    if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool):
        return None
    if not 0 <= size <= MAX_CONFIG_BYTES:
        return None
    try:
        blob = await client.get_blob(repository, digest, size)
        return parse_json(blob, f"the config of {repository.name}", max_values=MAX_CONFIG_VALUES)
    except BrokkrError:
        return None


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
    # A cosign key's scrypt takes up to a second or two: off the event loop.
    return await anyio.to_thread.run_sync(load_signing_key, pem, password)
