"""Signed publishing end to end, judged by skopeo (containers/image) and by `verify`.

A release is published through the stand-in engine to the loopback registry with
a test key made here. skopeo 1.18+ with a `sigstoreSigned` policy (`keyPath`,
`matchRepository`, sigstore attachments on) must accept the index and every
platform manifest, and reject an unsigned image, a tampered signature and
another key; `verify` must say the same in each case, manifest by manifest.
"""

import base64
import json
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from dagger import dag
from dagger.mod._exceptions import FunctionError

from ci.publishing import publish as _publish
from ci.supply_chain import signing as _signing
from tests.support.publishing import pem_pair
from tests.support.registry_server import RegistryServer, push_image
from tests.support.skopeo import Skopeo
from tests.support.standin import ModuleCaller, StandInEngine

pytestmark = [pytest.mark.registry, pytest.mark.usefixtures("no_waiting")]

SHA = "0123456789abcdef0123456789abcdef01234567"
COSIGN_KEY = (
    Path(__file__).resolve().parents[1] / "fixtures" / "cosign" / "sigstore.key"
).read_text()
"""cosign's own test key (tests/fixtures/cosign/README.md)."""
BOTH = ["linux/amd64", "linux/arm64"]
JSON_KEYS = [
    "component",
    "repository",
    "tag",
    "address",
    "digest",
    "platforms",
    "sbom",
    "sboms_not_attached",
    "signatures",
    "no_ui_image",
]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """The signing key's public half and another key's, as files; the private one in env."""
    private, public = pem_pair()
    _, other = pem_pair()
    (tmp_path / "cosign.pub").write_bytes(public)
    (tmp_path / "other.pub").write_bytes(other)
    return {"private": private, "public": tmp_path / "cosign.pub", "other": tmp_path / "other.pub"}


async def publish_signed(
    brokkr: ModuleCaller, engine: StandInEngine, namespace: str, private_pem: str
) -> list[dict]:
    """Publish brokkr-broker 1.2.3 signed, --format json; the parsed array."""
    engine.env["COSIGN_KEY"] = private_pem
    key_id = await dag.secret("env://COSIGN_KEY").id()
    output = await brokkr.call(
        "publish",
        ref="refs/tags/v1.2.3",
        sha=SHA,
        registry=namespace,
        component="BROKER",
        signing_key=key_id,
        format="JSON",
    )
    return json.loads(output)


async def verify(brokkr: ModuleCaller, address: str, public_key: Path) -> tuple[bool, str]:
    """`dagger call verify`: (passed, its output or error message)."""
    file_id = await dag.host().file(str(public_key)).id()
    try:
        return True, await brokkr.call("verify", address=address, public_key=file_id)
    except FunctionError as e:
        return False, str(e)


def manifests(entry: dict) -> dict[str, str]:
    """What one published tag consists of: index and platforms -> digest."""
    return {"index": entry["digest"], **entry["platforms"]}


def skopeo_verdicts(
    skopeo_: Skopeo, policy: Path, entry: dict
) -> tuple[dict[str, bool], dict[str, str]]:
    """skopeo's verdicts: the whole image (the tag, every platform), and each platform
    manifest by its digest.

    containers/image judges the instances it copies out of an index, each by its own
    signatures; it never reads the index's own signature (`--multi-arch index-only`
    copies are not judged at all). `verify`'s index row is compared with
    `cosign verify --key` in this repository's GitHub CI instead.
    """
    verdicts, errors = {}, {}
    verdicts["image"], errors["image"] = skopeo_.copy(policy, entry["address"], multi_arch="all")
    for platform, digest in entry["platforms"].items():
        source = f"{entry['repository']}@{digest}"
        verdicts[platform], errors[platform] = skopeo_.copy(policy, source)
    return verdicts, errors


def verify_verdicts(passed: bool, report: str, entry: dict) -> dict[str, bool]:
    """`verify`'s verdicts in skopeo's terms: overall, then its row for each platform."""
    rows = {tuple(line.split()[:2]): line.split()[2] for line in report.splitlines()[1:]}
    verdicts = {"image": passed}
    for platform, digest in entry["platforms"].items():
        verdicts[platform] = rows[(platform, digest)].startswith("signed")
    return verdicts


def index_row(report: str, entry: dict) -> str:
    """`verify`'s row for the index: signed, unsigned or failed."""
    (row,) = [r for r in report.splitlines() if r.split()[:2] == ["index", entry["digest"]]]
    return row.split()[2].rstrip(":")


async def test_a_signed_release_passes_skopeo_and_verify_for_every_platform(
    brokkr: ModuleCaller,
    publishing: StandInEngine,
    namespace: str,
    keys: dict,
    skopeo: Skopeo,
    registry: RegistryServer,
):
    entries = await publish_signed(brokkr, publishing, namespace, keys["private"])

    assert [e["tag"] for e in entries] == ["1.2.3", "1.2", "1", "latest"]
    for entry in entries:
        assert list(entry) == JSON_KEYS
        assert entry["component"] == "broker"
        assert entry["repository"] == f"{namespace}/brokkr-broker"
        assert entry["address"] == f"{namespace}/brokkr-broker:{entry['tag']}"
        assert sorted(entry["platforms"]) == BOTH
        # Signed: the index and each platform, each under its own .sig tag.
        assert entry["signatures"] == {
            what: _signing.signature_tag(digest) for what, digest in manifests(entry).items()
        }
        # No login: on loopback the SBOMs are attached anyway, as the signatures are.
        assert sorted(entry["sbom"]) == BOTH
        assert entry["sboms_not_attached"] is None
    assert len({e["digest"] for e in entries}) == 1

    policy = skopeo.policy(registry.registry, keys["public"].read_bytes())
    accepted, errors = skopeo_verdicts(skopeo, policy, entries[0])
    assert all(accepted.values()), errors

    passed, report = await verify(brokkr, entries[0]["address"], keys["public"])
    assert passed, report
    assert verify_verdicts(passed, report, entries[0]) == accepted
    assert index_row(report, entries[0]) == "signed"


async def test_an_unsigned_image_is_rejected_by_both(
    brokkr: ModuleCaller,
    engine: StandInEngine,
    keys: dict,
    skopeo: Skopeo,
    registry: RegistryServer,
):
    name = f"t{uuid.uuid4().hex[:10]}/brokkr-agent"
    digest = push_image(registry.base_url, name, "1.0.0")
    async with httpx.AsyncClient(base_url=registry.base_url) as client:
        index = (
            await client.get(
                f"/v2/{name}/manifests/{digest}",
                headers={"Accept": "application/vnd.oci.image.index.v1+json"},
            )
        ).json()
    entry = {
        "repository": f"{registry.registry}/{name}",
        "address": f"{registry.registry}/{name}:1.0.0",
        "digest": digest,
        "platforms": {
            f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
            for m in index["manifests"]
        },
    }

    policy = skopeo.policy(registry.registry, keys["public"].read_bytes())
    accepted, errors = skopeo_verdicts(skopeo, policy, entry)
    assert not any(accepted.values())
    assert "signature" in errors["linux/amd64"].lower()

    passed, report = await verify(brokkr, entry["address"], keys["public"])
    assert not passed
    assert report.count("unsigned: no signature") == 3
    assert verify_verdicts(passed, report, entry) == accepted
    assert index_row(report, entry) == "unsigned"


async def test_a_tampered_signature_is_rejected_by_both(
    brokkr: ModuleCaller,
    publishing: StandInEngine,
    namespace: str,
    keys: dict,
    skopeo: Skopeo,
    registry: RegistryServer,
):
    entry = (await publish_signed(brokkr, publishing, namespace, keys["private"]))[0]
    arm64 = entry["platforms"]["linux/arm64"]
    repository = entry["repository"].split("/", 1)[1]
    tag = _signing.signature_tag(arm64)
    # Flip one bit of the ECDSA signature stored for the arm64 manifest, and store it back.
    async with httpx.AsyncClient(base_url=registry.base_url) as client:
        reply = await client.get(
            f"/v2/{repository}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        document = reply.json()
        annotations = document["layers"][0]["annotations"]
        der = bytearray(base64.b64decode(annotations[_signing.SIGNATURE_ANNOTATION]))
        der[-1] ^= 0x01
        annotations[_signing.SIGNATURE_ANNOTATION] = base64.b64encode(bytes(der)).decode()
        stored = await client.put(
            f"/v2/{repository}/manifests/{tag}",
            content=json.dumps(document).encode(),
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert stored.status_code == 201, stored.text

    policy = skopeo.policy(registry.registry, keys["public"].read_bytes())
    accepted, errors = skopeo_verdicts(skopeo, policy, entry)
    # The whole image is refused (containers/image checks every instance it copies);
    # amd64's own signature is intact.
    assert accepted == {"image": False, "linux/amd64": True, "linux/arm64": False}, errors

    passed, report = await verify(brokkr, entry["address"], keys["public"])
    assert not passed
    assert "(linux/arm64: unsigned or failing)" in report
    assert f"{arm64}  failed: 1 signature, none valid" in report
    assert verify_verdicts(passed, report, entry) == accepted
    assert index_row(report, entry) == "signed"


async def test_another_key_is_rejected_by_both(
    brokkr: ModuleCaller,
    publishing: StandInEngine,
    namespace: str,
    keys: dict,
    skopeo: Skopeo,
    registry: RegistryServer,
):
    entry = (await publish_signed(brokkr, publishing, namespace, keys["private"]))[0]

    policy = skopeo.policy(registry.registry, keys["other"].read_bytes(), name="other")
    accepted, errors = skopeo_verdicts(skopeo, policy, entry)
    assert not any(accepted.values())
    assert "signature" in errors["linux/amd64"].lower()

    passed, report = await verify(brokkr, entry["address"], keys["other"])
    assert not passed
    assert report.count("none valid: not signed by this key") == 3
    assert verify_verdicts(passed, report, entry) == accepted
    assert index_row(report, entry) == "failed"


# -- publish's signing inputs -------------------------------------------------------


async def test_a_bad_signing_key_stops_publish_before_any_work_and_is_never_quoted(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    private, _ = pem_pair()
    broken = private.replace("-----BEGIN PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----")
    publishing.env["COSIGN_KEY"] = broken
    key_id = await dag.secret("env://COSIGN_KEY").id()
    with pytest.raises(FunctionError, match="--signing-key could not be read") as info:
        await brokkr.call(
            "publish", ref="refs/tags/v1.2.3", sha=SHA, registry=namespace, signing_key=key_id
        )
    body = [line for line in broken.splitlines() if not line.startswith("-----")]
    for line in body:
        assert line not in str(info.value)
        assert line not in publishing.sent_text()
    assert publishing.pushes == []
    assert publishing.round_trips() == []  # nothing was built


async def test_signing_for_a_remote_registry_needs_a_login_before_any_work(
    brokkr: ModuleCaller, publishing: StandInEngine
):
    publishing.env["COSIGN_KEY"] = pem_pair()[0]
    key_id = await dag.secret("env://COSIGN_KEY").id()
    with pytest.raises(FunctionError, match="--username and --password"):
        await brokkr.call(
            "publish",
            ref="refs/tags/v1.2.3",
            sha=SHA,
            registry="ghcr.io/someone",
            signing_key=key_id,
        )
    assert publishing.round_trips() == []  # nothing was built
    assert publishing.pushes == []


async def test_a_dry_run_with_a_signing_key_needs_no_login_but_a_good_key(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, monkeypatch: pytest.MonkeyPatch
):
    # The loopback registry stands in for a remote one (publish's write rule is told
    # it is not loopback): a real run would be refused, a dry run writes nothing.
    monkeypatch.setattr(_publish, "is_loopback_host", lambda _host: False)
    private, _ = pem_pair()
    publishing.env["COSIGN_KEY"] = private
    key_id = await dag.secret("env://COSIGN_KEY").id()
    args = {"ref": "refs/tags/v1.2.3", "sha": SHA, "registry": namespace, "component": "UI"}
    with pytest.raises(FunctionError, match="--username and --password"):
        await brokkr.call("publish", signing_key=key_id, **args)
    lines = (await brokkr.call("publish", signing_key=key_id, dry_run=True, **args)).splitlines()
    assert lines[-1] == (
        f"{namespace}/brokkr-ui: would sign the index and every platform manifest "
        "(cosign format, sha256-<hex>.sig tags; needs --username/--password)"
    )
    # The key is still read and checked first.
    publishing.env["COSIGN_KEY"] = private.replace("PRIVATE KEY", "PUBLIC KEY")
    with pytest.raises(FunctionError, match="--signing-key"):
        await brokkr.call("publish", signing_key=key_id, dry_run=True, **args)
    assert publishing.pushes == []
    assert publishing.round_trips() == []  # nothing was built


async def test_a_signing_password_without_a_key_is_refused(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    publishing.env["COSIGN_PASSWORD"] = "pw"
    password_id = await dag.secret("env://COSIGN_PASSWORD").id()
    with pytest.raises(FunctionError, match="--signing-password was given without --signing-key"):
        await brokkr.call(
            "publish",
            ref="refs/tags/v1.2.3",
            sha=SHA,
            registry=namespace,
            signing_password=password_id,
        )


async def test_dry_run_says_what_would_be_signed_and_refuses_json(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str
):
    publishing.env["COSIGN_KEY"] = pem_pair()[0]
    key_id = await dag.secret("env://COSIGN_KEY").id()
    lines = (
        await brokkr.call(
            "publish",
            ref="refs/tags/v1.2.3",
            sha=SHA,
            registry=namespace,
            component="UI",
            signing_key=key_id,
            dry_run=True,
        )
    ).splitlines()
    assert f"{namespace}/brokkr-ui: would sign the index and every platform manifest" in (lines[-1])
    with pytest.raises(FunctionError, match="--format json describes pushed images"):
        await brokkr.call(
            "publish",
            ref="refs/tags/v1.2.3",
            sha=SHA,
            registry=namespace,
            dry_run=True,
            format="JSON",
        )
    assert publishing.pushes == []


async def test_json_and_text_name_the_same_images(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, registry: RegistryServer
):
    output = await brokkr.call(
        "publish", ref="refs/heads/main", sha=SHA, registry=namespace, format="JSON"
    )
    entries = json.loads(output)
    assert sorted(e["component"] for e in entries) == sorted(["broker", "agent", "ui"] * 2)
    async with httpx.AsyncClient(base_url=registry.base_url) as client:
        for entry in entries:
            name = entry["repository"].split("/", 1)[1]
            reply = await client.get(
                f"/v2/{name}/manifests/{entry['tag']}",
                headers={"Accept": "application/vnd.oci.image.index.v1+json"},
            )
            assert reply.headers["docker-content-digest"] == entry["digest"]
            served = {
                f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
                for m in reply.json()["manifests"]
            }
            assert served == entry["platforms"]
    for entry in entries:
        assert list(entry) == JSON_KEYS
        assert entry["signatures"] == {}  # no --signing-key
        assert sorted(entry["sbom"]) == BOTH  # loopback: attached without a login
        assert entry["sboms_not_attached"] is None


async def test_text_output_notes_each_signature_after_the_tags(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, keys: dict
):
    publishing.env["COSIGN_KEY"] = keys["private"]
    key_id = await dag.secret("env://COSIGN_KEY").id()
    lines = (
        await brokkr.call(
            "publish",
            ref="refs/tags/v1.2.3",
            sha=SHA,
            registry=namespace,
            component="UI",
            signing_key=key_id,
        )
    ).splitlines()
    repository = f"{namespace}/brokkr-ui"
    index = lines[0].rsplit("@", 1)[1]
    assert lines[:4] == [f"{repository}:{t}@{index}" for t in ("1.2.3", "1.2", "1", "latest")]
    assert [line.split()[:3] for line in lines[4:6]] == [
        ["#", "sbom", "linux/amd64"],
        ["#", "sbom", "linux/arm64"],
    ]
    notes = lines[6:]
    assert [line.split()[2] for line in notes] == ["linux/amd64", "linux/arm64", "index"]
    async with httpx.AsyncClient(base_url=f"http://{namespace.split('/', 1)[0]}") as client:
        for line in notes:
            _, _, what, manifest, stored = line.split()
            digest = manifest.rsplit("@", 1)[1].rstrip(":")
            assert manifest == f"{repository}@{digest}:"
            assert stored == f"{repository}:{_signing.signature_tag(digest)}"
            if what == "index":
                assert digest == index
            name = repository.split("/", 1)[1]
            sig = await client.get(
                f"/v2/{name}/manifests/{_signing.signature_tag(digest)}",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            )
            assert sig.status_code == 200


async def test_inspect_shows_which_manifests_have_a_signature(
    brokkr: ModuleCaller, publishing: StandInEngine, namespace: str, keys: dict
):
    (entry, *_) = await publish_signed(brokkr, publishing, namespace, keys["private"])
    await brokkr.call("publish", pr=4, sha=SHA, registry=namespace, component="UI")

    info = await brokkr.call("inspect", address=entry["address"])
    assert info["digest"] == entry["digest"]
    assert info["signature"] is True
    assert {p["platform"]: (p["digest"], p["signature"]) for p in info["platforms"]} == {
        platform: (digest, True) for platform, digest in entry["platforms"].items()
    }
    summary = (await brokkr.call("summary", parent="ImageInfo", state=info)).splitlines()
    assert "signature:  yes" in summary
    header = next(line for line in summary if line.startswith("PLATFORM"))
    column = header.index("SIGNATURE")
    for platform in BOTH:
        row = next(line for line in summary if line.startswith(platform))
        assert row[column:].split()[0] == "yes"

    unsigned = await brokkr.call("inspect", address=f"{namespace}/brokkr-ui:pr-4")
    assert unsigned["signature"] is False
    assert [p["signature"] for p in unsigned["platforms"]] == [False, False]
    summary = await brokkr.call("summary", parent="ImageInfo", state=unsigned)
    assert "signature:  no" in summary.splitlines()


async def test_a_release_signed_with_cosigns_own_encrypted_key_passes_skopeo(
    brokkr: ModuleCaller,
    publishing: StandInEngine,
    namespace: str,
    skopeo: Skopeo,
    registry: RegistryServer,
    tmp_path: Path,
):
    """cosign's test key (ENCRYPTED SIGSTORE PRIVATE KEY, password "hello") signs a release;
    skopeo's sigstoreSigned policy with its public key accepts every manifest."""
    cosign_key = COSIGN_KEY
    publishing.env["COSIGN_KEY"] = cosign_key
    publishing.env["COSIGN_PASSWORD"] = "hello"
    output = await brokkr.call(
        "publish",
        ref="refs/tags/v1.2.3",
        sha=SHA,
        registry=namespace,
        component="BROKER",
        signing_key=await dag.secret("env://COSIGN_KEY").id(),
        signing_password=await dag.secret("env://COSIGN_PASSWORD").id(),
        format="JSON",
    )
    entry = json.loads(output)[0]
    assert set(entry["signatures"]) == {"index", *BOTH}
    public = _signing.load_signing_key(cosign_key, "hello").public_key
    public_key = tmp_path / "cosign.pub"
    public_key.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    policy = skopeo.policy(registry.registry, public_key.read_bytes())
    accepted, errors = skopeo_verdicts(skopeo, policy, entry)
    assert all(accepted.values()), errors
    assert len(accepted) == 3  # the image (tag, every platform) and each platform alone
    passed, report = await verify(brokkr, entry["address"], public_key)
    assert passed, report
