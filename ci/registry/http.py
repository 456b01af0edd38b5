"""HTTP for the registry client: bounded bodies, one deadline per operation, retries.

Everything a registry sends is bounded before it is trusted:

- **Bodies** are streamed and counted *after* decompression, so a gzip bomb
  stops at the same limit as a plain body. A body over its limit is a
  ``BrokkrError`` that names the limit; error bodies (which only feed
  messages) are cut at ``MAX_SMALL_BODY_BYTES`` instead.
- **Time**: every operation (an inspection, a tag listing, a publish's
  registry reads) has one overall deadline, ``DEFAULT_DEADLINE`` seconds. It
  covers connecting, every read, informational ``1xx`` answers, redirects and
  the waits between retries, so a server that trickles bytes or sends
  ``102 Processing`` forever cannot extend it; the per-read ``timeout`` of the
  client is a second, shorter bound.
- **Headers** that are parsed (``WWW-Authenticate``, ``Link``, ``Location``,
  ``Retry-After``) are refused past ``MAX_HEADER_CHARS`` and parsed in linear time.
- **Redirects**: at most ``MAX_REDIRECTS``; never from HTTPS to plain HTTP,
  never to plain HTTP off loopback; credentials only go to the origin they
  were meant for.
- **Retries**: only transient failures (connection errors, timeouts, a
  connection closed before any answer, 408, 429, 500, 502, 503, 504) are
  retried; a broken protocol, an unsupported scheme or another 4xx is not.

Text from the registry (error messages, reason phrases, media types, URLs…)
goes through ``clean`` before it reaches a message, a log line or a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import time
import unicodedata
import zlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self, TypeVar

import httpx

from ci.errors import BrokkrError
from ci.rules.reference import is_loopback_host

__all__ = [
    "DEFAULT_DEADLINE",
    "MAX_BLOB_BYTES",
    "MAX_HEADER_CHARS",
    "MAX_INDEX_PLATFORMS",
    "MAX_MANIFEST_BYTES",
    "MAX_MESSAGE_CHARS",
    "MAX_REDIRECTS",
    "MAX_SMALL_BODY_BYTES",
    "MAX_TAGS",
    "MAX_TAG_PAGES",
    "MAX_TOKEN_CHARS",
    "RETRYABLE_STATUSES",
    "USER_AGENT",
    "BodyLimit",
    "ConnectTo",
    "HttpSession",
    "Limits",
    "Reply",
    "cap_message",
    "clean",
    "deadline",
    "error_codes",
    "header_values",
    "markdown_cell",
    "registry_errors",
    "retry_delay",
    "same_origin",
    "size_text",
    "status_text",
]

logger = logging.getLogger("ci.registry")

KIB = 1024
MIB = 1024 * KIB

MAX_MANIFEST_BYTES = 4 * MIB
"""Largest manifest or index read or pushed (distribution's own limit)."""
MAX_BLOB_BYTES = 16 * MIB
"""Largest blob read into memory (image configs); a blob must also match its descriptor size."""
MAX_SMALL_BODY_BYTES = 64 * KIB
"""Largest token response; error bodies are cut here (they only feed messages)."""
MAX_HEADER_CHARS = 16 * KIB
"""Longest ``WWW-Authenticate``/``Link``/``Location`` value parsed (all values of one name)."""
MAX_TOKEN_CHARS = 16 * KIB
"""Longest Bearer token accepted from a token service."""
MAX_TAGS = 100_000
"""Most tags one repository listing may return, over all its pages."""
MAX_TAG_PAGES = 1_000
"""Most pages one repository listing may take."""
MAX_INDEX_PLATFORMS = 64
"""Most platform manifests of one index, after duplicates and attestations are removed."""
MAX_REDIRECTS = 5
"""Most redirects followed for one request."""
DEFAULT_DEADLINE = 300.0
"""Seconds one registry operation (inspect, list tags, a publish's reads) may take in all."""
MAX_MESSAGE_CHARS = 2_000
"""Longest error message the client raises; registry text in it is cut far shorter."""
MAX_REGISTRY_TEXT = 200
"""Longest piece of registry-supplied text quoted in a message."""

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "brokkr-ci (OCI distribution client)"


@dataclass(frozen=True)
class Limits:
    """Every bound of the registry client; the defaults are the constants above.

    Tests pass small ones to exercise each limit quickly.
    """

    manifest_bytes: int = MAX_MANIFEST_BYTES
    blob_bytes: int = MAX_BLOB_BYTES
    small_body_bytes: int = MAX_SMALL_BODY_BYTES
    header_chars: int = MAX_HEADER_CHARS
    token_chars: int = MAX_TOKEN_CHARS
    tags: int = MAX_TAGS
    tag_pages: int = MAX_TAG_PAGES
    index_platforms: int = MAX_INDEX_PLATFORMS
    redirects: int = MAX_REDIRECTS
    deadline: float = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"limit {name} must be positive")


def size_text(size: int) -> str:
    """``4194304`` → ``4 MiB``; ``1500`` → ``1500 bytes``."""
    if size % MIB == 0:
        return f"{size // MIB} MiB"
    if size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} bytes"


@dataclass(frozen=True)
class BodyLimit:
    """How many decoded bytes a successful answer may have, and how to name that bound."""

    size: int
    text: str

    @classmethod
    def named(cls, size: int, name: str) -> BodyLimit:
        """``the 4 MiB limit for manifests and indexes``."""
        return cls(size, f"the {size_text(size)} limit for {name}")


# Registry text -------------------------------------------------------------------------


def clean(text: object, limit: int = MAX_REGISTRY_TEXT) -> str:
    """Registry-supplied text made safe for a message, a log line or a table.

    Control and format characters (newlines, ESC, bidi overrides…) become
    spaces, runs of spaces collapse, ``::`` (which starts a GitHub workflow
    command) becomes ``: :``, and the result is cut to ``limit`` characters.
    """
    raw = str(text)[: limit * 4]
    kept = [
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") else ch
        for ch in raw
    ]
    result = " ".join("".join(kept).split())
    while "::" in result:
        result = result.replace("::", ": :")
    if len(result) > limit:
        result = result[: max(limit - 1, 0)] + "…"
    return result


def markdown_cell(text: object, limit: int = MAX_REGISTRY_TEXT) -> str:
    """``clean`` text that also cannot end a Markdown table cell (``|`` escaped)."""
    return clean(text, limit).replace("\\", "\\\\").replace("|", "\\|")


def cap_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` cut to ``limit`` characters, saying that it was."""
    if len(message) <= limit:
        return message
    return message[: limit - 20] + " … (message cut)"


def header_values(headers: httpx.Headers, name: str, *, limit: int, registry: str) -> list[str]:
    """Every value of header ``name``; over ``limit`` characters in all is an error."""
    values = headers.get_list(name)
    if sum(len(v) for v in values) > limit:
        raise BrokkrError(
            f"{registry} sent a {name} header longer than {limit} characters "
            f"(the limit for parsed headers); refusing it"
        )
    return values


# Retry-After ---------------------------------------------------------------------------


def retry_delay(
    failures: int, *, backoff: float, max_delay: float, retry_after: str | None = None
) -> float:
    """Seconds to wait after the ``failures``-th failed attempt.

    Exponential (``backoff``, ``2 * backoff``, ``4 * backoff``…); a ``Retry-After``
    header (ASCII seconds or an HTTP date) can lengthen it, anything else in it
    is ignored. Never more than ``max_delay``.
    """
    delay = backoff * 2 ** min(max(failures - 1, 0), 32)
    requested = _retry_after_seconds(retry_after) if retry_after else None
    if requested is not None:
        delay = max(delay, requested)
    return max(0.0, min(delay, max_delay))


def _retry_after_seconds(value: str) -> float | None:
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (when - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


# Deadline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Deadline:
    at: float
    started: float
    seconds: float
    registry: str
    doing: str

    def expired(self) -> BrokkrError:
        spent = time.monotonic() - self.started
        return BrokkrError(
            f"registry {self.registry} took too long: {self.doing} did not finish within the "
            f"{self.seconds:g} s deadline (gave up after {spent:.1f} s)"
        )


_DEADLINE: ContextVar[_Deadline | None] = ContextVar("brokkr_registry_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float, *, registry: str, doing: str) -> Iterator[None]:
    """Bound everything the registry client does inside the block to ``seconds`` in all.

    An enclosing deadline that ends sooner stays in force. Tasks started inside
    the block (``asyncio.gather``, task groups) inherit it.
    """
    now = time.monotonic()
    current = _DEADLINE.get()
    if current is not None and current.at <= now + seconds:
        yield
        return
    token = _DEADLINE.set(_Deadline(now + seconds, now, seconds, registry, doing))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


T = TypeVar("T")


async def _bounded(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` within the current deadline (if any)."""
    current = _DEADLINE.get()
    if current is None:
        return await awaitable
    remaining = current.at - time.monotonic()
    if remaining <= 0:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise current.expired()
    timeout = asyncio.timeout(remaining)
    try:
        async with timeout:
            return await awaitable
    except TimeoutError:
        if timeout.expired():
            raise current.expired() from None
        raise


# Bodies -------------------------------------------------------------------------------


class _Decoder:
    """Content-Encoding decoding whose output per call never exceeds what is asked."""

    def __init__(self, encoding: str | None, *, registry: str, what: str) -> None:
        codings = [c.strip().lower() for c in (encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        self.coding = codings[0] if codings else None
        if len(codings) > 1 or self.coding not in (None, "gzip", "x-gzip", "deflate"):
            raise BrokkrError(
                f"{registry} sent {what} with an unsupported Content-Encoding "
                f"{clean(encoding or '', 60)!r} (supported: gzip, deflate)"
            )
        self._zlib = None
        if self.coding is not None:
            wbits = zlib.MAX_WBITS | (16 if "gzip" in self.coding else 0)
            self._zlib = zlib.decompressobj(wbits)

    def decode(self, data: bytes, room: int) -> bytes:
        """Up to ``room`` decoded bytes of ``data`` (more input may stay unread: then full)."""
        if self._zlib is None:
            return data
        out = self._zlib.decompress(data, room)
        while self._zlib.unconsumed_tail and len(out) < room:
            more = self._zlib.decompress(self._zlib.unconsumed_tail, room - len(out))
            if not more:
                break
            out += more
        return out

    def finish(self, room: int) -> bytes:
        if self._zlib is None:
            return b""
        if self._zlib.unconsumed_tail:  # more output than room: over the limit anyway
            return b"\0" * room
        return self._zlib.flush()


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_body(
    response: httpx.Response, limit: BodyLimit, *, strict: bool, registry: str, what: str
) -> bytes:
    """The decoded body, at most ``limit.size`` bytes.

    Over the limit: a ``BrokkrError`` when ``strict``, else the body cut there.
    """
    declared = response.headers.get("content-length", "")
    # A declared length counts encoded bytes: only a plain body can be refused up front.
    plain = not response.headers.get("content-encoding")
    if (
        strict
        and plain
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > limit.size
    ):
        raise BrokkrError(
            f"{what} from {registry} is {declared} bytes, over {limit.text}; refusing it"
        )
    encoding = response.headers.get("content-encoding")
    if response.is_stream_consumed:  # built in memory (httpx.MockTransport), decoded already
        encoding, chunks = None, _single(response.content)
    else:
        chunks = response.aiter_raw()
    try:
        decoder = _Decoder(encoding, registry=registry, what=what)
    except BrokkrError:
        if strict:
            raise
        return b""
    body = bytearray()
    try:
        async for chunk in chunks:
            body += decoder.decode(chunk, limit.size + 1 - len(body))
            if len(body) > limit.size:
                break
        else:
            body += decoder.finish(limit.size + 1 - len(body))
    except zlib.error:
        if not strict:
            return bytes(body[: limit.size])
        raise BrokkrError(
            f"{what} from {registry} is not valid {decoder.coding} data (Content-Encoding)"
        ) from None
    if len(body) > limit.size:
        if strict:
            raise BrokkrError(f"{what} from {registry} is larger than {limit.text}; refusing it")
        del body[limit.size :]
    return bytes(body)


# Requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A complete, bounded answer: status, headers, decoded body, final URL."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


class _Transient(Exception):
    """A failure worth another attempt; its text is safe to show."""


@dataclass(frozen=True)
class _Redirect:
    url: httpx.URL
    method: str
    content: bytes | None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def same_origin(url: httpx.URL, other: httpx.URL) -> bool:
    """Whether ``url`` is on ``other``'s server: the same scheme, host and port."""
    return _origin(url) == _origin(other)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _endpoint_key(url: httpx.URL) -> tuple[str, str, int]:
    """``(scheme, host, port)`` with the scheme's default port filled in."""
    return (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 0))


class ConnectTo(httpx.AsyncBaseTransport):
    """Sends requests for some origins to another host and port; nothing else changes.

    ``routes`` maps an origin URL (``http://localhost:5000``) to the
    ``(host, port)`` to connect to instead (a Dagger service's endpoint, for
    ``--registry-service``). Only the TCP connection moves: the request keeps
    its URL's ``Host`` header, so the registry still sees (and names in
    ``Location`` headers) the address the user gave, and the client still sees
    that URL, so redirects, auth scopes and messages name it too. Requests for
    any other origin (another port, another scheme, a token service) go through
    ``inner`` untouched. This is what the engine does for ``Container.publish``
    with a ``registryService``: it replaces only the dial target of the
    address's host (engine/sources/netconfhttp/transport.go,
    NewDialTransportWithHostAliases).
    """

    def __init__(
        self,
        routes: Mapping[str, tuple[str, int]],
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._routes: dict[tuple[str, str, int], tuple[str, int]] = {}
        for origin, (host, port) in routes.items():
            url = httpx.URL(origin)
            if url.scheme not in _DEFAULT_PORTS or not url.host or url.raw_path not in (b"", b"/"):
                raise ValueError(f"not an http(s) origin: {origin!r}")
            if not host or not 0 < port < 65536:
                raise ValueError(f"not a host and port to connect to: {(host, port)!r}")
            self._routes[_endpoint_key(url)] = (host, port)
        self._owns_inner = inner is None
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self._routes.get(_endpoint_key(request.url))
        if target is None:
            return await self._inner.handle_async_request(request)
        host, port = target
        # The headers (Host among them) were made from the original URL and stay.
        moved = httpx.Request(
            request.method,
            request.url.copy_with(host=host, port=port),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(moved)

    async def aclose(self) -> None:
        if self._owns_inner:
            await self._inner.aclose()


class HttpSession:
    """An ``httpx.AsyncClient`` that only ever returns a bounded ``Reply`` or raises BrokkrError.

    ``send`` follows redirects itself (see the module docstring for the rules),
    retries transient failures ``attempts`` times with exponential ``backoff``
    (``Retry-After`` can lengthen a wait, ``max_delay`` caps it), and runs
    inside the current ``deadline``.
    """

    def __init__(
        self,
        *,
        attempts: int,
        backoff: float,
        max_delay: float,
        timeout: float,
        limits: Limits,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_to: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if backoff < 0 or max_delay < 0:
            raise ValueError("backoff and max_delay must not be negative")
        self.limits = limits
        self._attempts = attempts
        self._backoff = backoff
        self._max_delay = max_delay
        self._timeout = timeout
        self._transport = transport
        self._connect_to = dict(connect_to or {})
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        # A moved origin gets its own mount: it wins over any proxy taken from the
        # environment (the service is on the engine's network, not behind a proxy).
        mounts: dict[str, httpx.AsyncBaseTransport | None] = {
            origin: ConnectTo({origin: target}, self._transport)
            for origin, target in self._connect_to.items()
        }
        self._client = httpx.AsyncClient(
            transport=self._transport,
            mounts=mounts or None,
            timeout=self._timeout,
            follow_redirects=False,  # followed by hand, with the rules above
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        limit: BodyLimit,
        target: str,
        subject: str,
        content: bytes | None = None,
        what: str = "the answer",
    ) -> Reply:
        """Send one request; any answer but a transient failure comes back as a ``Reply``.

        ``limit`` bounds a 2xx body (over it is an error); other bodies are cut
        at ``small_body_bytes``. ``target`` (a registry or token service) and
        ``subject`` (the image) name the request in errors.
        """
        if self._client is None:
            raise RuntimeError("the registry client is used outside 'async with'")
        failures = 0
        while True:
            retry_after = None
            try:
                reply = await _bounded(
                    self._follow(method, url, headers, content, limit, target, what)
                )
            except _Transient as error:
                problem = str(error)
            else:
                if reply.status not in RETRYABLE_STATUSES:
                    return reply
                problem = status_text(reply)
                retry_after = reply.headers.get("retry-after")
            failures += 1
            if failures >= self._attempts:
                raise BrokkrError(
                    f"registry {target} unreachable or failing for {subject} after {failures} "
                    f"attempt{'s' if failures > 1 else ''}: {problem}"
                )
            delay = retry_delay(
                failures, backoff=self._backoff, max_delay=self._max_delay, retry_after=retry_after
            )
            logger.info(
                "%s %s: %s; retrying in %.1fs (attempt %d of %d)",
                method,
                clean(httpx.URL(url).path, 100),
                problem,
                delay,
                failures + 1,
                self._attempts,
            )
            await _bounded(asyncio.sleep(delay))

    async def _follow(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        limit: BodyLimit,
        target: str,
        what: str,
    ) -> Reply:
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, ValueError):
            raise BrokkrError(
                f"cannot request {clean(url)!r} from {target}: not a valid URL"
            ) from None
        first = current
        for _ in range(self.limits.redirects + 1):
            sent = dict(headers)
            if not same_origin(current, first):
                sent.pop("Authorization", None)  # credentials stay with their origin
            answer = await self._exchange(method, current, sent, content, limit, target, what)
            if isinstance(answer, Reply):
                return answer
            current, method, content = answer.url, answer.method, answer.content
        raise BrokkrError(
            f"{target} redirected more than {self.limits.redirects} times for {what} "
            f"(the limit for redirects); giving up"
        )

    async def _exchange(
        self,
        method: str,
        url: httpx.URL,
        headers: Mapping[str, str],
        content: bytes | None,
        limit: BodyLimit,
        target: str,
        what: str,
    ) -> Reply | _Redirect:
        assert self._client is not None
        try:
            async with self._client.stream(method, url, headers=headers, content=content) as resp:
                if resp.status_code in REDIRECT_STATUSES and "location" in resp.headers:
                    return self._redirect(resp, method, content, target)
                # A HEAD answer has no body; its Content-Length is the GET's.
                body = b""
                if method != "HEAD":
                    body = await _read_body(
                        resp,
                        limit
                        if resp.is_success
                        else BodyLimit.named(self.limits.small_body_bytes, "errors"),
                        strict=resp.is_success,
                        registry=target,
                        what=what,
                    )
                return Reply(
                    resp.status_code, clean(resp.reason_phrase, 60), resp.headers, body, url
                )
        except (httpx.TimeoutException, httpx.NetworkError) as error:
            raise _Transient(_transport_problem(error)) from None
        except httpx.RemoteProtocolError as error:
            # Closed before the answer or its body was complete: a dropped connection.
            # Anything else (bad framing, malformed headers) is permanent.
            if "without sending" in str(error):
                raise _Transient(_transport_problem(error)) from None
            raise BrokkrError(
                f"{target} broke the HTTP protocol while sending {what}: "
                f"{_transport_problem(error)}"
            ) from None
        except httpx.HTTPError as error:
            raise BrokkrError(
                f"cannot talk to {target} for {what}: {_transport_problem(error)}"
            ) from None

    def _redirect(
        self, response: httpx.Response, method: str, content: bytes | None, target: str
    ) -> _Redirect:
        (location,) = header_values(
            response.headers, "location", limit=self.limits.header_chars, registry=target
        )[:1]
        try:
            url = response.url.join(location.strip())
            host = url.host
        except (httpx.InvalidURL, ValueError):
            raise BrokkrError(
                f"{target} redirected to a malformed URL {clean(location, 100)!r}"
            ) from None
        if url.scheme not in ("http", "https") or not host:
            raise BrokkrError(
                f"{target} redirected to {clean(location, 100)!r}, which is not an http(s) URL"
            )
        if url.scheme == "http" and response.url.scheme == "https":
            raise BrokkrError(
                f"{target} redirected from HTTPS to plain HTTP ({clean(str(url), 100)}); "
                "refusing to follow it"
            )
        if url.scheme == "http" and not is_loopback_host(host):
            raise BrokkrError(
                f"{target} redirected to plain HTTP off loopback ({clean(str(url), 100)}); "
                "refusing to follow it"
            )
        if response.status_code == 303 or (
            response.status_code in (301, 302) and method not in ("GET", "HEAD")
        ):
            return _Redirect(url, "GET" if method != "HEAD" else "HEAD", None)
        return _Redirect(url, method, content)


def _transport_problem(error: Exception) -> str:
    text = clean(str(error), 120)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def status_text(reply: Reply) -> str:
    """``HTTP 404 Not Found (manifest unknown)``: the status and the registry's own words."""
    text = f"HTTP {reply.status}"
    if reply.reason:
        text += f" {reply.reason}"
    detail = registry_errors(reply)
    return f"{text} ({detail})" if detail else text


MAX_ERRORS_QUOTED = 3
"""How many of a registry's ``errors[]`` a message quotes."""


def registry_errors(reply: Reply) -> str:
    """The registry's own error text (``errors[].message``), cleaned and bounded, or ''."""
    errors = _error_list(reply)
    messages = []
    for error in errors:
        text = clean(error.get("message") or error.get("code") or "", 150)
        if text:
            messages.append(text)
    if len(messages) > MAX_ERRORS_QUOTED:
        extra = len(messages) - MAX_ERRORS_QUOTED
        messages = [*messages[:MAX_ERRORS_QUOTED], f"and {extra} more"]
    return "; ".join(messages)


def error_codes(reply: Reply) -> set[str]:
    """The ``errors[].code`` values of an error body."""
    return {str(e.get("code"))[:64] for e in _error_list(reply)}


def _error_list(reply: Reply) -> list[dict[str, object]]:
    try:
        document = json.loads(reply.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return []
    if not isinstance(document, dict) or not isinstance(document.get("errors"), list):
        return []
    return [e for e in document["errors"] if isinstance(e, dict)]
