"""A registry on loopback that misbehaves on purpose, written at the socket level.

``HostileServer`` runs in the test's own event loop (``async with``). Each
request is parsed (request line, headers, a ``Content-Length`` body) and handed
to the test's ``handler(request, writer)``, which may answer properly
(``respond``) or not at all: endless chunked bodies, gzip bombs, trickled
bytes, endless ``102 Processing``, oversized headers, broken framing.
Every connection is closed after one exchange, and leaving the block cancels
whatever a handler is still doing, so no misbehaviour outlives its test.

No pytest dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from tests.support.loopback import Loopback

MAX_REQUEST_HEAD = 64 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lowercase names; the last value wins
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class HostileServer(Loopback):
    """A loopback HTTP/1.1 server whose every answer comes from ``handler``."""

    handler: Handler
    host: str = "127.0.0.1"
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _port: int | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._connection, self.host, 0)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    @property  # type: ignore[override]
    def port(self) -> int:
        assert self._port is not None, "use HostileServer with 'async with'"
        return self._port

    def hits(self, match: str) -> int:
        return sum(1 for r in self.requests if match in r.target)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            # The handler runs as its own task, which leaving the server cancels.
            handler = asyncio.create_task(self.handler(request, writer))
            self._handlers.add(handler)
            try:
                await handler
            except asyncio.CancelledError:
                if task.cancelling():
                    raise
            finally:
                self._handlers.discard(handler)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up: that is what most scenarios want
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(BaseException):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    if len(head) > MAX_REQUEST_HEAD:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, body)


# Answers ---------------------------------------------------------------------------


def head(status: int, headers: list[tuple[str, str]] | None = None, reason: str = "X") -> bytes:
    """A status line and headers (no body, no blank line added beyond the head's end)."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def respond(
    writer: asyncio.StreamWriter,
    status: int = 200,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    reason: str = "OK",
) -> None:
    """A well-formed answer with a Content-Length, closing the connection."""
    all_headers = [*(headers or []), ("Content-Length", str(len(body))), ("Connection", "close")]
    writer.write(head(status, all_headers, reason))
    view = memoryview(body)
    for start in range(0, len(body), 65536):  # in slices: the server buffers little
        writer.write(view[start : start + 65536])
        await writer.drain()
    await writer.drain()


async def respond_json(
    writer: asyncio.StreamWriter,
    document: Any,
    status: int = 200,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    await respond(writer, status, body, [("Content-Type", "application/json"), *(headers or [])])


async def stream_chunked_forever(writer: asyncio.StreamWriter, chunk: bytes) -> None:
    """A 200 whose chunked body never ends (until the client hangs up)."""
    writer.write(head(200, [("Transfer-Encoding", "chunked"), ("Content-Type", OCI_MANIFEST)]))
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    while True:
        writer.write(frame)
        await writer.drain()


async def trickle(writer: asyncio.StreamWriter, data: bytes, *, every: float) -> None:
    """Send ``data`` one byte at a time, ``every`` seconds apart."""
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(every)


# Documents ---------------------------------------------------------------------------

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_over(config: bytes, *, config_size: int | None = None, **extra: Any) -> bytes:
    """An image manifest whose config descriptor points at ``config``."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": sha256(config),
            "size": len(config) if config_size is None else config_size,
        },
        "layers": [],
        **extra,
    }
    return json.dumps(document).encode()


def index_of(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()


def gzip_bomb(decoded_size: int) -> bytes:
    """A gzip member that decodes to ``decoded_size`` zero bytes (about 1/1000 of it)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [deflate.compress(block) for _ in range(decoded_size // len(block))]
    parts.append(deflate.flush())
    return b"".join(parts)


# Measuring -----------------------------------------------------------------------------


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Trace Python allocations in the block; the list gets the peak in bytes."""
    result: list[int] = []
    tracemalloc.start()
    try:
        yield result
    finally:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result.append(peak)


async def within(awaitable: Awaitable[Any], seconds: float = 20.0) -> Any:
    """Await with a hard stop, so a test that goes wrong still ends."""
    async with asyncio.timeout(seconds):
        return await awaitable
