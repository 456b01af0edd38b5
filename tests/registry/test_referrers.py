"""SBOMs attached as OCI referrers, on a real registry (distribution 2.8: no referrers API).

The attach tests push a tiny image with `push_image` and attach to it with the
module's client; the publish tests run `dagger call publish` through the
stand-in engine, whose publish really pushes to the loopback registry, so the
SBOMs are attached to the platform manifests the registry really holds.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from dagger import dag
from dagger.mod._exceptions import FunctionError

from ci.concurrency import run_all
from ci.errors import BrokkrError
from ci.publishing import deliver as _deliver
from ci.publishing import publish as _publish
from ci.publishing import report as _report
from ci.registry import referrers as _referrers
from ci.registry.client import OCI_INDEX, OCI_MANIFEST, Credentials, RegistryClient, sha256_digest
from ci.rules.reference import parse_reference, parse_repository
from ci.supply_chain import sbom as _sbom
from ci.supply_chain import signing as _signing
from ci.supply_chain.signing import signature_tag
from tests.support.publishing import pem_pair, publish_to
from tests.support.registry_proxy import RateLimitedPage, RegistryProxy, ghcr_shaped
from tests.support.registry_server import RegistryServer, push_image
from tests.support.sbom_inputs import answer_image_reads
from tests.support.standin import ModuleCaller, Node, StandInEngine, push_to_registry

pytestmark = [pytest.mark.registry, pytest.mark.usefixtures("no_waiting")]

SHA = "0123456789abcdef0123456789abcdef01234567"
SBOM = _sbom.MEDIA_TYPE
COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"


def get(server: RegistryServer, path: str, accept: str = OCI_INDEX) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/v2/{path}", headers={"Accept": accept}, auth=server.auth, timeout=10
    )


def fallback_index(server: RegistryServer, repository: str, subject: str) -> dict[str, Any]:
    response = get(server, f"{repository}/manifests/{_referrers.fallback_tag(subject)}")
    assert response.status_code == 200, response.text
    return response.json()


def platform_digests(server: RegistryServer, repository: str, reference: str) -> dict[str, str]:
    index = get(server, f"{repository}/manifests/{reference}").json()
    return {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
    }


def client_for(server: RegistryServer) -> RegistryClient:
    credentials = Credentials(*server.auth) if server.auth else None
    return RegistryClient(credentials=credentials, backoff=0)


def sbom_bytes(name: str = "x") -> bytes:
    return json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "name": name}).encode()


# -- attaching ------------------------------------------------------------------------


async def test_attach_pushes_an_artifact_manifest_and_the_fallback_tag(registry: RegistryServer):
    repository = f"t{uuid.uuid4().hex[:10]}/brokkr-agent"
    push_image(registry.base_url, repository, "1.0.0")
    subject = platform_digests(registry, repository, "1.0.0")["linux/arm64"]
    repo = parse_repository(f"{registry.registry}/{repository}")

    async with client_for(registry) as client:
        attached = await _referrers.attach(
            client, repo, subject, sbom_bytes(), artifact_type=SBOM, annotations={"a": "b"}
        )
        found = await _referrers.find(client, repo, subject, artifact_type=SBOM)

    assert attached.via == f"tag {_referrers.fallback_tag(subject)}"
    index = fallback_index(registry, repository, subject)
    assert index["mediaType"] == OCI_INDEX
    (entry,) = index["manifests"]
    assert entry["digest"] == attached.digest
    assert entry["artifactType"] == SBOM
    assert entry["annotations"] == {"a": "b"}
    assert found == [entry]
    manifest = get(registry, f"{repository}/manifests/{attached.digest}", OCI_MANIFEST).json()
    assert manifest["artifactType"] == SBOM
    assert manifest["config"] == dict(_referrers.EMPTY_DESCRIPTOR)
    assert manifest["subject"]["digest"] == subject
    assert manifest["subject"]["mediaType"] == OCI_MANIFEST
    subject_body = get(registry, f"{repository}/manifests/{subject}", OCI_MANIFEST).content
    assert manifest["subject"]["size"] == len(subject_body)
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == SBOM
    blob = get(registry, f"{repository}/blobs/{layer['digest']}").content
    assert blob == sbom_bytes()


async def test_attaching_twice_adds_nothing_and_other_referrers_are_kept(
    registry: RegistryServer,
):
    repository = f"t{uuid.uuid4().hex[:10]}/brokkr-broker"
    push_image(registry.base_url, repository, "1.0.0")
    subject = platform_digests(registry, repository, "1.0.0")["linux/amd64"]
    repo = parse_repository(f"{registry.registry}/{repository}")
    # Another tool's referrer (a signature) is listed under the tag already.
    async with client_for(registry) as client:
        subject_manifest = await client.get_manifest(repo.with_digest(subject))
        descriptor = {
            "mediaType": OCI_MANIFEST,
            "digest": subject,
            "size": len(subject_manifest.body),
        }
        body = _referrers.artifact_manifest(descriptor, artifact_type=COSIGN_SIG, blob=b"sig")
        await client.push_blob(repo, _referrers.EMPTY_CONFIG)
        await client.push_blob(repo, b"sig")
        await client.push_manifest(repo, sha256_digest(body), body, OCI_MANIFEST)
        theirs = {**_referrers.referrer_descriptor(body), "annotations": {"tool": "cosign"}}
        existing = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [theirs]})
        await client.push_manifest(
            repo, _referrers.fallback_tag(subject), existing.encode(), OCI_INDEX
        )
        first = await _referrers.attach(client, repo, subject, sbom_bytes(), artifact_type=SBOM)
        again = await _referrers.attach(client, repo, subject, sbom_bytes(), artifact_type=SBOM)
        other = await _referrers.attach(
            client, repo, subject, sbom_bytes("new"), artifact_type=SBOM
        )
        sboms = await _referrers.find(client, repo, subject, artifact_type=SBOM)

    assert again.digest == first.digest
    entries = fallback_index(registry, repository, subject)["manifests"]
    assert [e["digest"] for e in entries] == [theirs["digest"], first.digest, other.digest]
    assert entries[0] == theirs
    assert [e["digest"] for e in sboms] == [first.digest, other.digest]


async def test_a_tag_that_is_not_a_referrers_index_is_not_overwritten(registry: RegistryServer):
    repository = f"t{uuid.uuid4().hex[:10]}/brokkr-ui"
    push_image(registry.base_url, repository, "1.0.0")
    subject = platform_digests(registry, repository, "1.0.0")["linux/amd64"]
    # Someone pushed an image (not an index) under the fallback tag.
    push_image(
        registry.base_url,
        repository,
        _referrers.fallback_tag(subject),
        platforms=["linux/amd64"],
        index=False,
        seed="other",
    )
    repo = parse_repository(f"{registry.registry}/{repository}")
    async with client_for(registry) as client:
        with pytest.raises(BrokkrError, match="not a referrers index; not overwriting"):
            await _referrers.attach(client, repo, subject, sbom_bytes(), artifact_type=SBOM)


@pytest.mark.parametrize("status", [400, 405])
async def test_a_registry_refusing_the_referrers_endpoint_gets_the_tag_fallback(
    registry: RegistryServer, status: int
):
    # distribution 2.8 answers 404; registries and proxies that do not know the
    # endpoint may answer 400 or 405 instead: no API either way.
    repository = f"t{uuid.uuid4().hex[:10]}/brokkr-agent"
    push_image(registry.base_url, repository, "1.0.0")
    subject = platform_digests(registry, repository, "1.0.0")["linux/amd64"]
    with RegistryProxy(upstream=registry) as proxy:
        proxy.fail(100, status=status, match="/referrers/")
        repo = parse_repository(f"{proxy.registry}/{repository}")
        async with RegistryClient(backoff=0) as client:
            attached = await _referrers.attach(
                client, repo, subject, sbom_bytes(), artifact_type=SBOM
            )
            found = await _referrers.find(client, repo, subject, artifact_type=SBOM)
        # Attaching decides by the push's OCI-Subject answer; only find asks the API.
        assert proxy.hits("/referrers/") == 1
    assert attached.via == f"tag {_referrers.fallback_tag(subject)}"
    assert [e["digest"] for e in fallback_index(registry, repository, subject)["manifests"]] == [
        attached.digest
    ]
    assert [e["digest"] for e in found] == [attached.digest]


# -- publish and inspect --------------------------------------------------------------


@pytest.fixture
def publishing(engine: StandInEngine, auth_registry: RegistryServer) -> StandInEngine:
    answer_image_reads(engine)
    engine.on_publish = push_to_registry(
        engine, registry=auth_registry.registry, base_url=auth_registry.base_url
    )
    assert auth_registry.password is not None
    engine.env["GITHUB_TOKEN"] = auth_registry.password
    return engine


async def publish_with_credentials(
    brokkr: ModuleCaller, server: RegistryServer, namespace: str, **args: Any
) -> list[str]:
    secret = await dag.secret("env://GITHUB_TOKEN").id()
    text = await brokkr.call(
        "publish",
        sha=SHA,
        registry=namespace,
        username=server.username,
        password=secret,
        created="2026-11-26T12:00:00Z",
        **args,
    )
    return text.splitlines()


async def test_a_release_has_an_sbom_referrer_per_platform_manifest(
    brokkr: ModuleCaller, publishing: StandInEngine, auth_registry: RegistryServer
):
    namespace = f"{auth_registry.registry}/t{uuid.uuid4().hex[:10]}"
    lines = await publish_with_credentials(
        brokkr, auth_registry, namespace, ref="refs/tags/v1.2.3", component="AGENT"
    )
    repository = namespace.split("/", 1)[1] + "/brokkr-agent"
    digests = platform_digests(auth_registry, repository, "1.2.3")
    assert set(digests) == {"linux/amd64", "linux/arm64"}
    assert [line for line in lines if not line.startswith("#")] == [
        f"{namespace}/brokkr-agent:{tag}@{lines[0].rsplit('@', 1)[1]}"
        for tag in ("1.2.3", "1.2", "1", "latest")
    ]
    reported = [line for line in lines if line.startswith("# sbom ")]
    assert len(reported) == 2
    for platform, subject in digests.items():
        # Found through the fallback tag of that platform manifest ...
        (entry,) = fallback_index(auth_registry, repository, subject)["manifests"]
        assert entry["artifactType"] == SBOM
        assert entry["annotations"] == {"org.opencontainers.image.created": "2026-11-26T12:00:00Z"}
        assert any(
            line.startswith(f"# sbom {platform} {namespace}/brokkr-agent@{subject}: ")
            and entry["digest"] in line
            for line in reported
        )
        # ... whose subject is the pushed manifest, and whose SBOM describes it.
        artifact = get(auth_registry, f"{repository}/manifests/{entry['digest']}", OCI_MANIFEST)
        manifest = artifact.json()
        assert manifest["subject"]["digest"] == subject
        sbom = get(auth_registry, f"{repository}/blobs/{manifest['layers'][0]['digest']}").text
        assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(sbom) is None
        image = json.loads(sbom)["metadata"]["component"]
        assert image["name"] == f"{namespace}/brokkr-agent"
        assert image["version"] == "1.2.3"
        assert image["purl"].startswith(f"pkg:oci/brokkr-agent@{subject.replace(':', ':')}?")
        arch = platform.split("/")[1]
        assert f"arch={arch}" in image["purl"]
        assert any(  # kubectl's Go standard library, as syft reports it
            c["name"] == "stdlib" and c["purl"].startswith("pkg:golang/")
            for c in json.loads(sbom)["components"]
        )

    # inspect shows it per platform.
    address = f"{namespace}/brokkr-agent:1.2.3"
    info = await brokkr.call(
        "inspect",
        address=address,
        username=auth_registry.username,
        password=await dag.secret("env://GITHUB_TOKEN").id(),
    )
    platforms = {p["platform"]: p for p in info["platforms"]}
    for platform, subject in digests.items():
        assert platforms[platform]["digest"] == subject
        assert platforms[platform]["sbom"] is True
    summary = await brokkr.call("summary", parent="ImageInfo", state=info)
    assert "SBOM" in summary
    for platform in digests:
        row = next(line for line in summary.splitlines() if line.startswith(platform))
        assert "yes" in row


@pytest.mark.parametrize("signed", [False, True])
async def test_json_output_names_each_attached_sbom_and_signature(
    brokkr: ModuleCaller, publishing: StandInEngine, auth_registry: RegistryServer, signed: bool
):
    namespace = f"{auth_registry.registry}/t{uuid.uuid4().hex[:10]}"
    args: dict[str, Any] = {}
    if signed:
        key = ec.generate_private_key(ec.SECP256R1())
        publishing.env["COSIGN_KEY"] = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        args["signing_key"] = await dag.secret("env://COSIGN_KEY").id()
    lines = await publish_with_credentials(
        brokkr, auth_registry, namespace, pr=9, component="BROKER", format="JSON", **args
    )
    (entry,) = json.loads("\n".join(lines))  # one JSON document, nothing after it
    repository = namespace.split("/", 1)[1] + "/brokkr-broker"
    digests = platform_digests(auth_registry, repository, "pr-9")
    assert entry["platforms"] == digests
    assert entry["sboms_not_attached"] is None
    assert set(entry["sbom"]) == set(digests)
    for platform, subject in digests.items():
        (listed,) = fallback_index(auth_registry, repository, subject)["manifests"]
        assert entry["sbom"][platform] == listed["digest"]
    if signed:
        manifests = {"index": entry["digest"], **digests}
        assert entry["signatures"] == {w: signature_tag(d) for w, d in manifests.items()}
        for tag in entry["signatures"].values():
            assert get(auth_registry, f"{repository}/manifests/{tag}", OCI_MANIFEST).is_success
    else:
        assert entry["signatures"] == {}


@pytest.fixture
def open_publishing(engine: StandInEngine, registry: RegistryServer) -> StandInEngine:
    """The stand-in pushing to the open registry (this module's `publishing` uses the other)."""
    return publish_to(engine, registry)


async def test_without_credentials_a_loopback_registry_gets_the_sboms_anonymously(
    brokkr: ModuleCaller, open_publishing: StandInEngine, namespace: str, registry: RegistryServer
):
    # As signing does: a loopback registry (throw-away, or behind --registry-service)
    # is written to anonymously when no --username/--password is given.
    text = await brokkr.call(
        "publish", pr=7, sha=SHA, registry=namespace, component="BROKER", format="JSON"
    )
    (entry,) = json.loads(text)
    repository = namespace.split("/", 1)[1] + "/brokkr-broker"
    digests = platform_digests(registry, repository, "pr-7")
    assert entry["sboms_not_attached"] is None
    assert set(entry["sbom"]) == set(digests) == {"linux/amd64", "linux/arm64"}
    for platform, subject in digests.items():
        (listed,) = fallback_index(registry, repository, subject)["manifests"]
        assert listed["artifactType"] == SBOM
        assert entry["sbom"][platform] == listed["digest"]
    assert len(sbom_scans(open_publishing)) == 2
    info = await brokkr.call("inspect", address=f"{namespace}/brokkr-broker:pr-7")
    assert [p["sbom"] for p in info["platforms"]] == [True, True]


def sbom_scans(engine: StandInEngine) -> list[Node]:
    """The syft scans the engine ran (the SBOM's reads)."""
    return [
        node
        for field, node, *_ in engine.evaluated
        if field == "stdout" and node.execs()[-1][0] == _sbom.SYFT_BINARY
    ]


@pytest.mark.parametrize("output", ["TEXT", "JSON"])
async def test_without_credentials_a_remote_registry_gets_no_sboms_and_publish_says_why(
    brokkr: ModuleCaller,
    open_publishing: StandInEngine,
    namespace: str,
    registry: RegistryServer,
    monkeypatch: pytest.MonkeyPatch,
    output: str,
):
    # The loopback registry stands in for a remote one: publish's write rule is told
    # it is not loopback (the client still reaches it over plain HTTP).
    monkeypatch.setattr(_publish, "is_loopback_host", lambda _host: False)
    text = await brokkr.call(
        "publish", pr=7, sha=SHA, registry=namespace, component="BROKER", format=output
    )
    if output == "TEXT":
        lines = text.splitlines()
        assert _report.NOT_ATTACHED in lines  # the dependency cache's note may follow
        assert "--username and --password" in _report.NOT_ATTACHED
        assert not [line for line in lines if line.startswith("# sbom ")]
    else:
        (entry,) = json.loads(text)
        assert entry["sbom"] == {}
        assert entry["sboms_not_attached"] == _sbom.NOT_ATTACHED_REASON
    repository = namespace.split("/", 1)[1] + "/brokkr-broker"
    tags = get(registry, f"{repository}/tags/list").json()["tags"]
    assert tags == ["pr-7"]  # no sha256-<hex> referrers tag
    assert sbom_scans(open_publishing) == []  # no SBOM is read that could not be attached


async def test_a_failed_attach_reports_what_was_and_was_not_attached(
    brokkr: ModuleCaller,
    publishing: StandInEngine,
    auth_registry: RegistryServer,
    monkeypatch: pytest.MonkeyPatch,
):
    real_attach = _referrers.attach
    refused: list[str] = []

    async def attach(client: RegistryClient, repository: Any, subject: str, *a: Any, **k: Any):
        manifest = await client.get_manifest(repository.with_digest(subject))
        config = await client.get_blob(repository, manifest.document["config"]["digest"])
        if json.loads(config)["architecture"] == "arm64":
            refused.append(subject)
            raise BrokkrError("the registry refused the artifact (simulated)")
        return await real_attach(client, repository, subject, *a, **k)

    monkeypatch.setattr(_referrers, "attach", attach)
    namespace = f"{auth_registry.registry}/t{uuid.uuid4().hex[:10]}"
    with pytest.raises(FunctionError) as info:
        await publish_with_credentials(
            brokkr, auth_registry, namespace, ref="refs/heads/main", component="BROKER"
        )
    message = str(info.value)
    (arm64,) = refused
    assert "the images were pushed and verified" in message
    assert f"{namespace}/brokkr-broker:main@sha256:" in message
    assert f"SBOMs were not attached to: {namespace}/brokkr-broker@{arm64} (linux/arm64)" in message
    assert "Attached: linux/amd64 " in message
    # The amd64 SBOM is there, found through its fallback tag.
    repository = namespace.split("/", 1)[1] + "/brokkr-broker"
    amd64 = platform_digests(auth_registry, repository, "main")["linux/amd64"]
    assert fallback_index(auth_registry, repository, amd64)["manifests"][0]["artifactType"] == SBOM
    assert (
        get(auth_registry, f"{repository}/manifests/{_referrers.fallback_tag(arm64)}").status_code
        == 404
    )


async def test_failed_attaches_and_failed_signatures_are_reported_together(
    brokkr: ModuleCaller,
    publishing: StandInEngine,
    auth_registry: RegistryServer,
    monkeypatch: pytest.MonkeyPatch,
):
    # arm64's SBOM and the index's signature fail; what was pushed, attached and signed
    # is all in the one error.
    real_attach, real_sign = _referrers.attach, _signing.sign_manifest
    digests: dict[str, str] = {}

    async def attach(client: RegistryClient, repository: Any, subject: str, *a: Any, **k: Any):
        if subject == digests["linux/arm64"]:
            raise BrokkrError("the registry refused the artifact (simulated)")
        return await real_attach(client, repository, subject, *a, **k)

    async def sign_manifest(client: RegistryClient, repository: Any, digest: str, *a, **k):
        if digest not in digests.values():  # the index
            raise BrokkrError("the registry refused the signature (simulated)")
        return await real_sign(client, repository, digest, *a, **k)

    monkeypatch.setattr(_referrers, "attach", attach)
    monkeypatch.setattr(_signing, "sign_manifest", sign_manifest)
    # The platform digests, learnt as the attaches start (signing comes after them).
    real_attach_sboms = _deliver.attach_sboms

    async def attach_sboms(targets: Any, *a: Any, **k: Any):
        digests.update(targets[0].platform_digests)
        return await real_attach_sboms(targets, *a, **k)

    monkeypatch.setattr(_deliver, "attach_sboms", attach_sboms)
    private, _ = pem_pair()
    publishing.env["COSIGN_KEY"] = private
    namespace = f"{auth_registry.registry}/t{uuid.uuid4().hex[:10]}"
    with pytest.raises(FunctionError) as info:
        await publish_with_credentials(
            brokkr,
            auth_registry,
            namespace,
            ref="refs/heads/main",
            component="BROKER",
            signing_key=await dag.secret("env://COSIGN_KEY").id(),
        )
    message = str(info.value)
    repository = f"{namespace}/brokkr-broker"
    amd64, arm64 = digests["linux/amd64"], digests["linux/arm64"]
    assert "the images were pushed and verified" in message
    assert f"{repository}:main@sha256:" in message
    assert f"{repository}:main-sha-0123456@sha256:" in message
    assert f"SBOMs were not attached to: {repository}@{arm64} (linux/arm64): " in message
    assert f"Attached: linux/amd64 {repository}@{amd64}: " in message
    assert "Signing failed for: " in message
    assert "refused the signature (simulated)" in message
    assert f"linux/amd64 {repository}@{amd64}: {repository}:{signature_tag(amd64)}" in message
    assert f"linux/arm64 {repository}@{arm64}: {repository}:{signature_tag(arm64)}" in message


def test_fallback_tag_is_the_digest_with_a_dash():
    digest = "sha256:" + "ab" * 32
    assert _referrers.fallback_tag(digest) == "sha256-" + "ab" * 32
    assert parse_reference(f"r.io/x:{_referrers.fallback_tag(digest)}").tag is not None


# -- a GHCR-shaped registry ----------------------------------------------------------------

GHCR_USER = "brokkr-bot"
GHCR_TOKEN = "ghp_not-a-real-token-4c1d"  # distinctive enough to look for


@pytest.fixture
def ghcr(registry: RegistryServer):
    """GHCR's shape in front of the real registry, and the rate-limited page elsewhere."""
    with (
        RateLimitedPage() as page,
        ghcr_shaped(registry, page, username=GHCR_USER, password=GHCR_TOKEN) as proxy,
    ):
        yield proxy, page


async def test_publish_and_inspect_with_credentials_on_a_ghcr_shaped_registry(
    engine: StandInEngine,
    fixture_source: str,
    ghcr: tuple[RegistryProxy, RateLimitedPage],
    registry: RegistryServer,
):
    """No referrers API, /referrers/ -> 303 -> 429 HTML elsewhere, no OCI-Subject: every SBOM
    goes through the tag schema, inspect finds them, and nothing reaches the other origin."""
    proxy, page = ghcr
    answer_image_reads(engine)
    engine.on_publish = push_to_registry(engine, registry=proxy.registry, base_url=proxy.base_url)
    engine.env["GITHUB_TOKEN"] = GHCR_TOKEN
    brokkr = ModuleCaller(engine, fixture_source)
    namespace = f"{proxy.registry}/t{uuid.uuid4().hex[:10]}"
    secret = await dag.secret("env://GITHUB_TOKEN").id()

    text = await brokkr.call(
        "publish",
        sha=SHA,
        registry=namespace,
        username=GHCR_USER,
        password=secret,
        ref="refs/tags/v1.2.3",
        format="JSON",
    )
    # One entry per pushed tag; the first of each repository stands for it.
    entries = {e["repository"]: e for e in reversed(json.loads(text))}
    assert len(entries) == 3  # broker, agent, ui
    for entry in entries.values():
        assert entry["sboms_not_attached"] is None
        repository = entry["repository"].split("/", 1)[1]
        digests = platform_digests(registry, repository, "1.2.3")
        assert set(entry["sbom"]) == set(digests) == {"linux/amd64", "linux/arm64"}
        for platform, subject in digests.items():
            (listed,) = fallback_index(registry, repository, subject)["manifests"]
            assert listed["artifactType"] == SBOM
            assert entry["sbom"][platform] == listed["digest"]

        info = await brokkr.call(
            "inspect", address=f"{entry['repository']}:1.2.3", username=GHCR_USER, password=secret
        )
        assert [p["sbom"] for p in info["platforms"]] == [True, True]

    assert proxy.hits("/referrers/") > 0  # it was asked, and answered 303 ...
    assert page.seen == []  # ... which was never followed: no request, no credential there
    assert {t.username for t in proxy.token_requests} == {GHCR_USER}


# -- concurrent attaches to one repository ---------------------------------------------------

STRESS_ROUNDS = 200
STRESS_PLATFORMS = ("linux/amd64", "linux/arm64")


async def test_concurrent_attaches_to_one_repository_hold_up(registry: RegistryServer):
    """Each round attaches an SBOM to every platform manifest of one repository at once (the
    shared empty config blob uploaded concurrently, as publish does): no round fails, and
    every SBOM is listed under its subject's tag."""
    repository = f"t{uuid.uuid4().hex[:10]}/brokkr-broker"
    push_image(registry.base_url, repository, "1.0.0", platforms=STRESS_PLATFORMS)
    subjects = list(platform_digests(registry, repository, "1.0.0").values())
    repo = parse_repository(f"{registry.registry}/{repository}")
    failures: list[str] = []
    attached: dict[str, list[str]] = {subject: [] for subject in subjects}
    async with RegistryClient(backoff=0) as client:
        for round_number in range(STRESS_ROUNDS):

            async def one(subject: str, round_number: int = round_number) -> None:
                blob = json.dumps({"round": round_number, "subject": subject}).encode()
                try:
                    done = await _referrers.attach(client, repo, subject, blob, artifact_type=SBOM)
                except BrokkrError as e:
                    failures.append(f"round {round_number}: {e}")
                else:
                    attached[subject].append(done.digest)

            await run_all([lambda s=s: one(s) for s in subjects])
    assert failures == []
    for subject in subjects:
        listed = [e["digest"] for e in fallback_index(registry, repository, subject)["manifests"]]
        assert listed == attached[subject]
        assert len(listed) == STRESS_ROUNDS
