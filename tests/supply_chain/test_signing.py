"""Cosign-format signing: the payload, the keys, and the signature image in a real registry."""

import base64
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ci.errors import BrokkrError
from ci.registry.client import OCI_MANIFEST, RegistryClient
from ci.rules.reference import parse_repository
from ci.supply_chain import signing as _signing
from tests.support.registry_server import RegistryServer, push_image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cosign"
COSIGN_KEY = (FIXTURES / "sigstore.key").read_text()
"""cosign's own test key (see tests/fixtures/cosign/README.md); its password is "hello"."""
COSIGN_PASSWORD = "hello"
DIGEST = "sha256:" + "ab" * 32
CREATED = "2026-11-26T12:00:00Z"


def private_pem(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
    *,
    password: bytes | None = None,
    traditional: bool = False,
) -> str:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if traditional
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption).decode()


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# -- payload -------------------------------------------------------------------------


def test_payload_is_cosigns_simple_signing_document():
    payload = _signing.simple_signing_payload("ghcr.io/colliery-io/brokkr-broker", DIGEST)
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"ghcr.io/colliery-io/brokkr-broker"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )


def test_signature_tag_is_the_digest_with_a_dash_and_sig():
    assert _signing.signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"
    with pytest.raises(BrokkrError):
        _signing.signature_tag("sha256:xyz")


def test_signature_verifies_over_the_exact_payload_only():
    key = _signing.SigningKey(new_key())
    payload = _signing.simple_signing_payload("r.example/a/b", DIGEST)
    signature = key.sign(payload)
    assert _signing.signature_valid(key.public_key, payload, signature)
    assert not _signing.signature_valid(key.public_key, payload + b" ", signature)
    assert not _signing.signature_valid(new_key().public_key(), payload, signature)
    assert not _signing.signature_valid(key.public_key, payload, "not base64!")


# -- keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "traditional"),
    [(None, False), (None, True), (b"s3cret", False), (b"s3cret", True)],
    ids=["pkcs8", "sec1", "encrypted-pkcs8", "encrypted-sec1"],
)
def test_pem_p256_keys_load_plain_or_with_their_password(password: bytes | None, traditional: bool):
    key = new_key()
    pem = private_pem(key, password=password, traditional=traditional)
    loaded = _signing.load_signing_key(pem, password.decode() if password else None)
    assert loaded.public_key.public_numbers() == key.public_key().public_numbers()


def cosign_key(envelope: Any, label: str = "ENCRYPTED SIGSTORE PRIVATE KEY") -> str:
    body = base64.b64encode(json.dumps(envelope).encode()).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n"


def cosign_envelope() -> dict[str, Any]:
    body = "".join(line for line in COSIGN_KEY.splitlines() if not line.startswith("-----"))
    return json.loads(base64.b64decode(body))


@pytest.mark.parametrize("name", ["sigstore.key", "cosign-label.key"])
def test_cosigns_own_encrypted_keys_open_with_their_password(name: str):
    key = _signing.load_signing_key((FIXTURES / name).read_text(), COSIGN_PASSWORD)
    assert isinstance(key.public_key.curve, ec.SECP256R1)
    # It signs, and the signature checks out with its public key.
    payload = _signing.simple_signing_payload("ghcr.io/colliery-io/brokkr-agent", DIGEST)
    assert _signing.signature_valid(key.public_key, payload, key.sign(payload))


def test_a_cosign_key_is_opened_as_cosign_does():
    """scrypt(password, salt, N, r, p) is the secretbox key; secretbox gives PKCS#8 DER."""
    import nacl.secret

    envelope = cosign_envelope()
    params = envelope["kdf"]["params"]
    secret = hashlib.scrypt(
        COSIGN_PASSWORD.encode(),
        salt=base64.b64decode(envelope["kdf"]["salt"]),
        n=params["N"],
        r=params["r"],
        p=params["p"],
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )
    der = nacl.secret.SecretBox(secret).decrypt(
        base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["cipher"]["nonce"])
    )
    assert _signing.open_cosign_key(COSIGN_KEY, COSIGN_PASSWORD) == der
    expected = serialization.load_der_private_key(der, password=None)
    loaded = _signing.load_signing_key(COSIGN_KEY, COSIGN_PASSWORD)
    assert loaded.public_key.public_numbers() == expected.public_key().public_numbers()


def _hostile(change: dict[str, Any]) -> str:
    envelope = cosign_envelope()
    for path, value in change.items():
        target = envelope
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    return cosign_key(envelope)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kdf.params.N": 2**30}, "more than the 2097152 accepted"),
        ({"kdf.params.r": 4096}, "more than the 2097152 accepted"),
        ({"kdf.params.p": 2**20}, "more than the 2097152 accepted"),
        ({"kdf.params.N": 1000}, "not a power of 2"),
        ({"kdf.params.N": "32768"}, "malformed scrypt parameters"),
        ({"kdf.params.p": True}, "malformed scrypt parameters"),
        ({"kdf.params.r": 0}, "malformed scrypt parameters"),
        ({"kdf.name": "argon2"}, "unknown kdf or cipher"),
        ({"cipher.name": "aes-gcm"}, "unknown kdf or cipher"),
        ({"cipher.nonce": base64.b64encode(b"short").decode()}, "nonce of the wrong size"),
        ({"kdf.salt": "not base64!"}, "malformed kdf.salt"),
    ],
)
def test_hostile_cosign_keys_are_refused_before_scrypt_runs(
    change: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
):
    def no_scrypt(*_args: object, **_kwargs: object) -> bytes:
        raise AssertionError("scrypt ran on a key that should have been refused")

    monkeypatch.setattr(_signing.hashlib, "scrypt", no_scrypt)
    with pytest.raises(BrokkrError, match=message):
        _signing.load_signing_key(_hostile(change), COSIGN_PASSWORD)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n", "no matching END line"),
        (cosign_key(["a list"]), "not a JSON object"),
        (
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n%%%\n"
            "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----",
            "not valid base64 JSON",
        ),
    ],
)
def test_malformed_cosign_keys_are_refused(text: str, message: str):
    with pytest.raises(BrokkrError, match=message):
        _signing.load_signing_key(text, COSIGN_PASSWORD)


def _bad_keys() -> list[tuple[str, str | None, str]]:
    key = new_key()
    encrypted = private_pem(key, password=b"right")
    cosign = cosign_key({"kdf": {"name": "scrypt"}})
    body = private_pem(key).splitlines()
    broken = "\n".join([body[0], body[1][:-8] + "AAAAAAAA", *body[2:]])
    return [
        ("", None, "--signing-key is empty"),
        ("just some text", None, "not a PEM key"),
        (public_pem(key), None, "holds no private key"),
        (private_pem(rsa.generate_private_key(65537, 2048)), None, "not an EC key"),
        (private_pem(ed25519.Ed25519PrivateKey.generate()), None, "not an EC key"),
        (private_pem(ec.generate_private_key(ec.SECP384R1())), None, "curve secp384r1"),
        (encrypted, None, "pass its password with --signing-password"),
        (encrypted, "n0t-th3-r1ght-0ne", "could not be decrypted"),
        (private_pem(key), "unneeded", "is not encrypted"),
        (cosign, "pw", "cosign's key has no cipher.name"),
        (COSIGN_KEY, "n0t-th3-r1ght-0ne", "could not be decrypted with --signing-password"),
        (COSIGN_KEY, None, "could not be decrypted without a password"),
        (broken, None, "not a valid PEM private key"),
    ]


@pytest.mark.parametrize(
    ("pem", "password", "message"), _bad_keys(), ids=lambda v: str(v)[:20] if v else "none"
)
def test_bad_keys_are_refused_without_quoting_them(pem: str, password: str | None, message: str):
    with pytest.raises(BrokkrError, match=message) as info:
        _signing.load_signing_key(pem, password)
    text = str(info.value)
    for line in pem.splitlines():
        if not line.startswith("-----") and len(line) > 16:
            assert line not in text
    if password:
        assert password not in text


def test_the_key_never_shows_in_repr():
    key = _signing.SigningKey(new_key())
    numbers = str(key.private_key.private_numbers().private_value)
    assert numbers not in repr(key)
    assert "redacted" in str(key)


def test_public_keys_must_be_p256_public_keys():
    key = new_key()
    assert _signing.load_public_key(public_pem(key)).public_numbers() == (
        key.public_key().public_numbers()
    )
    with pytest.raises(BrokkrError, match="holds a private key"):
        _signing.load_public_key(private_pem(key))
    with pytest.raises(BrokkrError, match="not a PEM public key"):
        _signing.load_public_key("hello")
    rsa_public = (
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(BrokkrError, match="not an EC P-256 public key"):
        _signing.load_public_key(rsa_public)


# -- the signature image in a registry ----------------------------------------------------


async def _signature_image(client: RegistryClient, repository, digest: str):
    manifest = await client.get_manifest(repository.with_tag(_signing.signature_tag(digest)))
    config = json.loads(await client.get_blob(repository, manifest.document["config"]["digest"]))
    return manifest, config


@pytest.fixture
def image(registry: RegistryServer) -> tuple[str, str]:
    """A pushed index in a fresh repository: (repository address, index digest)."""
    name = f"t{uuid.uuid4().hex[:10]}/app"
    digest = push_image(registry.base_url, name, "1.0")
    return f"{registry.registry}/{name}", digest


@pytest.mark.registry
async def test_signature_image_is_stored_as_cosign_stores_it(image: tuple[str, str]):
    address, digest = image
    repository = parse_repository(address)
    key = _signing.SigningKey(new_key())
    async with RegistryClient() as client:
        assert await _signing.sign_manifest(client, repository, digest, key, created=CREATED)
        manifest, config = await _signature_image(client, repository, digest)
        (layer,) = manifest.document["layers"]
        payload = await client.get_blob(repository, layer["digest"])

    assert manifest.media_type == OCI_MANIFEST
    assert manifest.document["schemaVersion"] == 2
    assert manifest.document["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert payload == _signing.simple_signing_payload(address, digest)
    assert layer["size"] == len(payload)
    signature = layer["annotations"]["dev.cosignproject.cosign/signature"]
    assert _signing.signature_valid(key.public_key, payload, signature)
    assert list(config) == ["architecture", "created", "history", "os", "rootfs", "config"]
    assert config == {
        "architecture": "",
        "created": CREATED,
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        "config": {},
    }


@pytest.mark.registry
async def test_existing_signatures_are_kept_and_one_key_signs_once(image: tuple[str, str]):
    address, digest = image
    repository = parse_repository(address)
    first, second = _signing.SigningKey(new_key()), _signing.SigningKey(new_key())
    async with RegistryClient() as client:
        assert await _signing.sign_manifest(client, repository, digest, first, created=CREATED)
        assert await _signing.sign_manifest(
            client, repository, digest, second, created="2030-01-01T00:00:00Z"
        )
        before, _ = await _signature_image(client, repository, digest)
        assert not await _signing.sign_manifest(client, repository, digest, first, created=CREATED)
        manifest, config = await _signature_image(client, repository, digest)

    assert manifest.digest == before.digest  # signing again with the first key added nothing
    payload = _signing.simple_signing_payload(address, digest)
    signatures = [
        layer["annotations"][_signing.SIGNATURE_ANNOTATION] for layer in manifest.document["layers"]
    ]
    assert len(signatures) == 2
    assert _signing.signature_valid(first.public_key, payload, signatures[0])
    assert _signing.signature_valid(second.public_key, payload, signatures[1])
    assert config["created"] == CREATED  # the first signature's config time is kept
    assert config["rootfs"]["diff_ids"] == [x["digest"] for x in manifest.document["layers"]]
    assert len(config["history"]) == 2


@pytest.mark.registry
async def test_existing_signatures_with_an_unreadable_config_are_kept(image: tuple[str, str]):
    address, digest = image
    repository = parse_repository(address)
    other, key = _signing.SigningKey(new_key()), _signing.SigningKey(new_key())
    payload = _signing.simple_signing_payload(address, digest)
    layers = [_signing.signature_layer(payload, other.sign(payload))]
    nested = b"[" * 100_000  # a config nested past Python's recursion limit
    async with RegistryClient() as client:
        await client.push_blob(repository, payload)
        await client.push_blob(repository, nested)
        body = _signing.signature_manifest(nested, layers)
        await client.push_manifest(repository, _signing.signature_tag(digest), body, OCI_MANIFEST)
        assert await _signing.sign_manifest(client, repository, digest, key, created=CREATED)
        manifest, config = await _signature_image(client, repository, digest)

    assert [x["digest"] for x in manifest.document["layers"]] == [layers[0]["digest"]] * 2
    assert config["created"] == CREATED  # written afresh: the old config could not be read
    assert len(config["history"]) == 2


@pytest.mark.registry
async def test_a_foreign_manifest_under_the_signature_tag_is_not_overwritten(
    registry: RegistryServer, image: tuple[str, str]
):
    address, digest = image
    name = address.split("/", 1)[1]
    push_image(registry.base_url, name, _signing.signature_tag(digest), seed="not-a-signature")
    async with RegistryClient() as client:
        with pytest.raises(BrokkrError, match="not a signature image"):
            await _signing.sign_manifest(
                client,
                parse_repository(address),
                digest,
                _signing.SigningKey(new_key()),
                created=CREATED,
            )


@pytest.mark.registry
async def test_a_concurrent_signer_replacing_the_tag_does_not_drop_our_signature(
    image: tuple[str, str],
):
    """Signer B read the (empty) tag before our write and writes after it: ours is re-added."""
    address, digest = image
    repository = parse_repository(address)
    ours, theirs = _signing.SigningKey(new_key()), _signing.SigningKey(new_key())
    payload = _signing.simple_signing_payload(address, digest)
    tag = _signing.signature_tag(digest)
    async with RegistryClient() as client:
        real_push = client.push_manifest
        raced = False

        async def push_then_race(ref, reference, body, media_type):
            nonlocal raced
            pushed = await real_push(ref, reference, body, media_type)
            if reference == tag and not raced:
                raced = True  # B's write, made from what B read before ours: only B's layer
                layers = [_signing.signature_layer(payload, theirs.sign(payload))]
                config = _signing.signature_config(layers, created=CREATED)
                await client.push_blob(ref, payload)
                await client.push_blob(ref, config)
                await real_push(ref, tag, _signing.signature_manifest(config, layers), OCI_MANIFEST)
            return pushed

        client.push_manifest = push_then_race  # type: ignore[method-assign]
        assert await _signing.sign_manifest(client, repository, digest, ours, created=CREATED)
        manifest, _ = await _signature_image(client, repository, digest)
    assert raced
    signatures = [
        layer["annotations"][_signing.SIGNATURE_ANNOTATION] for layer in manifest.document["layers"]
    ]
    assert [
        _signing.signature_valid(k.public_key, payload, s)
        for k, s in zip((theirs, ours), signatures, strict=True)
    ] == [True, True]


@pytest.mark.registry
async def test_a_tag_that_keeps_changing_is_a_bounded_error(image: tuple[str, str]):
    address, digest = image
    repository = parse_repository(address)
    key = _signing.SigningKey(new_key())
    tag = _signing.signature_tag(digest)
    writes = 0
    async with RegistryClient() as client:
        real_push = client.push_manifest

        async def push_then_erase(ref, reference, body, media_type):
            nonlocal writes
            writes += 1
            await real_push(ref, reference, body, media_type)
            # Another tool replaces the tag with an empty signature image every time.
            config = _signing.signature_config([], created=CREATED)
            await client.push_blob(ref, config)
            return await real_push(ref, tag, _signing.signature_manifest(config, []), OCI_MANIFEST)

        client.push_manifest = push_then_erase  # type: ignore[method-assign]
        with pytest.raises(BrokkrError, match="kept changing under 3 writes"):
            await _signing.sign_manifest(client, repository, digest, key, created=CREATED)
    assert writes == _signing.SIGNATURE_WRITES
