"""What every loopback test server shares: where it listens and how to name it.

``registry_server.RegistryServer`` (the real docker-registry),
``hostile_server.HostileServer`` (misbehaviour at the socket level) and
``registry_proxy.RegistryProxy`` (a proxy in front of the real one) each give
a ``host`` and a ``port``; ``Loopback`` turns them into the registry part of an
address, its base URL, image addresses and references, one way for all three.

``HttpThread`` is the one way the plain-HTTP test servers (the proxy, the
rate-limited page, the GitHub API stand-in) listen: a free loopback port,
served from a daemon thread, stopped and joined at the end.

No pytest dependency.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ci.rules.reference import ImageReference


class HttpThread:
    """``handler`` served on a free loopback port from a daemon thread until ``stop``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


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
