"""What every loopback test server shares: where it listens and how to name it.

``registry_server.RegistryServer`` (the real docker-registry),
``hostile_server.HostileServer`` (misbehaviour at the socket level) and
``registry_proxy.RegistryProxy`` (a proxy in front of the real one) each give
a ``host`` and a ``port``; ``Loopback`` turns them into the registry part of an
address, its base URL, image addresses and references, one way for all three.

No pytest dependency.
"""

from __future__ import annotations

from ci.rules.reference import ImageReference


class Loopback:
    """A server on loopback, plain HTTP; subclasses provide ``host`` and ``port``."""

    host: str
    port: int

    @property
    def registry(self) -> str:
        """The registry part of an image address, e.g. ``127.0.0.1:5000``."""
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:5000``."""
        return f"http://{self.registry}"

    def address(self, repository: str, tag: str | None = None, digest: str | None = None) -> str:
        """An image address on this server, as a user would type it."""
        text = f"{self.registry}/{repository}"
        if tag is not None:
            text += f":{tag}"
        if digest is not None:
            text += f"@{digest}"
        return text

    def ref(self, repository: str = "hostile/image", tag: str | None = "1") -> ImageReference:
        """The parsed reference of ``repository:tag`` on this server."""
        return ImageReference(self.registry, repository, tag)
