"""Image addresses: the forms users type, Docker's normalisation, clear errors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci.errors import BrokkrError
from ci.rules.reference import (
    ImageReference,
    is_loopback_host,
    parse_reference,
    parse_repository,
    validate_digest,
    validate_tag,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("address", "registry", "repository", "tag", "digest"),
    [
        (
            "ghcr.io/colliery-io/brokkr-broker:1.2.3",
            "ghcr.io",
            "colliery-io/brokkr-broker",
            "1.2.3",
            None,
        ),
        (
            "ghcr.io/colliery-io/brokkr-broker",
            "ghcr.io",
            "colliery-io/brokkr-broker",
            "latest",
            None,
        ),
        (
            f"ghcr.io/colliery-io/brokkr-broker@{DIGEST}",
            "ghcr.io",
            "colliery-io/brokkr-broker",
            None,
            DIGEST,
        ),
        (f"ghcr.io/org/name:1.2@{DIGEST}", "ghcr.io", "org/name", "1.2", DIGEST),
        ("localhost:5000/x:y", "localhost:5000", "x", "y", None),
        ("localhost/x", "localhost", "x", "latest", None),
        ("127.0.0.1:41234/brokkr/agent", "127.0.0.1:41234", "brokkr/agent", "latest", None),
        ("[::1]:5000/a/b:c", "[::1]:5000", "a/b", "c", None),
        (
            "registry.example.com/a/b/c/d:v1_x.y-z",
            "registry.example.com",
            "a/b/c/d",
            "v1_x.y-z",
            None,
        ),
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("bitnami/kubectl:1.30", "docker.io", "bitnami/kubectl", "1.30", None),
        ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
        (
            "index.docker.io/library/debian:bookworm-slim",
            "docker.io",
            "library/debian",
            "bookworm-slim",
            None,
        ),
        ("ghcr.io/a/b__c.d-e--f:T", "ghcr.io", "a/b__c.d-e--f", "T", None),
    ],
)
def test_parses_the_forms_users_write(address, registry, repository, tag, digest):
    ref = parse_reference(address)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("ghcr.io/colliery-io/brokkr-broker:1.2.3", "ghcr.io/colliery-io/brokkr-broker:1.2.3"),
        ("ghcr.io/org/name", "ghcr.io/org/name:latest"),
        (f"ghcr.io/org/name:1@{DIGEST}", f"ghcr.io/org/name:1@{DIGEST}"),
        (f"ghcr.io/org/name@{DIGEST}", f"ghcr.io/org/name@{DIGEST}"),
        ("alpine", "docker.io/library/alpine:latest"),
    ],
)
def test_str_is_the_normalised_address(address, expected):
    assert str(parse_reference(address)) == expected
    assert str(parse_reference(expected)) == expected


@pytest.mark.parametrize(
    ("address", "scheme", "base_url"),
    [
        ("ghcr.io/a/b", "https", "https://ghcr.io"),
        ("registry.example.com:8443/a/b", "https", "https://registry.example.com:8443"),
        ("localhost:5000/a", "http", "http://localhost:5000"),
        ("localhost/a", "http", "http://localhost"),
        ("127.0.0.1:5000/a", "http", "http://127.0.0.1:5000"),
        ("127.8.9.10:5000/a", "http", "http://127.8.9.10:5000"),
        ("[::1]:5000/a", "http", "http://[::1]:5000"),
        ("10.0.0.1:5000/a", "https", "https://10.0.0.1:5000"),
        ("128.0.0.1/a", "https", "https://128.0.0.1"),
        ("alpine", "https", "https://registry-1.docker.io"),
    ],
)
def test_plain_http_only_for_loopback(address, scheme, base_url):
    ref = parse_reference(address)
    assert ref.scheme == scheme
    assert ref.base_url == base_url


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("ghcr.io/Colliery-IO/Brokkr:1", "must be lowercase"),
        ("Brokkr/broker", "must be lowercase"),
        ("ghcr.io/org/name:-bad", "invalid tag '-bad'"),
        ("ghcr.io/org/name:" + "t" * 129, "1 to 128 characters"),
        ("ghcr.io/org/name:a+b", "invalid tag"),
        ("ghcr.io/org/name@sha256:abc", "64 lowercase hex digits"),
        ("ghcr.io/org/name@sha256:" + "AB" * 32, "64 lowercase hex digits"),
        ("ghcr.io/org/name@md5:" + "ab" * 16, "expected sha256:"),
        ("ghcr.io/org/name@", "invalid digest"),
        (f"ghcr.io/org/name@{DIGEST}@{DIGEST}", "more than one '@'"),
        ("https://ghcr.io/org/name", "without a scheme"),
        ("", "empty"),
        (" ghcr.io/org/name", "whitespace"),
        ("ghcr.io/", "repository name is missing"),
        ("ghcr.io/org//name", "component '' is not valid"),
        ("ghcr.io/org/-name", "component '-name' is not valid"),
        ("ghcr.io/org/name_", "component 'name_' is not valid"),
        ("ghcr.io:0/org/name", "port '0'"),
        ("ghcr.io:99999/org/name", "port '99999'"),
        ("ghcr.io:abc/org/name", "port 'abc'"),
        ("bad_host.io/org/name", "not a valid host name"),
        ("[::1/a", "unclosed"),
        ("[nothex]:5000/a", "not an IPv6 address"),
        ("ghcr.io/" + "a" * 260, "longer than 255"),
    ],
)
def test_malformed_addresses_are_clear_errors(address, message):
    with pytest.raises(BrokkrError, match="invalid image address") as caught:
        parse_reference(address)
    assert message in str(caught.value)
    assert "accepted forms" in str(caught.value)


def test_with_tag_and_with_digest():
    ref = parse_reference(f"ghcr.io/org/name:1@{DIGEST}")
    moved = ref.with_tag("2")
    assert str(moved) == "ghcr.io/org/name:2"
    assert moved.reference == "2"
    pinned = moved.with_digest(DIGEST)
    assert str(pinned) == f"ghcr.io/org/name:2@{DIGEST}"
    assert pinned.reference == DIGEST
    with pytest.raises(BrokkrError, match="invalid tag"):
        ref.with_tag("no spaces")
    with pytest.raises(BrokkrError, match="invalid digest"):
        ref.with_digest("sha256:nope")


def test_reference_is_frozen_and_hashable():
    ref = parse_reference("ghcr.io/org/name:1")
    assert ref == ImageReference("ghcr.io", "org/name", "1")
    assert len({ref, ImageReference("ghcr.io", "org/name", "1")}) == 1
    with pytest.raises(AttributeError):
        ref.tag = "2"  # type: ignore[misc]


def test_parse_repository_rejects_a_tag_or_digest():
    ref = parse_repository("ghcr.io/colliery-io/brokkr-broker")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "ghcr.io",
        "colliery-io/brokkr-broker",
        None,
        None,
    )
    assert str(ref) == "ghcr.io/colliery-io/brokkr-broker"
    with pytest.raises(BrokkrError, match=r"without a tag or digest, e\.g\. ghcr\.io/org/name$"):
        parse_repository("ghcr.io/org/name:1.2.3")
    with pytest.raises(BrokkrError, match="without a tag or digest"):
        parse_repository(f"ghcr.io/org/name@{DIGEST}")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("registry.localhost", False),  # a name resolved through DNS, not loopback
        ("localhost.", False),
        ("::ffff:127.0.0.1", False),
        ("0:0:0:0:0:0:0:1", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("10.1.2.3", False),
        ("ghcr.io", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_validators_accept_valid_values():
    assert validate_tag("1.2.3-rc.1") == "1.2.3-rc.1"
    assert validate_tag("_x") == "_x"
    assert validate_digest(DIGEST) == DIGEST
    assert validate_digest("sha512:" + "0" * 128) == "sha512:" + "0" * 128


_component = st.from_regex(r"[a-z0-9]+(?:[._-][a-z0-9]+)?", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)


@given(
    registry=st.sampled_from(["ghcr.io", "localhost:5000", "127.0.0.1:1234", "reg.example.com"]),
    components=st.lists(_component, min_size=1, max_size=3),
    tag=st.none() | _tag,
    digest=st.none() | st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True),
)
def test_round_trip(registry, components, tag, digest):
    repository = "/".join(components)
    address = f"{registry}/{repository}"
    if tag is not None:
        address += f":{tag}"
    if digest is not None:
        address += f"@{digest}"
    ref = parse_reference(address)
    assert ref.registry == registry
    assert ref.repository == repository
    assert ref.digest == digest
    assert ref.tag == (tag if tag is not None or digest is not None else "latest")
    assert parse_reference(str(ref)) == ref


# --------------------------------------------------------------------------- boundaries


@pytest.mark.parametrize(
    ("address", "registry", "base_url"),
    [
        ("ghcr.io:1/org/name", "ghcr.io:1", "https://ghcr.io:1"),
        ("ghcr.io:65535/org/name", "ghcr.io:65535", "https://ghcr.io:65535"),
        ("[::1]:1/a", "[::1]:1", "http://[::1]:1"),
        ("[::1]:65535/a", "[::1]:65535", "http://[::1]:65535"),
        ("[::1]/a", "[::1]", "http://[::1]"),
        ("[2001:db8::1]:5000/a", "[2001:db8::1]:5000", "https://[2001:db8::1]:5000"),
    ],
)
def test_registry_ports_from_1_to_65535_are_accepted(address, registry, base_url):
    ref = parse_reference(address)
    assert ref.registry == registry
    assert ref.base_url == base_url


@pytest.mark.parametrize(
    ("address", "port"),
    [
        ("ghcr.io:0/org/name", "'0'"),
        ("ghcr.io:65536/org/name", "'65536'"),
        ("ghcr.io:/org/name", "''"),
        ("[::1]:0/a", "'0'"),
        ("[::1]:65536/a", "'65536'"),
        ("[::1]:/a", "''"),
    ],
)
def test_registry_ports_outside_1_to_65535_are_refused_naming_the_port(address, port):
    with pytest.raises(BrokkrError) as caught:
        parse_reference(address)
    message = str(caught.value)
    assert f"registry port {port} is not a number from 1 to 65535" in message
    assert repr(address) in message


def test_bracketed_ipv6_takes_nothing_but_a_port_after_the_bracket():
    with pytest.raises(BrokkrError, match=r"unexpected 'x' after the IPv6 address"):
        parse_reference("[::1]x/a")


@pytest.mark.parametrize("address", ["::1:5000/a/b", "fe80::1/a", "2001:db8::1:443/org/name"])
def test_an_unbracketed_ipv6_registry_is_a_clear_error(address):
    registry = address.split("/", 1)[0]
    with pytest.raises(BrokkrError) as caught:
        parse_reference(address)
    message = str(caught.value)
    assert f"registry {registry!r} looks like an IPv6 address" in message
    assert "[::1]:5000" in message


@pytest.mark.parametrize(
    "address",
    ["registry-1.docker.io/library/alpine:3.20", "registry-1.docker.io/alpine:3.20"],
)
def test_docker_hubs_api_host_is_docker_hub(address):
    ref = parse_reference(address)
    assert (ref.registry, ref.repository, ref.tag) == ("docker.io", "library/alpine", "3.20")
    assert ref.base_url == "https://registry-1.docker.io"
    assert str(ref) == "docker.io/library/alpine:3.20"
