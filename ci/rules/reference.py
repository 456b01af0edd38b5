"""Image addresses as users write them, parsed the way Docker parses them.

Accepted forms (``registry`` may carry a port, e.g. ``localhost:5000``):

- ``registry/org/name:tag``
- ``registry/org/name@sha256:<64 hex>``
- ``registry/org/name:tag@sha256:<64 hex>`` (the digest decides what is fetched)
- ``registry/org/name`` (tag ``latest``)

Like Docker, the first path component is a registry host only when it contains
a ``.`` or a ``:`` or is ``localhost``; otherwise the address belongs to Docker
Hub (``alpine`` is ``docker.io/library/alpine:latest``). Plain HTTP is used only
for loopback registries (``localhost``, ``127.0.0.0/8``, ``::1``), HTTPS
everywhere else — the rule Docker applies to registries it has not been told
are insecure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ci.errors import BrokkrError
from ci.rules.tags import OCI_TAG

__all__ = [
    "DEFAULT_TAG",
    "DOCKER_HUB",
    "ConnectTo",
    "ImageReference",
    "is_loopback_host",
    "parse_reference",
    "parse_repository",
    "validate_digest",
    "validate_tag",
]

DOCKER_HUB = "docker.io"
"""How Docker Hub appears in normalised addresses."""

DOCKER_HUB_API = "registry-1.docker.io"
"""The host that serves Docker Hub's distribution API."""

DEFAULT_TAG = "latest"

ConnectTo = Mapping[str, tuple[str, int]]
"""Registry (`host[:port]`, loopback only) -> the `(host, port)` the module's registry
client dials instead, keeping the registry's name in URLs and logins (`--registry-service`)."""

ACCEPTED_FORMS = (
    "registry/org/name:tag, registry/org/name@sha256:<64 hex digits>, "
    "registry/org/name:tag@sha256:<64 hex digits>"
)

# The grammar of github.com/distribution/reference.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_MAX_NAME_LENGTH = 255


def _invalid(address: str, reason: str) -> BrokkrError:
    return BrokkrError(
        f"invalid image address {address!r}: {reason} (accepted forms: {ACCEPTED_FORMS})"
    )


_IPV4_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_IPV6_LOOPBACK = ipaddress.IPv6Address("::1")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (without port or brackets) names this machine's loopback.

    Only an address in ``127.0.0.0/8``, ``::1``, or exactly the name
    ``localhost`` (any case). Other names, ``*.localhost`` included, are
    resolved through DNS like any host and so are not trusted with plain HTTP.
    """
    lowered = host.lower()
    if lowered == "localhost":
        return True
    try:
        address = ipaddress.ip_address(lowered)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _IPV4_LOOPBACK
    return address == _IPV6_LOOPBACK


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid OCI tag, else raise BrokkrError."""
    if not OCI_TAG.fullmatch(tag):
        raise BrokkrError(
            f"invalid tag {tag!r}: a tag is 1 to 128 characters of letters, digits, "
            "'_', '.' and '-', and does not start with '.' or '-'"
        )
    return tag


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a valid ``sha256:``/``sha512:`` digest, else raise."""
    algorithm, sep, hex_part = digest.partition(":")
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if not sep or length is None:
        raise BrokkrError(
            f"invalid digest {digest!r}: expected sha256:<64 lowercase hex digits> "
            "(or sha512:<128 lowercase hex digits>)"
        )
    if len(hex_part) != length or not re.fullmatch(r"[0-9a-f]+", hex_part):
        raise BrokkrError(
            f"invalid digest {digest!r}: {algorithm} takes exactly {length} lowercase hex digits"
        )
    return digest


def _validate_registry(address: str, registry: str) -> None:
    host, port = registry, None
    if registry.startswith("["):
        end = registry.find("]")
        if end < 0:
            raise _invalid(address, f"registry {registry!r} has an unclosed '['")
        host, rest = registry[1:end], registry[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _invalid(address, f"{host!r} is not an IPv6 address") from None
        if rest:
            if not rest.startswith(":"):
                raise _invalid(address, f"unexpected {rest!r} after the IPv6 address")
            port = rest[1:]
    elif registry.count(":") > 1:
        raise _invalid(
            address,
            f"registry {registry!r} looks like an IPv6 address: put it in brackets, "
            "with any port after them, as in [::1]:5000",
        )
    elif ":" in registry:
        host, port = registry.rsplit(":", 1)
    if port is not None and (not _PORT.fullmatch(port) or not 0 < int(port) < 65536):
        raise _invalid(address, f"registry port {port!r} is not a number from 1 to 65535")
    if not registry.startswith("[") and not all(
        _HOST_LABEL.fullmatch(label) for label in host.split(".")
    ):
        raise _invalid(address, f"registry host {host!r} is not a valid host name")


def _split_host(registry: str) -> str:
    """The host of ``registry`` without port or IPv6 brackets."""
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


@dataclass(frozen=True)
class ImageReference:
    """A parsed, normalised image address.

    ``tag`` and ``digest`` may both be set (``name:tag@sha256:…``); then the
    digest is what the registry is asked for. ``parse_reference`` fills in
    ``latest`` when neither is given.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if self.tag is not None:
            validate_tag(self.tag)
        if self.digest is not None:
            validate_digest(self.digest)

    @property
    def host(self) -> str:
        """The registry's host name, without port."""
        return _split_host(self.registry)

    @property
    def scheme(self) -> str:
        """``http`` for loopback registries, ``https`` for every other one."""
        return "http" if is_loopback_host(self.host) else "https"

    @property
    def base_url(self) -> str:
        """Where the registry's API lives, e.g. ``https://ghcr.io``."""
        api_host = DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry
        return f"{self.scheme}://{api_host}"

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def with_tag(self, tag: str) -> ImageReference:
        """The same repository at ``tag`` (any digest is dropped)."""
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> ImageReference:
        """The same repository pinned to ``digest`` (the tag is kept for readers)."""
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def _parse(address: str) -> tuple[str, str, str | None, str | None]:
    if not address or address != address.strip():
        raise _invalid(address, "it is empty or has surrounding whitespace")
    if "://" in address:
        raise _invalid(address, "give the address without a scheme such as https://")
    remainder, digest = address, None
    if "@" in address:
        remainder, _, digest = address.partition("@")
        if "@" in digest:
            raise _invalid(address, "it has more than one '@'")
        try:
            validate_digest(digest)
        except BrokkrError as error:
            raise _invalid(address, str(error)) from None
    # A ':' after the last '/' starts the tag; earlier ones belong to a registry port.
    tag = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        try:
            validate_tag(tag)
        except BrokkrError as error:
            raise _invalid(address, str(error)) from None
    first, slash, rest = remainder.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, repository = first, rest
        _validate_registry(address, registry)
        if registry in ("index.docker.io", "registry-1.docker.io"):
            registry = DOCKER_HUB
    else:
        registry, repository = DOCKER_HUB, remainder
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not repository:
        raise _invalid(address, "the repository name is missing")
    if repository != repository.lower() and all(
        _PATH_COMPONENT.fullmatch(part) for part in repository.lower().split("/")
    ):
        raise _invalid(address, f"repository name {repository!r} must be lowercase")
    for part in repository.split("/"):
        if not _PATH_COMPONENT.fullmatch(part):
            raise _invalid(
                address,
                f"repository path component {part!r} is not valid: components are "
                "lowercase letters and digits, separated by '.', '_', '__' or '-'",
            )
    if len(registry) + 1 + len(repository) > _MAX_NAME_LENGTH:
        raise _invalid(address, f"the name is longer than {_MAX_NAME_LENGTH} characters")
    return registry, repository, tag, digest


def parse_reference(address: str) -> ImageReference:
    """Parse an image address; a missing tag and digest means ``latest``.

    Raises BrokkrError naming what is wrong and the accepted forms.
    """
    registry, repository, tag, digest = _parse(address)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry, repository, tag, digest)


def parse_repository(address: str) -> ImageReference:
    """Parse a repository address (``registry/org/name``), without tag or digest."""
    registry, repository, tag, digest = _parse(address)
    if tag is not None or digest is not None:
        raise BrokkrError(
            f"invalid repository {address!r}: give the repository without a tag or digest, "
            f"e.g. {registry}/{repository}"
        )
    return ImageReference(registry, repository)
