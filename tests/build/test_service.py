"""`--registry-service`: a loopback registry address reached through a Dagger service.

The address names one loopback port where nothing listens (as `localhost:5000`
names nothing inside the module's container); the real registry (Debian's
docker-registry) listens on another. The registry client must connect to the
service's endpoint while the address stays in URLs, the `Host` header (so the
registry's `Location` and `Link` answers name it), auth and messages; the
engine's pushes must carry the service as `Container.publish`'s
`registryService`.
"""

import hashlib
import json
import uuid
from pathlib import Path

import dagger
import httpx
import pytest
from dagger import dag
from dagger.mod._exceptions import FunctionError

from ci.errors import BrokkrError
from ci.registry.auth import Credentials
from ci.registry.client import RegistryClient
from ci.registry.transport import ConnectTo
from ci.rules.reference import parse_reference, parse_repository
from tests.support.publishing import RECIPE, image_pushes, pem_pair
from tests.support.registry_server import RegistryServer, build_image, free_port, push_image
from tests.support.sbom_inputs import answer_image_reads
from tests.support.standin import ModuleCaller, StandInEngine, push_to_registry, service_endpoint

pytestmark = [pytest.mark.registry, pytest.mark.usefixtures("no_waiting")]

SHA = "0123456789abcdef0123456789abcdef01234567"


class Recording(httpx.AsyncBaseTransport):
    """Real HTTP, remembering what was dialled, the Host sent and any Location answered."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str, str | None]] = []
        self.locations: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, str(request.url), request.headers.get("host")))
        response = await self.inner.handle_async_request(request)
        if "location" in response.headers:
            self.locations.append(response.headers["location"])
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


async def manifest_answer(url: str, *, headers: dict[str, str]) -> httpx.Response:
    """A plain GET, bypassing the module's client."""
    async with httpx.AsyncClient() as client:
        return await client.get(url, headers=headers)


def moved(address_registry: str, server: RegistryServer) -> dict[str, tuple[str, int]]:
    return {address_registry: (server.host, server.port)}


@pytest.fixture
def address_registry() -> str:
    """A loopback registry address nothing listens on: only the override reaches a registry."""
    return f"localhost:{free_port()}"


def repository(address_registry: str) -> str:
    return f"{address_registry}/svc/t{uuid.uuid4().hex[:10]}"


# The connection override of the registry client ------------------------------------


async def test_push_read_back_and_tags_go_to_the_service_under_the_address(
    registry: RegistryServer, address_registry: str
):
    repo = parse_repository(repository(address_registry))
    image = build_image(["linux/amd64", "linux/arm64"], seed="moved")
    recording = Recording()
    async with RegistryClient(
        attempts=1, transport=recording, connect_to=moved(address_registry, registry)
    ) as client:
        for blob in image.blobs.values():
            await client.push_blob(repo, blob)
        for media_type, body in image.manifests[:-1]:
            await client.push_manifest(repo, _digest(body), body, media_type)
        media_type, body = image.manifests[-1]
        for tag in ("1.0.0", "1.0", "latest"):
            assert await client.push_manifest(repo, tag, body, media_type) == image.top_digest
        described = await client.inspect(repo.with_tag("1.0"))
        tags = await client.list_tags(repo, page_size=1)  # Link pagination, 3 pages

    assert described.digest == image.top_digest
    assert str(described.reference) == f"{repo.name}:1.0"
    assert sorted(p.platform for p in described.platforms) == ["linux/amd64", "linux/arm64"]
    assert sorted(tags) == ["1.0", "1.0.0", "latest"]
    # Every request was dialled to the registry's real port, with the address as Host.
    assert recording.sent
    for method, url, host in recording.sent:
        assert httpx.URL(url).netloc.decode() == registry.registry, (method, url)
        assert host == address_registry, (method, url)
    # The uploads followed the registry's Location, which names the address.
    assert recording.locations
    assert all(address_registry in location for location in recording.locations)
    uploads = [url for method, url, _ in recording.sent if method == "PUT" and "/uploads/" in url]
    assert len(uploads) == len(image.blobs)
    # What the registry holds is what was pushed (read without the module's client).
    served = await manifest_answer(
        f"{registry.base_url}/v2/{repo.repository}/manifests/1.0.0",
        headers={"Accept": media_type},
    )
    assert served.headers["docker-content-digest"] == image.top_digest


async def test_without_the_override_the_address_is_unreachable(
    registry: RegistryServer, address_registry: str
):
    repo = parse_repository(repository(address_registry))
    async with RegistryClient(attempts=1) as client:
        with pytest.raises(BrokkrError, match=f"registry {address_registry} unreachable"):
            await client.list_tags(repo)


async def test_only_the_named_registry_is_moved(registry: RegistryServer, address_registry: str):
    # The override points at a dead port: only requests for the address may go there.
    dead = free_port()
    direct = f"{registry.registry}/svc/t{uuid.uuid4().hex[:10]}"
    push_image(registry.base_url, direct.split("/", 1)[1], "1.0", seed="direct")
    other_port = f"localhost:{free_port()}/svc/x"
    recording = Recording()
    async with RegistryClient(
        attempts=1, transport=recording, connect_to={address_registry: ("127.0.0.1", dead)}
    ) as client:
        assert await client.list_tags(parse_repository(direct)) == ["1.0"]
        with pytest.raises(BrokkrError, match="unreachable"):
            await client.list_tags(parse_repository(other_port))
        with pytest.raises(BrokkrError, match=f"registry {address_registry} unreachable"):
            await client.list_tags(parse_repository(repository(address_registry)))
    dialled = [httpx.URL(url).netloc.decode() for _, url, _ in recording.sent]
    assert dialled == [registry.registry, other_port.split("/")[0], f"127.0.0.1:{dead}"]


async def test_credentials_and_messages_name_the_address(
    auth_registry: RegistryServer, address_registry: str
):
    assert auth_registry.username is not None
    assert auth_registry.password is not None
    repo = repository(address_registry)
    push_image(
        auth_registry.base_url, repo.split("/", 1)[1], "2.0", seed="a", auth=auth_registry.auth
    )
    login = Credentials(auth_registry.username, auth_registry.password)
    route = moved(address_registry, auth_registry)
    async with RegistryClient(attempts=1, credentials=login, connect_to=route) as client:
        described = await client.inspect(parse_reference(f"{repo}:2.0"))
    assert str(described.reference) == f"{repo}:2.0"
    wrong = Credentials(auth_registry.username, "not-the-password")
    async with RegistryClient(attempts=1, credentials=wrong, connect_to=route) as client:
        with pytest.raises(BrokkrError) as refused:
            await client.inspect(parse_reference(f"{repo}:2.0"))
    assert address_registry in str(refused.value)
    assert auth_registry.registry not in str(refused.value)


@pytest.mark.parametrize(
    "registry_name",
    ["ghcr.io", "registry.example:5000", "registry.localhost:5000", "10.0.0.1:5000"],
)
def test_only_loopback_registries_can_be_moved(registry_name: str):
    with pytest.raises(ValueError, match="loopback"):
        RegistryClient(connect_to={registry_name: ("127.0.0.1", 5000)})


async def test_connect_to_moves_only_the_connection():
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    transport = ConnectTo(
        {"http://localhost:5999": ("svc-host", 4000), "http://[::1]": ("v6-host", 81)},
        httpx.MockTransport(answer),
    )
    async with httpx.AsyncClient(transport=transport) as client:
        await client.put("http://localhost:5999/v2/x/blobs/uploads/1?digest=a", content=b"x")
        await client.get("http://localhost:6000/v2/")
        await client.get("https://localhost:5999/v2/")
        await client.get("http://[::1]:80/v2/")
    rewritten, other_port, other_scheme, v6 = seen
    assert str(rewritten.url) == "http://svc-host:4000/v2/x/blobs/uploads/1?digest=a"
    assert rewritten.headers["host"] == "localhost:5999"
    assert rewritten.read() == b"x"
    assert str(other_port.url) == "http://localhost:6000/v2/"
    assert str(other_scheme.url) == "https://localhost:5999/v2/"
    assert (v6.url.host, v6.url.port, v6.headers["host"]) == ("v6-host", 81, "[::1]")


@pytest.mark.parametrize(
    "routes",
    [
        {"ftp://localhost:21": ("h", 1)},
        {"http://localhost:5000/v2": ("h", 1)},
        {"http://localhost:5000": ("", 1)},
        {"http://localhost:5000": ("h", 70000)},
    ],
)
def test_connect_to_refuses_what_is_not_an_origin_and_an_endpoint(routes):
    with pytest.raises(ValueError, match=r"^not an? (http|host)"):
        ConnectTo(routes)


# Through the module, on the stand-in engine -----------------------------------------


async def host_service(address_registry: str, server: RegistryServer) -> str:
    """`--registry-service`: the address's port forwarded to the registry's real port."""
    port = int(address_registry.rpartition(":")[2])
    service = dag.host().service(
        [dagger.PortForward(frontend=port, backend=server.port)], host=server.host
    )
    return await service.id()


async def test_the_standin_answers_host_service_endpoints(engine: StandInEngine):
    service = dag.host().service(
        [dagger.PortForward(frontend=5999, backend=41234), dagger.PortForward(backend=7000)],
        host="127.0.0.1",
    )
    started = await service.start()
    assert await started.endpoint(port=5999) == "127.0.0.1:41234"
    assert await started.endpoint(port=7000, scheme="http") == "http://127.0.0.1:7000"
    assert await started.endpoint() == "127.0.0.1:41234"  # the first port
    with pytest.raises(dagger.QueryError, match="forwards no port 5000"):
        await started.endpoint(port=5000)
    cli = dag.address("tcp://localhost:5000").service()  # what --registry-service makes
    assert await cli.endpoint(port=5000) == "localhost:5000"
    node = engine.node(await cli.id())
    assert service_endpoint(node, 5000) == "localhost:5000"
    with pytest.raises(dagger.QueryError, match="at least one port"):
        await dag.host().service([]).start()


def key_pair(tmp_path: Path) -> tuple[str, Path]:
    private, public = pem_pair()
    (tmp_path / "cosign.pub").write_bytes(public)
    return private, tmp_path / "cosign.pub"


async def test_publish_and_read_back_through_the_registry_service(
    brokkr: ModuleCaller,
    engine: StandInEngine,
    registry: RegistryServer,
    address_registry: str,
    tmp_path: Path,
):
    # Nothing listens at the address: the pushes reach the registry only through the
    # service they carry, the module's reads only through the service's endpoint.
    answer_image_reads(engine)  # a loopback address: SBOMs are attached without a login
    engine.container_files["/app/recipe.json"] = RECIPE
    engine.on_publish = push_to_registry(engine, registry=address_registry, base_url=None)
    service_id = await host_service(address_registry, registry)
    namespace = f"{address_registry}/t{uuid.uuid4().hex[:10]}"
    private, public = key_pair(tmp_path)
    engine.env["COSIGN_KEY"] = private
    published = json.loads(
        await brokkr.call(
            "publish",
            ref="refs/tags/v1.2.3",
            sha=SHA,
            registry=namespace,
            component="BROKER",
            signing_key=await dag.secret("env://COSIGN_KEY").id(),
            format="JSON",
            registry_service=service_id,
        )
    )

    address = f"{namespace}/brokkr-broker:1.2.3"
    assert sorted(entry["tag"] for entry in published) == ["1", "1.2", "1.2.3", "latest"]
    assert {entry["repository"] for entry in published} == {f"{namespace}/brokkr-broker"}
    assert len(image_pushes(engine)) == 4
    for push in engine.pushes:  # the dependency cache's pushes go through it too
        assert push.address.startswith(
            (f"{namespace}/brokkr-broker:", f"{namespace}/brokkr-build-cache:deps-")
        )
        assert push.registry_service is engine.node(service_id)
    for entry in published:  # signed and SBOMs attached through the service, no login
        assert sorted(entry["sbom"]) == ["linux/amd64", "linux/arm64"]
        assert entry["sboms_not_attached"] is None
    # The module's own reads through the service: inspect, list-tags, sizes, verify.
    info = await brokkr.call("inspect", address=address, registry_service=service_id)
    assert info["digest"] == published[0]["digest"]
    tags = await brokkr.call(
        "list_tags", repository=f"{namespace}/brokkr-broker", registry_service=service_id
    )
    assert [t for t in tags if not t.startswith("sha256-")] == ["1", "1.2", "1.2.3", "latest"]
    assert len([t for t in tags if t.endswith(".sig")]) == 3  # the index and 2 platforms
    referrer_tags = [t for t in tags if t.startswith("sha256-") and not t.endswith(".sig")]
    assert len(referrer_tags) == 2  # each platform's SBOM, under the fallback tag
    table = await brokkr.call("sizes", address=address, registry_service=service_id)
    assert f"| {address} | linux/amd64 |" in table
    report = await brokkr.call(
        "verify",
        address=address,
        public_key=await dag.host().file(str(public)).id(),
        registry_service=service_id,
    )
    assert address_registry in report
    # The same calls without the service reach nothing.
    with pytest.raises(FunctionError, match=f"registry {address_registry} unreachable"):
        await brokkr.call("list_tags", repository=f"{namespace}/brokkr-broker")


async def test_sboms_are_attached_through_the_registry_service(
    engine: StandInEngine,
    auth_registry: RegistryServer,
    address_registry: str,
    fixture_source: str,
):
    assert auth_registry.password is not None
    answer_image_reads(engine)  # with credentials, publish reads and attaches SBOMs
    engine.container_files["/app/recipe.json"] = RECIPE
    engine.on_publish = push_to_registry(engine, registry=address_registry, base_url=None)
    engine.env["GITHUB_TOKEN"] = auth_registry.password
    namespace = f"{address_registry}/t{uuid.uuid4().hex[:10]}"
    output = await ModuleCaller(engine, fixture_source).call(
        "publish",
        ref="refs/tags/v1.0.0",
        sha=SHA,
        registry=namespace,
        component="BROKER",
        username=auth_registry.username,
        password=await dag.secret("env://GITHUB_TOKEN").id(),
        registry_service=await host_service(address_registry, auth_registry),
    )
    sbom_lines = [line for line in output.splitlines() if line.startswith("# sbom")]
    assert len(sbom_lines) == 2, output  # one per platform manifest
    assert all(f"{namespace}/brokkr-broker@sha256:" in line for line in sbom_lines)


async def test_image_publish_pushes_through_the_registry_service(
    brokkr: ModuleCaller, engine: StandInEngine, registry: RegistryServer, address_registry: str
):
    engine.on_publish = push_to_registry(engine, registry=address_registry, base_url=None)
    service_id = await host_service(address_registry, registry)
    (image,) = await brokkr.call("image", component="UI")
    address = f"{address_registry}/t{uuid.uuid4().hex[:10]}/brokkr-ui:dev"
    ref = await brokkr.call(
        "publish", parent="Image", state=image, address=address, registry_service=service_id
    )
    (push,) = engine.pushes
    assert push.registry_service is engine.node(service_id)
    assert ref == f"{address}@{push.digest}"
    served = await manifest_answer(
        f"{registry.base_url}/v2/{parse_reference(address).repository}/manifests/dev",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
    )
    assert served.headers["docker-content-digest"] == push.digest


@pytest.mark.parametrize(
    ("function", "args"),
    [
        ("publish", {"ref": "refs/tags/v1.2.3", "sha": SHA, "registry": "ghcr.io/me"}),
        ("publish", {"ref": "refs/tags/v1.2.3", "sha": SHA, "registry": "registry:5000/me"}),
        ("inspect", {"address": "ghcr.io/me/brokkr-broker:1.2.3"}),
        ("list_tags", {"repository": "registry.localhost:5000/me/brokkr-broker"}),
        ("sizes", {"address": "10.1.2.3:5000/me/brokkr-broker:1.2.3"}),
    ],
)
async def test_a_registry_service_for_a_remote_registry_is_refused_before_any_work(
    brokkr: ModuleCaller, engine: StandInEngine, function: str, args: dict
):
    service_id = await dag.address("tcp://localhost:5000").service().id()
    engine.queries.clear()
    with pytest.raises(FunctionError, match="--registry-service needs a loopback registry"):
        await brokkr.call(function, registry_service=service_id, **args)
    assert engine.evaluated == []
    assert engine.pushes == []
    sent = engine.sent_text()
    assert "start" not in sent
    assert "endpoint" not in sent


async def test_image_publish_refuses_a_registry_service_for_a_remote_registry(
    brokkr: ModuleCaller, engine: StandInEngine
):
    service_id = await dag.address("tcp://localhost:5000").service().id()
    (image,) = await brokkr.call("image", component="UI")
    with pytest.raises(FunctionError, match="--registry-service needs a loopback registry"):
        await brokkr.call(
            "publish",
            parent="Image",
            state=image,
            address="ghcr.io/me/brokkr-ui:dev",
            registry_service=service_id,
        )
    assert engine.pushes == []
