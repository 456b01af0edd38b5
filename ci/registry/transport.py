"""HTTP for the registry client: one bounded ``Reply`` per request, or a ``BrokkrError``.

- **Redirects** are followed by hand: at most ``MAX_REDIRECTS``; never from
  HTTPS to plain HTTP, never to plain HTTP off loopback; the ``Authorization``
  header only goes to the origin it was meant for.
- **Retries**: see ``ci.registry.retry``; **bodies**: ``ci.registry.bodies``;
  **time**: ``ci.registry.deadline``.
- ``ConnectTo`` moves the connections of some origins elsewhere
  (``--registry-service``) and changes nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpx

from ci.errors import BrokkrError
from ci.registry.bodies import read_body
from ci.registry.deadline import bounded
from ci.registry.limits import BodyLimit, Limits
from ci.registry.replies import Reply, status_text
from ci.registry.retry import RETRYABLE_STATUSES, retry_delay
from ci.registry.text import clean, header_values
from ci.rules.reference import is_loopback_host

logger = logging.getLogger("ci.registry")

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "brokkr-ci (OCI distribution client)"


class _Transient(Exception):
    """A failure worth another attempt; its text is safe to show."""


@dataclass(frozen=True)
class _Redirect:
    url: httpx.URL
    method: str
    content: bytes | None
    answer: Reply
    """The redirect itself (empty body), returned when it is not to be followed."""


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
        cross_origin_redirects: bool = True,
        retry: bool = True,
    ) -> Reply:
        """Send one request; any answer but a transient failure comes back as a ``Reply``.

        ``limit`` bounds a 2xx body (over it is an error); other bodies are cut
        at ``small_body_bytes``. ``target`` (a registry or token service) and
        ``subject`` (the image) name the request in errors. With
        ``cross_origin_redirects=False`` a redirect to another origin is not
        followed: it comes back as the answer. With ``retry=False`` the request
        is tried once and a retryable status comes back as the answer too.
        """
        if self._client is None:
            raise RuntimeError("the registry client is used outside 'async with'")
        attempts = self._attempts if retry else 1
        failures = 0
        while True:
            retry_after = None
            try:
                reply = await bounded(
                    self._follow(
                        method, url, headers, content, limit, target, what, cross_origin_redirects
                    )
                )
            except _Transient as error:
                problem = str(error)
            else:
                if reply.status not in RETRYABLE_STATUSES or not retry:
                    return reply
                problem = status_text(reply)
                retry_after = reply.headers.get("retry-after")
            failures += 1
            if failures >= attempts:
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
            await bounded(asyncio.sleep(delay))

    async def _follow(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        limit: BodyLimit,
        target: str,
        what: str,
        cross_origin_redirects: bool = True,
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
            if not cross_origin_redirects and not same_origin(answer.url, first):
                return answer.answer
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
        answered = False  # whether the answer's status line and headers were read
        try:
            async with self._client.stream(method, url, headers=headers, content=content) as resp:
                answered = True
                if resp.status_code in REDIRECT_STATUSES and "location" in resp.headers:
                    return self._redirect(resp, method, content, target)
                # A HEAD answer has no body; its Content-Length is the GET's.
                body = b""
                if method != "HEAD":
                    body = await read_body(
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
            if not answered:
                # Nothing of an answer was read: the connection ended (or was garbled)
                # before one. Sending again is safe, like after a network error.
                raise _Transient(_transport_problem(error)) from None
            # An answer had begun: its framing is broken (or cut). Not retried.
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
        answer = Reply(
            response.status_code,
            clean(response.reason_phrase, 60),
            response.headers,
            b"",
            response.url,
        )
        if response.status_code == 303 or (
            response.status_code in (301, 302) and method not in ("GET", "HEAD")
        ):
            return _Redirect(url, "GET" if method != "HEAD" else "HEAD", None, answer)
        return _Redirect(url, method, content, answer)


def _transport_problem(error: Exception) -> str:
    text = clean(str(error), 120)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
