"""The registry client against a registry that misbehaves on purpose.

One test per property: memory stays under a bound, the call ends (the
deadline, not the test's safety stop, ends it), the error is a clear
``BrokkrError`` naming the limit, and no secret reaches a message or a log.
Most use small ``Limits`` so they run in milliseconds; a few use the defaults
where that is cheap. Every test is wrapped in ``within`` (a hard stop) so a
regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ci.access import RegistryAccess
from ci.errors import BrokkrError
from ci.publishing.deliver import sign
from ci.publishing.inspection import image_info, size_table
from ci.publishing.plan import Target, plan
from ci.publishing.request import PublishRequest
from ci.registry.auth import Credentials, parse_challenges
from ci.registry.client import MAX_REFERRERS, RegistryClient, next_link
from ci.registry.limits import MAX_HEADER_CHARS, MAX_MANIFEST_BYTES, Limits
from ci.registry.referrers import fallback_tag, find
from ci.registry.retry import retry_delay
from ci.registry.text import clean
from ci.rules.components import Component, component_spec
from ci.rules.namespace import parse_namespace
from ci.rules.platforms import parse_platforms
from ci.rules.reference import ImageReference, is_loopback_host, parse_reference, parse_repository
from ci.supply_chain.signing import SigningKey
from tests.support.hostile_server import (
    OCI_INDEX,
    OCI_MANIFEST,
    HostileServer,
    Request,
    gzip_bomb,
    head,
    index_of,
    manifest_over,
    peak_memory,
    respond,
    respond_json,
    sha256,
    stream_chunked_forever,
    trickle,
    within,
)

MIB = 1024 * 1024
CONFIG = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
MANIFEST = manifest_over(CONFIG)


def client(**options) -> RegistryClient:
    options.setdefault("backoff", 0)
    options.setdefault("attempts", 1)
    return RegistryClient(**options)


async def serve_image(request: Request, writer: asyncio.StreamWriter) -> bool:
    """Answer a request for the well-formed MANIFEST/CONFIG; False if it is for neither."""
    if request.path.endswith(f"/blobs/{sha256(CONFIG)}"):
        await respond(writer, 200, CONFIG)
    elif request.path.endswith(("/manifests/1", f"/manifests/{sha256(MANIFEST)}")):
        await respond(writer, 200, MANIFEST, [("Content-Type", OCI_MANIFEST)])
    else:
        return False
    return True


async def failure(awaitable, seconds: float = 20.0) -> BrokkrError:
    """The BrokkrError ``awaitable`` raises (within the hard stop)."""
    with pytest.raises(BrokkrError) as caught:
        await within(awaitable, seconds)
    return caught.value


# Memory --------------------------------------------------------------------------------


async def test_an_endless_chunked_manifest_stops_at_the_manifest_limit():
    async def handler(request, writer):
        await stream_chunked_forever(writer, b" " * 65536)

    async with HostileServer(handler) as server, client() as c:
        with peak_memory() as peak:
            error = await failure(c.get_manifest(server.ref()))
    assert "is larger than the 4 MiB limit for manifests and indexes" in str(error)
    assert server.registry in str(error)
    assert peak[0] < 3 * MAX_MANIFEST_BYTES


async def test_a_gzip_bomb_is_counted_after_decoding():
    bomb = gzip_bomb(64 * MIB)  # about 64 KB on the wire
    assert len(bomb) < 200_000

    async def handler(request, writer):
        await respond(writer, 200, bomb, [("Content-Encoding", "gzip")])

    async with HostileServer(handler) as server, client() as c:
        with peak_memory() as peak:
            error = await failure(c.get_manifest(server.ref()))
    assert "is larger than the 4 MiB limit for manifests and indexes" in str(error)
    assert peak[0] < 3 * MAX_MANIFEST_BYTES


async def test_a_declared_100_mb_manifest_is_refused_before_reading():
    async def handler(request, writer):
        writer.write(head(200, [("Content-Length", "100000000")]))
        await writer.drain()
        await asyncio.sleep(60)  # sends nothing more: only the header can end this

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_manifest(server.ref()))
    assert "is 100000000 bytes, over the 4 MiB limit for manifests and indexes" in str(error)


async def test_a_config_blob_larger_than_its_descriptor_is_refused():
    big_config = json.dumps({"os": "linux", "architecture": "amd64", "pad": "x" * 10_000}).encode()
    manifest = manifest_over(big_config, config_size=100)

    async def handler(request, writer):
        if "/blobs/" in request.path:
            await respond(writer, 200, big_config)
        else:
            await respond(writer, 200, manifest, [("Content-Type", OCI_MANIFEST)])

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.inspect(server.ref()))
    assert "over the size its descriptor gives (100 bytes)" in str(error)


async def test_a_blob_descriptor_over_the_blob_limit_is_not_fetched():
    manifest = manifest_over(CONFIG, config_size=10 * MIB)

    async def handler(request, writer):
        await respond(writer, 200, manifest, [("Content-Type", OCI_MANIFEST)])

    async with HostileServer(handler) as server, client(limits=Limits(blob_bytes=MIB)) as c:
        error = await failure(c.inspect(server.ref()))
    assert f"is {10 * MIB} bytes by its descriptor, over the 1 MiB limit for blobs" in str(error)
    assert server.hits("/blobs/") == 0


async def test_tag_pages_are_capped_in_total():
    async def handler(request, writer):
        page = int(request.query.rpartition("=")[2] or 0)
        tags = [f"p{page}-{i}" for i in range(1000)]
        link = f'</v2/hostile/image/tags/list?last={page + 1}>; rel="next"'
        await respond_json(
            writer, {"name": "hostile/image", "tags": tags}, headers=[("Link", link)]
        )

    async with HostileServer(handler) as server, client(limits=Limits(tags=5000)) as c:
        error = await failure(c.list_tags(server.ref()))
    assert str(error) == (
        f"{server.registry}/hostile/image has more than 5000 tags (the limit for one tag listing)"
    )
    assert server.hits("/tags/list") == 6


async def test_tag_pages_at_the_default_limit():
    async def handler(request, writer):
        page = int(request.query.rpartition("=")[2] or 0)
        tags = [f"p{page}-{i}" for i in range(25_000)]
        link = f'</v2/hostile/image/tags/list?last={page + 1}>; rel="next"'
        await respond_json(
            writer, {"name": "hostile/image", "tags": tags}, headers=[("Link", link)]
        )

    async with HostileServer(handler) as server, client() as c:
        with peak_memory() as peak:
            error = await failure(c.list_tags(server.ref()))
    assert "has more than 100000 tags" in str(error)
    assert server.hits("/tags/list") == 5
    assert peak[0] < 64 * MIB


async def test_empty_tag_pages_are_capped_too():
    async def handler(request, writer):
        page = int(request.query.rpartition("=")[2] or 0)
        link = f'</v2/hostile/image/tags/list?last={page + 1}>; rel="next"'
        await respond_json(writer, {"name": "hostile/image", "tags": []}, headers=[("Link", link)])

    async with HostileServer(handler) as server, client(limits=Limits(tag_pages=10)) as c:
        error = await failure(c.list_tags(server.ref()))
    assert "has more than 10 pages (the limit for tag list pages)" in str(error)
    assert server.hits("/tags/list") == 10


async def test_an_index_repeating_one_digest_costs_one_request():
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(MANIFEST),
        "size": len(MANIFEST),
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    index = index_of([entry] * 5000)

    async def handler(request, writer):
        if not await serve_image(request, writer):
            await respond(writer, 200, index, [("Content-Type", "application/json")])

    async with HostileServer(handler) as server, client() as c:
        description = await within(c.inspect(server.ref(tag="multi")))
    assert [(p.platform, p.digest) for p in description.platforms] == [
        ("linux/amd64", sha256(MANIFEST))
    ]
    assert server.hits("/manifests/") == 2  # the index and its one distinct manifest


async def test_an_index_with_too_many_platforms_is_refused_before_fetching_them():
    entries = [
        {"mediaType": OCI_MANIFEST, "digest": sha256(str(i).encode()), "size": 1}
        for i in range(100)
    ]

    async def handler(request, writer):
        await respond(writer, 200, index_of(entries))

    async with HostileServer(handler) as server, client(limits=Limits(index_platforms=8)) as c:
        error = await failure(c.inspect(server.ref()))
    assert "lists more than 8 platform manifests (the limit for one index" in str(error)
    assert server.hits("/manifests/") == 1


# Referrers ------------------------------------------------------------------------------

SUBJECT = sha256(MANIFEST)
REFERRERS_PATH = f"/v2/hostile/image/referrers/{SUBJECT}"


async def respond_index(
    writer: asyncio.StreamWriter, body: bytes, headers: list[tuple[str, str]] | None = None
) -> None:
    """A 200 with an OCI image index, as the referrers API answers."""
    await respond(writer, 200, body, [("Content-Type", OCI_INDEX), *(headers or [])])


def referrers_page(numbers: range) -> bytes:
    return index_of(
        [
            {"mediaType": OCI_MANIFEST, "digest": sha256(b"%d" % n), "size": 2, "artifactType": "x"}
            for n in numbers
        ]
    )


async def test_referrers_pages_are_all_read():
    async def handler(request, writer):
        page = int(request.query.rpartition("=")[2] or 0)
        link = [("Link", f'<{REFERRERS_PATH}?page={page + 1}>; rel="next"')] if page < 2 else []
        await respond_index(writer, referrers_page(range(page * 10, page * 10 + 2)), link)

    async with HostileServer(handler) as server, client() as c:
        found = await within(c.get_referrers(server.ref(), SUBJECT))
    assert [d["digest"] for d in found] == [sha256(b"%d" % n) for n in (0, 1, 10, 11, 20, 21)]
    assert server.hits("/referrers/") == 3


async def test_referrers_pages_are_capped_in_number_and_in_total():
    async def endless(request, writer):
        page = int(request.query.rpartition("=")[2] or 0)
        link = [("Link", f'<{request.path}?page={page + 1}>; rel="next"')]
        size = 3000 if "big" in request.path else 0
        await respond_index(writer, referrers_page(range(page * size, (page + 1) * size)), link)

    async with HostileServer(endless) as server, client(limits=Limits(tag_pages=10)) as c:
        error = await failure(c.get_referrers(server.ref(), SUBJECT))
        assert str(error) == (
            f"the referrers list of {SUBJECT} in {server.registry}/hostile/image has more than "
            "10 pages (the limit for listing pages)"
        )
        assert server.hits("/referrers/") == 10
        with peak_memory() as peak:
            error = await failure(c.get_referrers(server.ref("hostile/big"), SUBJECT))
    assert str(error) == (
        f"the referrers list of {SUBJECT} in {server.registry}/hostile/big has more than "
        f"{MAX_REFERRERS} entries; refusing it"
    )
    assert server.hits("/hostile/big/referrers/") == 4
    assert peak[0] < 64 * MIB


@pytest.mark.parametrize(
    ("link", "message"),
    [
        (REFERRERS_PATH, "does not end"),
        ("http://127.0.0.2:1/v2/hostile/image/referrers/x", "links to another server"),
        ("http://[::1/v2/x", "links to a malformed URL"),
    ],
)
async def test_referrers_links_that_loop_or_leave_the_server_are_refused(link, message):
    async def handler(request, writer):
        await respond_index(writer, referrers_page(range(1)), [("Link", f'<{link}>; rel="next"')])

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_referrers(server.ref(), SUBJECT))
    assert message in str(error)
    assert server.hits("/referrers/") <= 2


NO_API_ANSWERS = {
    "404": (404, [("Content-Type", "application/json")], b'{"errors":[{"code":"NOT_FOUND"}]}'),
    "400": (400, [], b"bad request"),
    "405": (405, [], b""),
    "406": (406, [], b""),
    "429 (not retried)": (429, [("Retry-After", "30")], b"<html>rate limited</html>"),
    "500 (not retried)": (500, [], b"oops"),
    "a proxy's {}": (200, [("Content-Type", "application/json")], b"{}"),
    "{} labelled an index": (200, [("Content-Type", OCI_INDEX)], b"{}"),
    "an index labelled JSON": (200, [("Content-Type", "application/json")], index_of([])),
    "not JSON": (200, [("Content-Type", OCI_INDEX)], b"<html>"),
    "303 elsewhere": (303, [("Location", "http://127.0.0.2:9/rate-limited")], b""),
}


@pytest.mark.parametrize("answer", sorted(NO_API_ANSWERS))
async def test_anything_but_a_same_origin_index_means_the_tag_schema(answer):
    status, headers, body = NO_API_ANSWERS[answer]
    fallback = referrers_page(range(3))

    async def handler(request, writer):
        if "/referrers/" in request.path:
            await respond(writer, status, body, headers)
        elif request.path.endswith(f"/manifests/{fallback_tag(SUBJECT)}"):
            await respond(writer, 200, fallback, [("Content-Type", OCI_INDEX)])
        else:
            await respond(writer, 404)

    async with HostileServer(handler) as server, client(attempts=4) as c:
        assert await within(c.get_referrers(server.ref(), SUBJECT)) is None
        found = await within(find(c, server.ref(), SUBJECT))
    assert [d["digest"] for d in found] == [sha256(b"%d" % n) for n in range(3)]
    assert server.hits("/referrers/") == 2  # once each: never retried


async def test_a_referrers_redirect_to_another_origin_is_never_followed():
    """GHCR: /referrers/ answers 303 to a rate-limited page elsewhere; no request goes there,
    and the login stays home."""

    async def elsewhere(request, writer):
        await respond(writer, 429, b"<html>Too Many Requests</html>", [("Retry-After", "60")])

    async with HostileServer(elsewhere) as other:

        async def handler(request, writer):
            if "/referrers/" in request.path:
                await respond(writer, 303, b"", [("Location", f"{other.base_url}/x/referrers")])
            elif request.path.endswith(f"/manifests/{fallback_tag(SUBJECT)}"):
                await respond(writer, 200, referrers_page(range(1)), [("Content-Type", OCI_INDEX)])
            else:
                await respond(writer, 404)

        credentials = Credentials("someone", "s3cret-for-the-registry-only")
        async with HostileServer(handler) as server, client(credentials=credentials) as c:
            found = await within(find(c, server.ref(), SUBJECT))
    assert [d["digest"] for d in found] == [sha256(b"0")]
    assert other.requests == []


async def test_a_same_origin_redirect_of_the_referrers_api_is_followed():
    async def handler(request, writer):
        if request.path == REFERRERS_PATH:
            await respond(writer, 307, b"", [("Location", f"{REFERRERS_PATH}-moved")])
        elif request.path == f"{REFERRERS_PATH}-moved":
            await respond_index(writer, referrers_page(range(2)))
        else:
            await respond(writer, 404)

    async with HostileServer(handler) as server, client() as c:
        found = await within(c.get_referrers(server.ref(), SUBJECT))
    assert [d["digest"] for d in found] == [sha256(b"0"), sha256(b"1")]


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_login_on_the_referrers_api_is_an_error(status):
    async def handler(request, writer):
        await respond_json(writer, {"errors": [{"code": "NOPE"}]}, status=status)

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_referrers(server.ref(), SUBJECT))
    assert server.registry in str(error)
    assert "hostile/image" in str(error)


def test_the_referrers_tag_keeps_64_characters_of_the_digest():
    sha512 = "sha512:" + "ab" * 64
    assert fallback_tag(sha512) == "sha512-" + "ab" * 32
    assert fallback_tag(SUBJECT) == "sha256-" + SUBJECT.removeprefix("sha256:")


# Time ---------------------------------------------------------------------------------

DEADLINE_ERROR = (
    r"^registry 127\.0\.0\.1:\d+ took too long: inspecting 127\.0\.0\.1:\d+/hostile/image:1 did "
    r"not finish within the 1 s deadline \(gave up after 1\.\d s\)$"
)


async def test_a_trickling_body_cannot_outlast_the_deadline():
    async def handler(request, writer):
        writer.write(head(200, [("Content-Length", "100000")]))
        await trickle(writer, b" " * 100_000, every=0.02)

    async with HostileServer(handler) as server, client(limits=Limits(deadline=1.0)) as c:
        error = await failure(c.inspect(server.ref()))
    assert re.match(DEADLINE_ERROR, str(error))


async def test_endless_102_processing_cannot_outlast_the_deadline():
    async def handler(request, writer):
        while True:
            writer.write(b"HTTP/1.1 102 Processing\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async with HostileServer(handler) as server, client(limits=Limits(deadline=1.0)) as c:
        error = await failure(c.inspect(server.ref()))
    assert re.match(DEADLINE_ERROR, str(error))


async def test_retry_waits_count_against_the_deadline():
    async def handler(request, writer):
        await respond(writer, 503, b"", [("Retry-After", "3600")], reason="Unavailable")

    options = {"attempts": 10, "max_delay": 3600, "limits": Limits(deadline=1.0)}
    async with HostileServer(handler) as server, client(**options) as c:
        error = await failure(c.inspect(server.ref()))
    assert re.match(DEADLINE_ERROR, str(error))
    assert server.hits("/manifests/") == 1


async def test_one_deadline_covers_a_publish_plan():
    async def handler(request, writer):
        writer.write(head(200, [("Content-Length", "100000")]))
        await trickle(writer, b" " * 100_000, every=0.02)

    async with HostileServer(handler) as server, client(limits=Limits(deadline=1.0)) as c:
        request = PublishRequest.create(
            ref="refs/tags/v1.2.3",
            sha="0" * 40,
            pr=None,
            components=tuple(Component),
            registry=parse_namespace(f"{server.registry}/org"),
            platforms=parse_platforms(["linux/amd64"]),
            created="",
            source_url="https://github.com/colliery-io/brokkr",
        )
        error = await failure(plan(request, c))
    assert re.match(
        rf"^registry {server.registry} took too long: reading the tags of {server.registry}/org "
        r"to plan the publish did not finish within the 1 s deadline \(gave up after 1\.\d s\)$",
        str(error),
    )


async def test_one_deadline_covers_signing_in_a_publish():
    # Each answer takes 0.2 s: every single call ends well within 1 s, but signing one
    # manifest takes eight requests, so only the one deadline of the signing step ends it.
    async def handler(request, writer):
        await asyncio.sleep(0.2)
        if request.method == "POST":
            await respond(writer, 202, b"", [("Location", "/v2/org/brokkr-broker/blobs/u/1")])
        elif request.method == "PUT":
            await respond(writer, 201)
        else:
            await respond(writer, 404)

    async with HostileServer(handler) as server, client(limits=Limits(deadline=1.0)) as c:
        request = PublishRequest.create(
            ref="refs/tags/v1.2.3",
            sha="0" * 40,
            pr=None,
            component=Component.BROKER,
            registry=parse_namespace(f"{server.registry}/org"),
            platforms=parse_platforms(["linux/amd64"]),
            created="",
            source_url="https://github.com/colliery-io/brokkr",
        )
        target = Target(
            component_spec(Component.BROKER),
            parse_repository(f"{server.registry}/org/brokkr-broker"),
            [],
            frozenset(),
            digest=sha256(b"index"),
            platform_digests={"linux/amd64": sha256(MANIFEST)},
        )
        key = SigningKey(ec.generate_private_key(ec.SECP256R1()))
        (problem,) = await within(
            sign([target], c, key, namespace=request.registry, created=request.created), 20.0
        )
    assert re.match(
        rf"^{server.registry}/org/brokkr-broker@{sha256(b'index')}: registry {server.registry} "
        rf"took too long: signing the pushed images in {server.registry}/org did not finish "
        r"within the 1 s deadline \(gave up after 1\.\d s\)$",
        problem,
    )
    assert target.signatures == {}


async def test_a_100_kb_www_authenticate_header_is_refused_quickly():
    challenge = "Bearer " + 'a="\\' * 22_000  # backtracking bait for a regex parser

    async def handler(request, writer):
        await respond(writer, 401, b"", [("WWW-Authenticate", challenge)])

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_manifest(server.ref()), seconds=5)
    assert str(error) == (
        f"{server.registry} sent a www-authenticate header longer than {MAX_HEADER_CHARS} "
        "characters (the limit for parsed headers); refusing it"
    )


async def test_a_100_kb_link_header_is_refused_quickly():
    link = "<" * 90_000

    async def handler(request, writer):
        await respond_json(writer, {"tags": ["a"]}, headers=[("Link", link)])

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.list_tags(server.ref()), seconds=5)
    assert "sent a link header longer than" in str(error)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer " + 'a="\\' * 5000,
        "Bearer " + "a=" * 8000,
        'Bearer realm="' + "\\" * 16000,
        "," * 16000,
        "Basic " + "=" * 16000,
    ],
)
async def test_header_parsers_are_linear_at_the_length_limit(header):
    async def parse():
        parse_challenges([header])
        next_link([header.replace("a", "<")])

    await within(asyncio.to_thread(lambda: asyncio.run(parse())), seconds=5)


# Malformed answers -------------------------------------------------------------------------


async def test_a_redirect_loop_ends_at_the_redirect_limit():
    async def handler(request, writer):
        await respond(writer, 302, b"", [("Location", request.target)])

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_manifest(server.ref()))
    assert "redirected more than 5 times" in str(error)
    assert server.hits("/manifests/") == 6


async def test_a_corrupt_gzip_body_is_a_clear_error():
    async def handler(request, writer):
        await respond(writer, 200, b"\x1f\x8b\x08\x00garbage" * 10, [("Content-Encoding", "gzip")])

    async with HostileServer(handler) as server, client(attempts=3) as c:
        error = await failure(c.get_manifest(server.ref()))
    assert "is not valid gzip data" in str(error)
    assert server.hits("/manifests/") == 1  # not transient: not retried


async def test_an_unsupported_content_encoding_is_refused():
    async def handler(request, writer):
        await respond(writer, 200, b"xx", [("Content-Encoding", "br")])

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_manifest(server.ref()))
    assert "unsupported Content-Encoding" in str(error)


@pytest.mark.parametrize("nesting", [b"[" * 50_000, b'{"a":' * 50_000])
async def test_deeply_nested_json_is_a_clear_error(nesting):
    async def handler(request, writer):
        await respond(writer, 200, nesting)

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_manifest(server.ref()))
    assert str(error) == f"the manifest of {server.ref()} is JSON nested too deeply to read"


async def test_a_malformed_link_url_is_a_clear_error():
    async def handler(request, writer):
        link = '<http://[::1/v2/hostile/image/tags/list?last=a>; rel="next"'
        await respond_json(writer, {"tags": ["a"]}, headers=[("Link", link)])

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.list_tags(server.ref()))
    assert "links to a malformed URL" in str(error)


@pytest.mark.parametrize(
    "retry_after",
    ["²", "١٢", "Fri, 01 Jan 99999 00:00:00 GMT", "Mon, 99 Foo 2020 99:99:99 GMT", "9" * 5000],
)
def test_odd_retry_after_values_are_ignored(retry_after):
    assert retry_delay(1, backoff=0.5, max_delay=30, retry_after=retry_after) == 0.5


async def test_a_503_with_an_odd_retry_after_is_retried():
    answers = iter([503, 200])

    async def handler(request, writer):
        if next(answers) == 503:
            await respond(writer, 503, b"", [("Retry-After", "²")], reason="Unavailable")
        else:
            await serve_image(request, writer)

    async with HostileServer(handler) as server, client(attempts=2) as c:
        manifest = await within(c.get_manifest(server.ref()))
    assert manifest.digest == sha256(MANIFEST)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"mediaType": [OCI_MANIFEST], "config": {}, "layers": []}, "mediaType that is not a"),
        ({"mediaType": OCI_MANIFEST, "config": "sha256:abc", "layers": []}, "no config descriptor"),
        ({"manifests": [{"mediaType": ["x"], "digest": "sha256:a"}]}, "mediaType is not a string"),
        ({"manifests": [{"digest": "sha256:" + "x" * 5000}]}, "has an invalid digest"),
        ({"manifests": "all of them"}, "has no manifest list"),
        (
            {"manifests": [{"digest": sha256(b"a"), "size": 1, "platform": {"os": ["linux"]}}]},
            "platform os that is not a string",
        ),
    ],
)
async def test_malformed_manifests_are_clear_errors(document, message):
    body = json.dumps(document).encode()

    async def handler(request, writer):
        await respond(writer, 200, body)

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.inspect(server.ref()))
    assert message in str(error)
    assert len(str(error)) < 400


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"config": {"Labels": ["a", "b"]}}, "labels that are not a string map"),
        ({"config": {"Labels": {"a": 1}}}, "labels that are not a string map"),
        ({"config": "labels"}, "has a 'config' that is not an object"),
    ],
)
async def test_malformed_configs_are_clear_errors(config, message):
    config_body = json.dumps(config).encode()
    manifest = manifest_over(config_body)

    async def handler(request, writer):
        if "/blobs/" in request.path:
            await respond(writer, 200, config_body)
        else:
            await respond(writer, 200, manifest)

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.config_labels(server.ref()))
    assert message in str(error)


# Retries: only transient failures -----------------------------------------------------------


async def test_broken_framing_is_not_retried():
    async def handler(request, writer):
        writer.write(head(200, [("Transfer-Encoding", "chunked")]) + b"zz\r\nnot a chunk\r\n")

    async with HostileServer(handler) as server, client(attempts=4) as c:
        error = await failure(c.get_manifest(server.ref()))
    assert "broke the HTTP protocol" in str(error)
    assert server.hits("/manifests/") == 1


async def test_a_redirect_to_an_unsupported_scheme_is_not_followed_or_retried():
    async def handler(request, writer):
        await respond(writer, 302, b"", [("Location", "ftp://127.0.0.1/manifest")])

    async with HostileServer(handler) as server, client(attempts=4) as c:
        error = await failure(c.get_manifest(server.ref()))
    assert "which is not an http(s) URL" in str(error)
    assert server.hits("/manifests/") == 1


async def test_a_400_is_not_retried():
    async def handler(request, writer):
        await respond_json(writer, {"errors": [{"code": "X", "message": "no"}]}, status=400)

    async with HostileServer(handler) as server, client(attempts=4) as c:
        error = await failure(c.get_manifest(server.ref()))
    assert "HTTP 400" in str(error)
    assert server.hits("/manifests/") == 1


async def test_a_connection_closed_before_answering_is_retried():
    calls = 0

    async def handler(request, writer):
        nonlocal calls
        calls += 1
        if calls == 1:
            return  # closes without a word
        await serve_image(request, writer)

    async with HostileServer(handler) as server, client(attempts=2) as c:
        manifest = await within(c.get_manifest(server.ref()))
    assert manifest.digest == sha256(MANIFEST)
    assert server.hits("/manifests/") == 2


# Transport trust ---------------------------------------------------------------------------


async def test_https_to_http_redirects_are_refused():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            return httpx.Response(200, content=MANIFEST)  # must never be reached
        return httpx.Response(302, headers={"Location": f"http://{request.url.host}/m"})

    ref = parse_reference("registry.example.com/org/name:1")
    async with client(transport=httpx.MockTransport(answer)) as c:
        error = await failure(c.get_manifest(ref))
    assert "redirected from HTTPS to plain HTTP" in str(error)


async def test_plain_http_redirects_off_loopback_are_refused():
    async def handler(request, writer):
        await respond(writer, 307, b"", [("Location", "http://registry.example.com/m")])

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_manifest(server.ref()))
    assert "redirected to plain HTTP off loopback" in str(error)


async def test_credentials_stay_with_their_origin_on_redirects(caplog):
    caplog.set_level(logging.DEBUG)
    password = "pw-never-shown-41d9"
    seen = []

    async def elsewhere(request, writer):
        seen.append(request.headers.get("authorization"))
        await serve_image(request, writer)

    async with HostileServer(elsewhere, host="127.0.0.2") as other:

        async def handler(request, writer):
            if "authorization" not in request.headers:
                await respond(writer, 401, b"", [("WWW-Authenticate", 'Basic realm="r"')])
            else:
                await respond(writer, 307, b"", [("Location", f"{other.base_url}{request.target}")])

        async with HostileServer(handler) as server:
            async with client(credentials=Credentials("me", password)) as c:
                manifest = await within(c.get_manifest(server.ref()))
            assert manifest.digest == sha256(MANIFEST)
            assert server.requests[-1].headers["authorization"].startswith("Basic ")
    assert seen == [None]
    assert password not in caplog.text


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("registry.localhost", False), ("localhost", True), ("127.9.9.9", True), ("::1", True)],
)
def test_loopback_is_only_loopback_addresses_or_exactly_localhost(host, loopback):
    assert is_loopback_host(host) is loopback
    registry = f"[{host}]:5000" if ":" in host else f"{host}:5000"
    scheme = ImageReference(registry, "a/b", "1").scheme
    assert scheme == ("http" if loopback else "https")


async def test_credentials_never_go_to_a_plain_http_localhost_subdomain_realm():
    def answer(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.localhost/token"'}
        )

    ref = parse_reference("registry.example.com/org/name:1")
    async with client(
        credentials=Credentials("me", "pw"), transport=httpx.MockTransport(answer)
    ) as c:
        error = await failure(c.get_manifest(ref))
    assert "asked for credentials over plain HTTP" in str(error)


@pytest.mark.parametrize(
    "token",
    ["tok-3f9a\r\nX-Injected: yes", "tök-3f9a-secret", "tok-3f9a secret", "t" * 20_000],
)
async def test_unusable_tokens_are_refused_and_never_echoed(token, caplog):
    caplog.set_level(logging.DEBUG)

    async def handler(request, writer):
        if request.path == "/token":
            await respond_json(writer, {"token": token})
        else:
            challenge = f'Bearer realm="http://{request.headers["host"]}/token",service="s"'
            await respond(writer, 401, b"", [("WWW-Authenticate", challenge)])

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_manifest(server.ref()))
    assert "sent an unusable token" in str(error)
    for piece in ("3f9a", "X-Injected", "t" * 100):
        assert piece not in str(error)
        assert piece not in caplog.text
    assert server.hits("/manifests/") == 1  # never sent


async def test_registry_text_is_cleaned_in_errors_and_logs(caplog):
    caplog.set_level(logging.DEBUG)
    evil = "bad\n::error::pwned\x1b[31m | col |\u202e\r\nnext"
    errors = {"errors": [{"code": "X", "message": evil}]}

    async def handler(request, writer):
        await respond_json(writer, errors, status=503)

    async with HostileServer(handler) as server, client(attempts=2) as c:
        error = await failure(c.get_manifest(server.ref()))
    for text in (str(error), caplog.text):
        assert "bad : :error: :pwned [31m | col | next" in text
        assert "::" not in text.replace("[::1]", "")
        assert not any(ch in text for ch in "\x1b\r\u202e")
    assert "\n" not in str(error)


async def test_registry_text_is_cleaned_in_the_size_table():
    platform = {"os": "linux|x", "architecture": "amd64\n::error::x", "variant": "v8\x1b"}
    index = index_of(
        [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(MANIFEST),
                "size": len(MANIFEST),
                "platform": platform,
            }
        ]
    )

    async def handler(request, writer):
        if not await serve_image(request, writer):
            await respond(writer, 200, index)

    async with HostileServer(handler) as server, client() as c:
        description = await within(c.inspect(server.ref(tag="multi")))
    table = size_table(image_info(description))
    rows = table.splitlines()
    assert len(rows) == 3
    assert rows[2].startswith(f"| {server.registry}/hostile/image:multi | linux\\|x/amd64 : :error")
    assert rows[2].count(" | ") == 2  # three cells, however the registry named its platform
    assert "\x1b" not in table


async def test_error_messages_are_bounded_however_many_errors_the_registry_sends():
    many = json.dumps({"errors": [{"code": "E", "message": f"error {i}"} for i in range(1000)]})
    huge = json.dumps({"errors": [{"code": "E", "message": "y" * 100} for _ in range(50_000)]})
    many, huge = many.encode(), huge.encode()  # made before memory is measured
    assert len(huge) > 5 * MIB

    async def handler(request, writer):
        await respond_json(writer, huge if "huge" in request.path else many, status=400)

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_manifest(server.ref()))
        assert "(error 0; error 1; error 2; and 997 more)" in str(error)
        assert len(str(error)) < 1000
        with peak_memory() as peak:
            error = await failure(c.get_manifest(server.ref(repository="hostile/huge")))
        assert len(str(error)) < 1000
        assert peak[0] < 8 * MIB


def test_clean_drops_controls_and_caps_length():
    assert clean("a\x00b\x07c\x1b[0m\u2028d", 100) == "a b c [0m d"
    assert clean("::set-output name=x::y") == ": :set-output name=x: :y"
    assert clean("x" * 1000, 10) == "x" * 9 + "…"
    assert clean(":::") == ": : :"


async def test_a_bug_in_our_code_is_not_reported_as_a_registry_fault(monkeypatch):
    """Only registry bytes become "the registry sent …" errors; our KeyError stays a KeyError."""

    def broken(*args: object) -> str:
        raise KeyError("a bug in brokkr-ci")

    monkeypatch.setattr("ci.registry.describe.platform_string", broken)

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        if not await serve_image(request, writer):
            await respond(writer, 404)

    async with HostileServer(handler) as server, client() as c:
        with pytest.raises(KeyError, match="a bug in brokkr-ci"):
            await within(c.inspect(server.ref()))


# Credentials only where they belong ----------------------------------------------------------


async def test_a_login_never_goes_to_a_realm_that_another_origin_names():
    """A blob GET redirected to a CDN that answers 401 with its own realm: no login there."""
    secret = "s3cret-meant-for-the-registry"

    async def cdn(request, writer):
        realm = f"http://{request.headers['host']}/token"
        await respond(writer, 401, b"", [("WWW-Authenticate", f'Bearer realm="{realm}"')])

    async with HostileServer(cdn) as other:

        async def handler(request, writer):
            if "/blobs/" in request.path:
                await respond(writer, 307, b"", [("Location", f"{other.base_url}/cdn/blob")])
            elif not await serve_image(request, writer):
                await respond(writer, 404)

        credentials = Credentials("someone", secret)
        async with HostileServer(handler) as server, client(credentials=credentials) as c:
            error = await failure(c.get_blob(server.ref(), sha256(CONFIG), len(CONFIG)))
    assert "credentials go only to" in str(error)
    assert secret not in str(error)
    assert [r.path for r in other.requests] == ["/cdn/blob"]  # the token realm never asked
    assert all("authorization" not in r.headers for r in other.requests)


# Pushed digests in any algorithm -----------------------------------------------------------


def upload_handler(manifest_digest: str | None = None, blob_digest: str | None = None):
    """A registry that accepts uploads, naming the digests it stored as told."""

    async def handler(request, writer):
        if request.method == "HEAD":
            await respond(writer, 404)
        elif request.method == "POST":
            await respond(writer, 202, b"", [("Location", "/v2/hostile/image/blobs/uploads/u1")])
        elif request.method == "PUT" and "/blobs/uploads/" in request.path:
            named = blob_digest or request.query.partition("digest=")[2].replace("%3A", ":")
            await respond(writer, 201, b"", [("Docker-Content-Digest", named)])
        elif request.method == "PUT":
            named = manifest_digest or sha256(request.body)
            await respond(writer, 201, b"", [("Docker-Content-Digest", named)])
        else:
            await respond(writer, 404)

    return handler


def sha512(data: bytes) -> str:
    import hashlib

    return "sha512:" + hashlib.sha512(data).hexdigest()


@pytest.mark.parametrize(
    ("named", "message"),
    [
        (None, None),
        (sha512(MANIFEST), None),
        (sha512(b"something else"), "digest mismatch pushing the manifest"),
        (sha256(b"something else"), "digest mismatch pushing the manifest"),
        ("md5:abc", "which is not a valid digest"),
    ],
)
async def test_a_pushed_manifest_must_hash_to_the_digest_the_registry_names(named, message):
    async with HostileServer(upload_handler(manifest_digest=named)) as server, client() as c:
        push = c.push_manifest(server.ref(), "1", MANIFEST, OCI_MANIFEST)
        if message is None:
            assert await within(push) == sha256(MANIFEST)
        else:
            assert message in str(await failure(push))


@pytest.mark.parametrize(
    ("named", "message"),
    [
        (None, None),
        (sha512(CONFIG), None),
        (sha512(b"other"), "digest mismatch pushing blob"),
        (sha256(b"other"), "digest mismatch pushing blob"),
    ],
)
async def test_a_pushed_blob_must_hash_to_the_digest_the_registry_names(named, message):
    async with HostileServer(upload_handler(blob_digest=named)) as server, client() as c:
        push = c.push_blob(server.ref(), CONFIG)
        if message is None:
            assert await within(push) == sha256(CONFIG)
        else:
            assert message in str(await failure(push))


# Retry classification ----------------------------------------------------------------------


async def test_a_garbled_answer_before_any_head_is_retried_like_a_dropped_connection():
    calls = 0

    async def handler(request, writer):
        nonlocal calls
        calls += 1
        if calls == 1:
            writer.write(b"HTTQ/9 what\r\n\r\n")
            return
        await serve_image(request, writer)

    async with HostileServer(handler) as server, client(attempts=2) as c:
        manifest = await within(c.get_manifest(server.ref()))
    assert manifest.digest == sha256(MANIFEST)
    assert server.hits("/manifests/") == 2


async def test_an_answer_cut_after_its_head_is_not_retried():
    async def handler(request, writer):
        writer.write(head(200, [("Content-Length", "1000"), ("Content-Type", OCI_MANIFEST)]))
        writer.write(MANIFEST[:10])

    async with HostileServer(handler) as server, client(attempts=4) as c:
        error = await failure(c.get_manifest(server.ref()))
    assert "broke the HTTP protocol" in str(error)
    assert server.hits("/manifests/") == 1


# Attaching: the OCI-Subject answer decides ---------------------------------------------------


@pytest.mark.parametrize("subject_header", [True, False])
async def test_attach_keeps_the_referrers_tag_only_without_an_oci_subject_answer(subject_header):
    from ci.registry.referrers import attach

    uploads = upload_handler()
    tag = fallback_tag(SUBJECT)
    stored: dict[str, bytes] = {}

    async def handler(request, writer):
        if request.method == "GET" and request.path.endswith(f"/manifests/{SUBJECT}"):
            await respond(writer, 200, MANIFEST, [("Content-Type", OCI_MANIFEST)])
        elif request.method == "PUT" and "/manifests/sha256:" in request.path:
            headers = [("Docker-Content-Digest", sha256(request.body))]
            if subject_header:
                headers.append(("OCI-Subject", SUBJECT))
            await respond(writer, 201, b"", headers)
        elif request.path.endswith(f"/manifests/{tag}") and request.method == "PUT":
            stored[tag] = request.body
            await respond(writer, 201, b"", [("Docker-Content-Digest", sha256(request.body))])
        elif request.path.endswith(f"/manifests/{tag}") and tag in stored:
            await respond(writer, 200, stored[tag], [("Content-Type", OCI_INDEX)])
        elif request.path.endswith(f"/manifests/{tag}"):
            await respond(writer, 404)
        else:
            await uploads(request, writer)

    async with HostileServer(handler) as server, client() as c:
        attached = await within(attach(c, server.ref(), SUBJECT, b"sbom", artifact_type="x/y"))
    tag_writes = [r for r in server.requests if r.method == "PUT" and r.path.endswith(tag)]
    if subject_header:
        assert attached.via == "referrers API"
        assert tag_writes == []
    else:
        assert attached.via == f"tag {tag}"
        assert len(tag_writes) == 1
    assert server.hits("/referrers/") == 0  # attaching never asks the referrers API


# Integrity of what is read -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "content_type", "message"),
    [
        (json.loads(MANIFEST), OCI_INDEX, "served it as application/vnd.oci.image.index"),
        ({**json.loads(MANIFEST), "manifests": []}, OCI_MANIFEST, "is ambiguous: it has manifests"),
        ({**json.loads(MANIFEST), "manifests": []}, "", "is ambiguous: it has manifests"),
        (
            {"mediaType": OCI_INDEX, "manifests": [], "layers": []},
            OCI_INDEX,
            "is ambiguous: it has manifests, layers",
        ),
        ({"config": json.loads(MANIFEST)["config"], "manifests": []}, OCI_INDEX, "is ambiguous"),
    ],
)
async def test_ambiguous_or_mislabelled_manifests_are_refused(document, content_type, message):
    """CVE-2021-41190: a document that reads as a manifest and as an index is refused."""
    body = json.dumps(document).encode()

    async def handler(request, writer):
        await respond(writer, 200, body, [("Content-Type", content_type)] if content_type else [])

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.get_manifest(server.ref()))
    assert message in str(error)


@pytest.mark.parametrize("declared", [len(MANIFEST) - 1, len(MANIFEST) + 1])
async def test_an_index_child_of_another_size_than_the_index_says_is_refused(declared):
    child = {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(MANIFEST),
        "size": declared,
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    index = index_of([child])

    async def handler(request, writer):
        if request.path.endswith("/manifests/1"):
            await respond(writer, 200, index, [("Content-Type", OCI_INDEX)])
        elif not await serve_image(request, writer):
            await respond(writer, 404)

    async with HostileServer(handler) as server, client() as c:
        error = await failure(c.inspect(server.ref()))
        labels_error = await failure(c.config_labels(server.ref()))
    for message in (str(error), str(labels_error)):
        assert "its descriptor" in message
        assert sha256(MANIFEST) in message


# Parsed size -------------------------------------------------------------------------------


def tiny_values(size: int, wrapper: bytes = b'{"layers":[%s]}') -> bytes:
    """A JSON document of about ``size`` bytes made of as many tiny values as fit."""
    count = (size - len(wrapper)) // 3
    return wrapper % b",".join([b"{}"] * count)


async def test_a_manifest_of_tiny_values_is_refused_unparsed_under_64_mib():
    body = tiny_values(MAX_MANIFEST_BYTES - 64)
    assert len(body) <= MAX_MANIFEST_BYTES

    async def handler(request, writer):
        await respond(writer, 200, body, [("Content-Type", OCI_MANIFEST)])

    async with HostileServer(handler) as server, client() as c:
        with peak_memory() as peak:
            error = await failure(c.get_manifest(server.ref()))
    assert "JSON values (the limit for parsed documents)" in str(error)
    assert peak[0] < 64 * MIB


async def test_a_config_at_the_blob_limit_costs_under_64_mib_parsed_or_refused():
    from ci.registry.limits import MAX_BLOB_BYTES

    tiny = tiny_values(MAX_BLOB_BYTES - 64, b'{"os":"linux","architecture":"amd64","x":[%s]}')
    wide = "\U0001f600" * ((MAX_BLOB_BYTES - 100) // 4)  # 4 bytes each, in UTF-8 and parsed
    one_string = json.dumps(
        {"os": "linux", "architecture": "amd64", "x": wide}, ensure_ascii=False
    ).encode()
    for config, refused in ((tiny, True), (one_string, False)):
        assert len(config) <= MAX_BLOB_BYTES
        manifest = manifest_over(config)

        async def handler(request, writer, config=config, manifest=manifest):
            if "/blobs/" in request.path:
                await respond(writer, 200, config)
            else:
                await respond(writer, 200, manifest, [("Content-Type", OCI_MANIFEST)])

        async with HostileServer(handler) as server, client() as c:
            with peak_memory() as peak:
                if refused:
                    error = await failure(c.inspect(server.ref()))
                    assert "JSON values" in str(error)
                else:
                    described = await within(c.inspect(server.ref()))
                    assert described.platforms[0].platform == "linux/amd64"
        assert peak[0] < 64 * MIB, (refused, peak[0] // MIB)


# Signature blobs are read with their descriptor's size ------------------------------------


def signature_tag_handler(layer_or_config: dict, blob: bytes, *, as_config: bool):
    """A `.sig` tag whose layer (or config) descriptor is small but whose blob is 8 MiB."""
    from ci.supply_chain.signing import OCI_CONFIG, SIGNATURE_ANNOTATION

    descriptor = {"digest": sha256(blob), **layer_or_config}
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor
        if as_config
        else {"mediaType": OCI_CONFIG, "digest": sha256(b"{}"), "size": 2},
        "layers": []
        if as_config
        else [{**descriptor, "annotations": {SIGNATURE_ANNOTATION: "c2ln"}}],
    }
    body = json.dumps(document).encode()

    async def handler(request, writer):
        if request.path.endswith(".sig"):
            await respond(writer, 200, body, [("Content-Type", OCI_MANIFEST)])
        elif "/blobs/" in request.path:
            await respond(writer, 200, blob)
        else:
            await respond(writer, 404)

    return handler


async def test_verify_reads_no_more_of_a_signature_payload_than_its_layer_says():
    from ci.supply_chain.signing import SIMPLE_SIGNING_MEDIA_TYPE
    from ci.supply_chain.verify import Verdict, check_manifest

    blob = b"x" * (8 * MIB)
    handler = signature_tag_handler(
        {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "size": 300}, blob, as_config=False
    )
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    async with HostileServer(handler) as server, client() as c:
        repository = ImageReference(server.registry, "hostile/image")
        with peak_memory() as peak:
            check = await within(check_manifest(c, repository, SUBJECT, key, "index"))
    assert check.status is Verdict.FAILED
    assert "the size its descriptor gives (300 bytes)" in check.detail
    assert peak[0] < 2 * MIB


async def test_signing_reads_no_more_of_the_previous_config_than_its_descriptor_says():
    from ci.supply_chain.signing import OCI_CONFIG, _previous_config

    blob = b"{" + b" " * (8 * MIB) + b"}"
    handler = signature_tag_handler({"mediaType": OCI_CONFIG, "size": 100}, blob, as_config=True)
    async with HostileServer(handler) as server, client() as c:
        repository = ImageReference(server.registry, "hostile/image")
        stored = await within(c.get_manifest(repository.with_tag(fallback_tag(SUBJECT) + ".sig")))
        with peak_memory() as peak:
            previous = await within(_previous_config(c, repository, stored.document))
    assert previous is None
    assert peak[0] < 2 * MIB
    assert server.hits("/blobs/") == 1


# Fan-outs: every failure reaches the user in the registry's words, never as "TaskGroup" -----

ARM_CONFIG = json.dumps({"os": "linux", "architecture": "arm64"}).encode()
ARM_MANIFEST = manifest_over(ARM_CONFIG)
TWO_PLATFORMS = index_of(
    [
        {
            "mediaType": OCI_MANIFEST,
            "digest": sha256(body),
            "size": len(body),
            "platform": {"os": "linux", "architecture": arch},
        }
        for body, arch in ((MANIFEST, "amd64"), (ARM_MANIFEST, "arm64"))
    ]
)


def refusing(*markers: str):
    """A two-platform image whose requests containing a marker are refused (403), each
    with a message naming the path it refused."""

    async def handler(request, writer):
        if any(marker in request.target for marker in markers):
            message = f"registry-says-no to {request.path.rsplit('/', 1)[1][:20]}"
            await respond_json(writer, {"errors": [{"code": "DENIED", "message": message}]}, 403)
        elif request.path.endswith("/manifests/1"):
            await respond(writer, 200, TWO_PLATFORMS, [("Content-Type", OCI_INDEX)])
        elif request.path.endswith(f"/manifests/{sha256(ARM_MANIFEST)}"):
            await respond(writer, 200, ARM_MANIFEST, [("Content-Type", OCI_MANIFEST)])
        elif request.path.endswith(f"/blobs/{sha256(ARM_CONFIG)}"):
            await respond(writer, 200, ARM_CONFIG)
        elif not await serve_image(request, writer):
            await respond(writer, 404)

    return handler


def assert_every_refusal_reported(message: str, count: int) -> None:
    assert "TaskGroup" not in message
    assert "sub-exception" not in message
    assert message.count("registry-says-no to") == count, message


@pytest.mark.parametrize(
    ("markers", "refusals"),
    [
        ((f"/manifests/{sha256(MANIFEST)}", f"/manifests/{sha256(ARM_MANIFEST)}"), 2),
        (("/referrers/",), 2),  # the SBOM lookups
        ((".sig",), 3),  # the signature lookups: the index and both platforms
        (("/referrers/", ".sig"), 5),  # both lookups at once
    ],
    ids=["platform manifests", "sbom lookups", "signature lookups", "both lookups"],
)
async def test_each_inspect_fan_out_reports_every_registry_refusal(markers, refusals):
    from ci.publishing.inspection import inspect_address

    async with HostileServer(refusing(*markers)) as server:
        error = await failure(inspect_address(server.ref(), RegistryAccess()))
    assert_every_refusal_reported(str(error), refusals)


async def test_verify_reports_every_registry_refusal():
    from ci.supply_chain.verify import verify_address

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    async with HostileServer(refusing(".sig")) as server:
        error = await failure(verify_address(server.ref(), key, RegistryAccess()))
    assert_every_refusal_reported(str(error), 3)
