"""Cosign-format signing: the payload, the keys, and the signature image in a real registry."""

import base64
import json
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ci.errors import BrokkrError
from ci.registry.client import OCI_MANIFEST, RegistryClient
from ci.rules.reference import parse_repository
from ci.supply_chain import signing as _signing
from tests.support.registry_server import RegistryServer, push_image

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


def _bad_keys() -> list[tuple[str, str | None, str]]:
    key = new_key()
    encrypted = private_pem(key, password=b"right")
    cosign = (
        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
        + base64.b64encode(json.dumps({"kdf": {"name": "scrypt"}}).encode()).decode()
        + "\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    )
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
        (cosign, "pw", "NaCl secretbox"),
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
