"""The registry namespace images are published under (`--registry ghcr.io/colliery-io`).

Parsed once (`parse_namespace`); each component's repository is then
`{namespace}/brokkr-{component}` (`Namespace.repository`), never re-parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci.errors import BrokkrError
from ci.rules.components import Component, component_spec
from ci.rules.reference import ImageReference, parse_repository


@dataclass(frozen=True)
class Namespace:
    """A registry and namespace such as `ghcr.io/colliery-io` (no tag, no digest)."""

    text: str
    """As given, stripped and without a trailing `/`."""
    registry: str
    """The registry part, `host[:port]` (`ghcr.io`, `localhost:5000`)."""
    path: str
    """The namespace inside the registry (`colliery-io`; `library/…` on Docker Hub is
    filled in as its references are; may be empty: `localhost:5000`)."""

    @property
    def host(self) -> str:
        """The registry's host name, without port."""
        return ImageReference(self.registry, self.path).host

    def repository(self, component: Component) -> ImageReference:
        """`{namespace}/brokkr-{component}`, e.g. `ghcr.io/colliery-io/brokkr-broker`."""
        name = component_spec(component).name
        return ImageReference(self.registry, f"{self.path}/{name}" if self.path else name)

    def __str__(self) -> str:
        return self.text


def parse_namespace(value: str) -> Namespace:
    """Check a `--registry` value and parse it; a `BrokkrError` says what is accepted."""
    text = value.strip().rstrip("/")
    namespace = text.split("/", 1)[1] if "/" in text else ""  # after the host[:port]
    if not text or "@" in text or ":" in namespace:
        msg = (
            f"--registry must be a registry and namespace such as ghcr.io/colliery-io "
            f"(no tag or digest), got {text!r}"
        )
        raise BrokkrError(msg)
    probe = component_spec(Component.BROKER).name
    try:
        parsed = parse_repository(f"{text}/{probe}")
    except BrokkrError as e:
        msg = f"--registry {text!r} is not a usable registry namespace: {e}"
        raise BrokkrError(msg) from None
    path = parsed.repository.removesuffix(probe).rstrip("/")
    return Namespace(text, parsed.registry, path)
