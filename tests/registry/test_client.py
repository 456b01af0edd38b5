"""The OCI registry client against a real registry (Debian's docker-registry).

Bearer auth, tag pagination and injected failures come from ``RegistryProxy``,
a loopback server in front of the real registry; digest lies come from an
httpx transport that rewrites real responses.
"""

import hashlib
import json
import logging
from dataclasses import dataclass

import httpx
import pytest

from ci.errors import BrokkrError
from ci.registry.auth import parse_challenges
from ci.registry.client import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Credentials,
    RegistryClient,
    next_link,
    retry_delay,
)
from ci.rules.reference import ImageReference, parse_reference, parse_repository
from tests.support.registry_proxy import RegistryProxy
from tests.support.registry_server import (
    AUTH_PASSWORD,
    AUTH_USERNAME,
    BuiltImage,
    RegistryServer,
    build_image,
    free_port,
    push_built_image,
    push_image,
)

REPO = "brokkr/client-broker"
MISSING_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class Pushed:
    server: RegistryServer
    multi: BuiltImage  # REPO:1.2.3, two platforms plus attestations
    single: BuiltImage  # brokkr/client-single:1, one linux/arm/v7 manifest
    docker: BuiltImage  # brokkr/client-docker:1, Docker media types
    many_tags: list[str]  # brokkr/client-many


@pytest.fixture(scope="module")
def pushed(registry: RegistryServer) -> Pushed:
    multi = build_image(seed="client", attestation=True, layers=2)
    push_built_image(registry.base_url, REPO, ["1.2.3", "latest"], multi)
    single = build_image(["linux/arm/v7"], seed="client-single", index=False)
    push_built_image(registry.base_url, "brokkr/client-single", ["1"], single)
    docker = build_image(seed="client-docker", media_types="docker")
    push_built_image(registry.base_url, "brokkr/client-docker", ["1"], docker)
    many_tags = [f"v{i}" for i in range(7)]
    push_image(registry.base_url, "brokkr/client-many", many_tags, seed="many")
    return Pushed(registry, multi, single, docker, many_tags)


@pytest.fixture
def proxy(registry: RegistryServer):
    with RegistryProxy(registry) as running:
        yield running


@pytest.fixture
def bearer_proxy(registry: RegistryServer):
    with RegistryProxy(
        registry, bearer=True, username=AUTH_USERNAME, password=AUTH_PASSWORD
    ) as running:
        yield running


def client(**options) -> RegistryClient:
    options.setdefault("backoff", 0)
    return RegistryClient(**options)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# Reading manifests and images ------------------------------------------------------


@pytest.mark.registry
async def test_inspect_two_platform_index(pushed: Pushed):
    ref = parse_reference(pushed.server.address(REPO, "1.2.3"))
    async with client() as registry_client:
        description = await registry_client.inspect(ref)
    assert description.reference == ref
    assert description.digest == pushed.multi.top_digest
    assert description.media_type == OCI_INDEX
    assert [p.platform for p in description.platforms] == ["linux/amd64", "linux/arm64"]
    index = json.loads(pushed.multi.manifests[-1][1])
    platform_digests = [
        entry["digest"] for entry in index["manifests"] if entry["platform"]["os"] == "linux"
    ]
    assert [p.digest for p in description.platforms] == platform_digests
    assert {p.platform: p.size for p in description.platforms} == pushed.multi.sizes
    assert all(p.size > 0 for p in description.platforms)


@pytest.mark.registry
async def test_inspect_single_platform_manifest_reads_the_platform_from_the_config(
    pushed: Pushed,
):
    ref = parse_reference(pushed.server.address("brokkr/client-single", "1"))
    async with client() as registry_client:
        description = await registry_client.inspect(ref)
    assert description.digest == pushed.single.top_digest
    assert description.media_type == OCI_MANIFEST
    assert len(description.platforms) == 1
    (platform,) = description.platforms
    assert platform.platform == "linux/arm/v7"
    assert platform.digest == pushed.single.top_digest
    assert platform.size == pushed.single.sizes["linux/arm/v7"]


@pytest.mark.registry
async def test_inspect_docker_manifest_list(pushed: Pushed):
    ref = parse_reference(pushed.server.address("brokkr/client-docker", "1"))
    async with client() as registry_client:
        description = await registry_client.inspect(ref)
    assert description.media_type == DOCKER_MANIFEST_LIST
    assert description.digest == pushed.docker.top_digest
    assert {p.platform: p.size for p in description.platforms} == pushed.docker.sizes


@pytest.mark.registry
async def test_digest_references_and_tag_at_digest(pushed: Pushed):
    digest = pushed.multi.top_digest
    by_tag = parse_reference(pushed.server.address(REPO, "1.2.3"))
    by_digest = parse_reference(pushed.server.address(REPO, digest=digest))
    both = parse_reference(pushed.server.address(REPO, "1.2.3", digest))
    async with client() as registry_client:
        assert await registry_client.resolve_digest(by_tag) == digest
        assert await registry_client.resolve_digest(by_digest) == digest
        assert await registry_client.resolve_digest(both) == digest
        assert await registry_client.resolve_digest(by_tag.with_tag("latest")) == digest
        manifest = await registry_client.get_manifest(by_digest)
        assert manifest.is_index
        assert _sha256(manifest.body) == digest
        described = await registry_client.inspect(both)
        assert described.digest == digest
        assert len(described.platforms) == 2


@pytest.mark.registry
async def test_get_blob_returns_the_verified_config(pushed: Pushed):
    ref = parse_reference(pushed.server.address("brokkr/client-single", "1"))
    async with client() as registry_client:
        manifest = await registry_client.get_manifest(ref)
        config_digest = manifest.document["config"]["digest"]
        config = json.loads(await registry_client.get_blob(ref, config_digest))
        assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm", "v7")
        with pytest.raises(BrokkrError, match=f"not found: blob {MISSING_DIGEST}"):
            await registry_client.get_blob(ref, MISSING_DIGEST)


@pytest.mark.registry
async def test_unknown_repository_tag_and_digest_are_not_found(pushed: Pushed):
    server = pushed.server
    async with client() as registry_client:
        with pytest.raises(BrokkrError) as caught:
            await registry_client.inspect(parse_reference(server.address("brokkr/nothing", "1")))
        assert str(caught.value) == (
            f"not found: {server.address('brokkr/nothing', '1')} "
            "(the registry has no repository brokkr/nothing)"
        )
        with pytest.raises(BrokkrError) as caught:
            await registry_client.inspect(parse_reference(server.address(REPO, "9.9.9")))
        assert str(caught.value) == (
            f"not found: {server.address(REPO, '9.9.9')} (no tag 9.9.9 in {server.registry}/{REPO})"
        )
        with pytest.raises(BrokkrError, match=f"no manifest with digest {MISSING_DIGEST}"):
            await registry_client.get_manifest(
                parse_reference(server.address(REPO, digest=MISSING_DIGEST))
            )


@pytest.mark.registry
async def test_not_found_is_not_retried(pushed: Pushed, proxy: RegistryProxy):
    async with client(attempts=4) as registry_client:
        with pytest.raises(BrokkrError, match="not found"):
            await registry_client.get_manifest(parse_reference(proxy.address(REPO, "9.9.9")))
    assert proxy.hits("/manifests/9.9.9") == 1


# Tags ------------------------------------------------------------------------------


@pytest.mark.registry
async def test_list_tags_from_the_real_registry(pushed: Pushed):
    repository = parse_repository(pushed.server.address("brokkr/client-many"))
    async with client() as registry_client:
        tags = await registry_client.list_tags(repository)
    assert sorted(tags) == pushed.many_tags


@pytest.mark.registry
async def test_list_tags_follows_link_pagination(pushed: Pushed, proxy: RegistryProxy):
    repository = parse_repository(proxy.address("brokkr/client-many"))
    async with client() as registry_client:
        tags = await registry_client.list_tags(repository, page_size=2)
    assert tags == pushed.many_tags  # the proxy pages in sorted order
    pages = [path for method, path, _ in proxy.requests if "/tags/list" in path]
    assert len(pages) == 4  # 7 tags, 2 per page
    assert pages[0].endswith("/tags/list?n=2")
    assert all("n=2" in page for page in pages)
    assert [p.rsplit("last=", 1)[-1] for p in pages[1:]] == ["v1", "v3", "v5"]


@pytest.mark.registry
async def test_list_tags_of_an_unknown_repository(pushed: Pushed):
    repository = parse_repository(pushed.server.address("brokkr/none-such"))
    async with client() as registry_client:
        with pytest.raises(BrokkrError, match=r"^not found: 127\.0\.0\.1:\d+/brokkr/none-such"):
            await registry_client.list_tags(repository)
        assert await registry_client.list_tags(repository, missing_ok=True) == []


async def test_list_tags_refuses_a_link_to_another_server():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"name": "org/name", "tags": ["a"]},
            headers={
                "Link": '<https://elsewhere.example/v2/org/name/tags/list?last=a>; rel="next"'
            },
        )

    repository = parse_repository("registry.example.com/org/name")
    async with client(transport=httpx.MockTransport(answer)) as registry_client:
        with pytest.raises(BrokkrError, match="links to another server"):
            await registry_client.list_tags(repository)


def test_next_link_parsing():
    def link(value: str) -> str | None:
        return next_link([value])

    assert link('</v2/a/tags/list?n=2&last=b>; rel="next"') == "/v2/a/tags/list?n=2&last=b"
    assert link("</v2/a/tags/list?last=b>; rel=next") == "/v2/a/tags/list?last=b"
    assert link('</first>; rel="prev", </second>; rel="next"') == "/second"
    assert link('</first>; rel="prev"') is None
    assert next_link([]) is None


# Digests ---------------------------------------------------------------------------


class LyingTransport(httpx.AsyncBaseTransport):
    """Sends requests to the real registry, then rewrites manifest responses."""

    def __init__(self, *, header: str | None = None, drop_header: bool = False, body_suffix=b""):
        self._inner = httpx.AsyncHTTPTransport()
        self._header = header
        self._drop_header = drop_header
        self._body_suffix = body_suffix

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if "/manifests/" not in request.url.path:
            return response
        body = await response.aread() + self._body_suffix
        headers = [
            (k, v)
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "docker-content-digest")
        ]
        if self._header is not None:
            headers.append(("Docker-Content-Digest", self._header))
        elif not self._drop_header:
            headers.append(("Docker-Content-Digest", response.headers["docker-content-digest"]))
        return httpx.Response(response.status_code, headers=headers, content=body)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.mark.registry
async def test_a_lying_digest_header_is_detected(pushed: Pushed):
    ref = parse_reference(pushed.server.address(REPO, "1.2.3"))
    transport = LyingTransport(header=MISSING_DIGEST)
    async with client(transport=transport) as registry_client:
        with pytest.raises(BrokkrError) as caught:
            await registry_client.get_manifest(ref)
    assert str(caught.value) == (
        f"digest mismatch for {ref}: the registry says {MISSING_DIGEST} but the manifest it "
        f"sent hashes to {pushed.multi.top_digest}"
    )


@pytest.mark.registry
async def test_a_tampered_body_is_detected(pushed: Pushed):
    ref = parse_reference(pushed.server.address(REPO, "1.2.3"))
    async with client(transport=LyingTransport(body_suffix=b" ")) as registry_client:
        with pytest.raises(BrokkrError, match=r"digest mismatch.*the registry says"):
            await registry_client.get_manifest(ref)


@pytest.mark.registry
async def test_a_digest_reference_must_match_the_body(pushed: Pushed):
    ref = parse_reference(pushed.server.address(REPO, digest=pushed.multi.top_digest))
    transport = LyingTransport(drop_header=True, body_suffix=b"\n")
    async with client(transport=transport) as registry_client:
        with pytest.raises(BrokkrError, match=f"asked for {pushed.multi.top_digest} but"):
            await registry_client.get_manifest(ref)
    # Without a header and without a digest to compare, the digest is computed.
    async with client(transport=LyingTransport(drop_header=True)) as registry_client:
        manifest = await registry_client.get_manifest(ref.with_tag("1.2.3"))
    assert manifest.digest == pushed.multi.top_digest


# Auth ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_pushed(auth_registry: RegistryServer) -> str:
    return push_image(
        auth_registry.base_url, "brokkr/private", "1", auth=auth_registry.auth, seed="private"
    )


@pytest.mark.registry
async def test_basic_auth(auth_registry: RegistryServer, auth_pushed: str):
    ref = parse_reference(auth_registry.address("brokkr/private", "1"))
    credentials = Credentials(AUTH_USERNAME, AUTH_PASSWORD)
    async with client(credentials=credentials) as registry_client:
        description = await registry_client.inspect(ref)
        assert description.digest == auth_pushed
        assert await registry_client.list_tags(parse_repository(ref.name)) == ["1"]


@pytest.mark.registry
async def test_basic_auth_required(auth_registry: RegistryServer, auth_pushed: str):
    ref = parse_reference(auth_registry.address("brokkr/private", "1"))
    async with client() as registry_client:
        with pytest.raises(BrokkrError) as caught:
            await registry_client.inspect(ref)
    message = str(caught.value)
    assert message.startswith(
        f"authentication required: {auth_registry.registry} refused anonymous access to {ref}"
    )
    assert "give a username and a password or token" in message


@pytest.mark.registry
async def test_basic_auth_refused(auth_registry: RegistryServer, auth_pushed: str, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-password-c0ffee"
    ref = parse_reference(auth_registry.address("brokkr/private", "1"))
    async with client(credentials=Credentials(AUTH_USERNAME, wrong)) as registry_client:
        with pytest.raises(BrokkrError) as caught:
            await registry_client.inspect(ref)
    message = str(caught.value)
    assert message.startswith(
        f"authentication refused: {auth_registry.registry} did not accept the credentials "
        f"of user {AUTH_USERNAME!r} for {ref}"
    )
    assert wrong not in message
    assert wrong not in caplog.text


@pytest.mark.registry
async def test_bearer_flow(pushed: Pushed, bearer_proxy: RegistryProxy, caplog):
    caplog.set_level(logging.DEBUG)
    ref = parse_reference(bearer_proxy.address(REPO, "1.2.3"))
    credentials = Credentials(AUTH_USERNAME, AUTH_PASSWORD)
    async with client(credentials=credentials) as registry_client:
        description = await registry_client.inspect(ref)
        assert description.digest == pushed.multi.top_digest
        assert len(description.platforms) == 2
        # The token is cached per scope: a second read asks for no new one.
        assert await registry_client.resolve_digest(ref) == pushed.multi.top_digest
        assert len(bearer_proxy.token_requests) == 1
        other = parse_repository(bearer_proxy.address("brokkr/client-many"))
        assert sorted(await registry_client.list_tags(other)) == pushed.many_tags
        # A missing tag: the error names the image, never the token or password.
        with pytest.raises(BrokkrError, match="not found") as caught:
            await registry_client.get_manifest(ref.with_tag("0.0.0"))
    assert [(t.service, t.scope, t.username) for t in bearer_proxy.token_requests] == [
        ("brokkr-proxy", f"repository:{REPO}:pull", AUTH_USERNAME),
        ("brokkr-proxy", "repository:brokkr/client-many:pull", AUTH_USERNAME),
    ]
    for secret in [AUTH_PASSWORD, *bearer_proxy.issued_tokens]:
        assert secret not in str(caught.value)
        assert secret not in caplog.text


@pytest.mark.registry
async def test_bearer_flow_refused_and_required(pushed: Pushed, bearer_proxy: RegistryProxy):
    ref = parse_reference(bearer_proxy.address(REPO, "1.2.3"))
    wrong = "not-the-password-5e11"
    async with client(credentials=Credentials(AUTH_USERNAME, wrong)) as registry_client:
        with pytest.raises(BrokkrError) as caught:
            await registry_client.get_manifest(ref)
    message = str(caught.value)
    assert message.startswith("authentication refused:")
    assert f"token service {bearer_proxy.registry}" in message
    assert wrong not in message
    async with client() as registry_client:
        with pytest.raises(BrokkrError, match=r"^authentication required:"):
            await registry_client.get_manifest(ref)
    assert bearer_proxy.token_requests == []  # refused requests do not get tokens


@pytest.mark.registry
async def test_anonymous_bearer_tokens(pushed: Pushed, registry: RegistryServer):
    with RegistryProxy(registry, bearer=True, service="anon") as anonymous:
        ref = parse_reference(anonymous.address(REPO, "1.2.3"))
        async with client() as registry_client:
            assert await registry_client.resolve_digest(ref) == pushed.multi.top_digest
        assert [(t.service, t.scope, t.username) for t in anonymous.token_requests] == [
            ("anon", f"repository:{REPO}:pull", None)
        ]


async def test_credentials_are_not_sent_to_a_plain_http_token_realm():
    def answer(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        return httpx.Response(
            401,
            headers={"WWW-Authenticate": 'Bearer realm="http://auth.example.com/token"'},
        )

    ref = parse_reference("registry.example.com/org/name:1")
    credentials = Credentials("me", "pw-123")
    async with client(credentials=credentials, transport=httpx.MockTransport(answer)) as c:
        with pytest.raises(BrokkrError, match=r"over plain HTTP .* refusing to send them"):
            await c.get_manifest(ref)


def test_credentials_never_show_the_password():
    credentials = Credentials("octocat", "ghp_secret_value")
    assert "ghp_secret_value" not in repr(credentials)
    assert "ghp_secret_value" not in str(credentials)
    assert "octocat" in repr(credentials)
    assert "ghp_secret_value" not in repr([credentials])
    with pytest.raises(BrokkrError, match="both a username and a password"):
        Credentials("octocat", "")


def test_challenge_parsing():
    headers = [
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",'
        'scope="repository:colliery-io/brokkr-broker:pull"',
        'Basic realm="registry", charset="UTF-8"',
    ]
    assert parse_challenges(headers) == {
        "bearer": {
            "realm": "https://ghcr.io/token",
            "service": "ghcr.io",
            "scope": "repository:colliery-io/brokkr-broker:pull",
        },
        "basic": {"realm": "registry", "charset": "UTF-8"},
    }
    combined = ['Newauth realm="a", type=1, Basic realm="b"']
    assert parse_challenges(combined) == {
        "newauth": {"realm": "a", "type": "1"},
        "basic": {"realm": "b"},
    }


# Retries ---------------------------------------------------------------------------


@pytest.mark.registry
async def test_a_500_that_recovers_is_retried(pushed: Pushed, proxy: RegistryProxy, caplog):
    caplog.set_level(logging.INFO, logger="ci.registry")
    proxy.fail(2, status=500, match="/manifests/1.2.3")
    ref = parse_reference(proxy.address(REPO, "1.2.3"))
    async with client(attempts=4) as registry_client:
        assert await registry_client.resolve_digest(ref) == pushed.multi.top_digest
    assert proxy.hits("/manifests/1.2.3") == 3
    assert [status for _, path, status in proxy.requests if "1.2.3" in path] == [500, 500, 200]
    assert "retrying" in caplog.text
    assert "(attempt 2 of 4)" in caplog.text


@pytest.mark.registry
async def test_a_500_that_never_recovers_is_bounded(pushed: Pushed, proxy: RegistryProxy):
    proxy.fail(100, status=503, match="/manifests/")
    ref = parse_reference(proxy.address(REPO, "1.2.3"))
    async with client(attempts=3) as registry_client:
        with pytest.raises(BrokkrError) as caught:
            await registry_client.inspect(ref)
    assert str(caught.value) == (
        f"registry {proxy.registry} unreachable or failing for {ref} after 3 attempts: "
        "HTTP 503 Service Unavailable (unavailable)"
    )
    assert proxy.hits("/manifests/") == 3


@pytest.mark.registry
@pytest.mark.parametrize("status", [408, 429, 502])
async def test_other_transient_statuses_are_retried(
    pushed: Pushed, proxy: RegistryProxy, status: int
):
    # Retry-After asks for an hour; max_delay bounds the wait.
    proxy.fail(1, status=status, match="/tags/list", headers={"Retry-After": "3600"})
    repository = parse_repository(proxy.address("brokkr/client-many"))
    async with client(attempts=2, max_delay=0) as registry_client:
        assert sorted(await registry_client.list_tags(repository)) == pushed.many_tags
    assert proxy.hits("/tags/list") == 2


@pytest.mark.registry
async def test_auth_failures_are_not_retried(pushed: Pushed, bearer_proxy: RegistryProxy):
    ref = parse_reference(bearer_proxy.address(REPO, "1.2.3"))
    async with client(attempts=4) as registry_client:
        with pytest.raises(BrokkrError, match="authentication required"):
            await registry_client.get_manifest(ref)
    # One request, its 401 challenge, one token request refused: nothing repeated.
    assert bearer_proxy.hits("/manifests/") == 1
    assert bearer_proxy.hits("/token") == 1


@pytest.mark.registry
async def test_403_is_access_denied_and_not_retried(pushed: Pushed, proxy: RegistryProxy):
    proxy.fail(5, status=403, match="/manifests/")
    ref = parse_reference(proxy.address(REPO, "1.2.3"))
    async with client(attempts=4) as registry_client:
        with pytest.raises(BrokkrError, match=f"^access denied to {ref} for anonymous"):
            await registry_client.get_manifest(ref)
    assert proxy.hits("/manifests/") == 1


async def test_an_unreachable_registry_fails_after_the_attempts():
    port = free_port()  # nothing listens there
    ref = ImageReference(f"127.0.0.1:{port}", "brokkr/broker", "1")
    calls = 0

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal calls
            calls += 1
            return await super().handle_async_request(request)

    async with client(attempts=3, transport=Counting()) as registry_client:
        with pytest.raises(BrokkrError) as caught:
            await registry_client.get_manifest(ref)
    message = str(caught.value)
    assert message.startswith(
        f"registry 127.0.0.1:{port} unreachable or failing for {ref} after 3 attempts: ConnectError"
    )
    assert "Traceback" not in message
    assert calls == 3


@pytest.mark.parametrize(
    ("failures", "backoff", "retry_after", "expected"),
    [
        (1, 0.5, None, 0.5),
        (2, 0.5, None, 1.0),
        (3, 0.5, None, 2.0),
        (10, 0.5, None, 30.0),  # bounded by max_delay
        (1, 0.0, None, 0.0),
        (1, 0.5, "4", 4.0),  # Retry-After lengthens
        (3, 0.5, "1", 2.0),  # but never shortens
        (1, 0.5, "86400", 30.0),  # and is bounded too
        (1, 0.5, "garbage", 0.5),
        (1, 0.5, "Wed, 21 Oct 2015 07:28:00 GMT", 0.5),  # a date in the past
    ],
)
def test_retry_delay(failures, backoff, retry_after, expected):
    delay = retry_delay(failures, backoff=backoff, max_delay=30.0, retry_after=retry_after)
    assert delay == pytest.approx(expected)


def test_retry_delay_honours_a_future_http_date():
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    assert retry_delay(1, backoff=0, max_delay=7.0, retry_after=future) == 7.0


def test_client_options_are_checked():
    with pytest.raises(ValueError, match="attempts"):
        RegistryClient(attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RegistryClient(backoff=-1)


# Writing ---------------------------------------------------------------------------


def _artifact(seed: str) -> tuple[bytes, bytes, bytes]:
    """A config, a layer and an OCI 1.1 artifact manifest over them."""
    config = b"{}"
    layer = json.dumps({"seed": seed}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/spdx+json",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": _sha256(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/spdx+json", "digest": _sha256(layer), "size": len(layer)}
            ],
        }
    ).encode()
    return config, layer, manifest


@pytest.mark.registry
async def test_push_blob_and_manifest_then_read_them_back(registry: RegistryServer):
    ref = parse_reference(registry.address("brokkr/client-write", "art"))
    config, layer, manifest = _artifact("write")
    async with client() as registry_client:
        assert await registry_client.push_blob(ref, config) == _sha256(config)
        assert await registry_client.push_blob(ref, layer) == _sha256(layer)
        assert await registry_client.get_blob(ref, _sha256(layer)) == layer
        digest = await registry_client.push_manifest(ref, "art", manifest, OCI_MANIFEST)
        assert digest == _sha256(manifest)
        by_digest = await registry_client.push_manifest(ref, digest, manifest, OCI_MANIFEST)
        assert by_digest == digest
        fetched = await registry_client.fetch_manifest_or_none(ref)
        assert fetched is not None
        assert (fetched.digest, fetched.media_type, fetched.body) == (
            digest,
            OCI_MANIFEST,
            manifest,
        )


@pytest.mark.registry
async def test_push_blob_skips_a_blob_the_registry_has(registry: RegistryServer):
    with RegistryProxy(registry) as proxy:
        ref = parse_reference(proxy.address("brokkr/client-write", "x"))
        data = b"the same bytes twice"
        async with client() as registry_client:
            assert await registry_client.push_blob(ref, data) == _sha256(data)
            assert await registry_client.push_blob(ref, data) == _sha256(data)
        methods = [method for method, path, _ in proxy.requests if "/blobs/" in path]
        assert methods == ["HEAD", "POST", "PUT", "HEAD"]


@pytest.mark.registry
async def test_push_blob_of_a_large_blob_the_registry_has(registry: RegistryServer):
    # HEAD answers with the blob's Content-Length (1 MiB, more than any answer
    # body the client reads): it describes the blob, not a body to read.
    ref = parse_reference(registry.address("brokkr/client-write", "big"))
    big = bytes(range(256)) * 4096
    async with client() as registry_client:
        assert await registry_client.push_blob(ref, big) == _sha256(big)
        assert await registry_client.push_blob(ref, big) == _sha256(big)
        assert await registry_client.get_blob(ref, _sha256(big), len(big)) == big


@pytest.mark.registry
async def test_fetch_manifest_or_none_and_read_modify_write_of_a_tag(registry: RegistryServer):
    ref = parse_reference(registry.address("brokkr/client-rmw", f"sha256-{'ab' * 32}"))
    config, layer, manifest = _artifact("rmw")
    async with client() as registry_client:
        assert await registry_client.fetch_manifest_or_none(ref) is None
        for blob in (config, layer):
            await registry_client.push_blob(ref, blob)
        artifact = await registry_client.push_manifest(
            ref, _sha256(manifest), manifest, OCI_MANIFEST
        )
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        for round_ in range(2):
            current = await registry_client.fetch_manifest_or_none(ref)
            document = json.loads(current.body) if current else dict(index)
            document["manifests"].append(
                {"mediaType": OCI_MANIFEST, "digest": artifact, "size": len(manifest)}
            )
            body = json.dumps(document).encode()
            await registry_client.push_manifest(ref, ref.tag, body, OCI_INDEX)
            assert (round_ == 0) == (current is None)
        final = await registry_client.fetch_manifest_or_none(ref)
    assert final is not None
    assert final.is_index
    assert [m["digest"] for m in final.document["manifests"]] == [artifact, artifact]


@pytest.mark.registry
async def test_push_with_basic_auth(auth_registry: RegistryServer):
    ref = parse_reference(auth_registry.address("brokkr/client-write", "auth"))
    config, layer, manifest = _artifact("basic")
    credentials = Credentials(AUTH_USERNAME, AUTH_PASSWORD)
    async with client(credentials=credentials) as registry_client:
        for blob in (config, layer):
            await registry_client.push_blob(ref, blob)
        digest = await registry_client.push_manifest(ref, "auth", manifest, OCI_MANIFEST)
        assert await registry_client.resolve_digest(ref) == digest
    async with client() as registry_client:
        with pytest.raises(BrokkrError, match=r"^authentication required"):
            await registry_client.push_blob(ref, b"anonymous")


@pytest.mark.registry
async def test_push_asks_for_a_push_token(registry: RegistryServer, caplog):
    caplog.set_level(logging.DEBUG)
    with RegistryProxy(
        registry, bearer=True, username=AUTH_USERNAME, password=AUTH_PASSWORD
    ) as proxy:
        ref = parse_reference(proxy.address("brokkr/client-bearer-write", "1"))
        config, layer, manifest = _artifact("bearer")
        credentials = Credentials(AUTH_USERNAME, AUTH_PASSWORD)
        async with client(credentials=credentials) as registry_client:
            for blob in (config, layer):
                await registry_client.push_blob(ref, blob)
            digest = await registry_client.push_manifest(ref, "1", manifest, OCI_MANIFEST)
            assert await registry_client.resolve_digest(ref) == digest
        scopes = [t.scope for t in proxy.token_requests]
        assert scopes == [
            "repository:brokkr/client-bearer-write:pull,push",
            "repository:brokkr/client-bearer-write:pull",
        ]
        for secret in [AUTH_PASSWORD, *proxy.issued_tokens]:
            assert secret not in caplog.text


@pytest.mark.registry
async def test_push_retries_a_transient_failure(registry: RegistryServer):
    with RegistryProxy(registry) as proxy:
        ref = parse_reference(proxy.address("brokkr/client-write", "retry"))
        config, layer, manifest = _artifact("retry")
        async with client(attempts=3) as registry_client:
            for blob in (config, layer):
                await registry_client.push_blob(ref, blob)
            proxy.fail(1, status=503, match="/manifests/retry")
            digest = await registry_client.push_manifest(ref, "retry", manifest, OCI_MANIFEST)
        assert digest == _sha256(manifest)
        assert [s for m, p, s in proxy.requests if m == "PUT" and "retry" in p] == [503, 201]


async def test_push_manifest_checks_the_registry_digest():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, headers={"Docker-Content-Digest": MISSING_DIGEST})

    ref = parse_reference("registry.example.com/org/name:1")
    async with client(transport=httpx.MockTransport(answer)) as registry_client:
        with pytest.raises(BrokkrError, match="digest mismatch pushing"):
            await registry_client.push_manifest(ref, "1", b"{}", OCI_MANIFEST)
        with pytest.raises(BrokkrError, match="does not hash to"):
            await registry_client.push_manifest(ref, MISSING_DIGEST, b"{}", OCI_MANIFEST)
