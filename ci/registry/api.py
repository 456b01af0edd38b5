"""The base of the registry client: its HTTP session, its logins, and what one operation is.

``RegistryApi`` sends every request with authentication (``ci.registry.auth``)
through the bounded session (``ci.registry.transport``), and runs each public
operation under one deadline that raises only ``BrokkrError``. The operations
themselves are in ``manifests``, ``blobs``, ``listing`` and ``describe``;
``client.RegistryClient`` puts them together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Self

import httpx

from ci.errors import BrokkrError
from ci.registry.auth import Authenticator, Credentials
from ci.registry.deadline import deadline
from ci.registry.limits import BodyLimit, Limits
from ci.registry.replies import Reply, status_text
from ci.registry.text import cap_message, clean
from ci.registry.transport import HttpSession, same_origin
from ci.rules.reference import ImageReference, is_loopback_host


class RegistryApi:
    """Session, authentication and operations; see ``RegistryClient`` for the options."""

    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
        max_delay: float = 30.0,
        timeout: float = 30.0,
        limits: Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        anonymous_hint: str = "give a username and a password or token",
        connect_to: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        self._limits = limits or Limits()
        origins: dict[str, tuple[str, int]] = {}
        for registry, target in (connect_to or {}).items():
            ref = ImageReference(registry, "connect-to")
            if not is_loopback_host(ref.host):
                raise ValueError(f"only a loopback registry can be connected elsewhere: {registry}")
            origins[ref.base_url] = target
        self._session = HttpSession(
            attempts=attempts,
            backoff=backoff,
            max_delay=max_delay,
            timeout=timeout,
            limits=self._limits,
            transport=transport,
            connect_to=origins,
        )
        self._auth = Authenticator(self._session, credentials, anonymous_hint)

    async def __aenter__(self) -> Self:
        await self._session.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._session.__aexit__(exc_type, exc, traceback)

    @property
    def limits(self) -> Limits:
        """The bounds this client enforces."""
        return self._limits

    @contextlib.contextmanager
    def operation(self, registry: str, doing: str, seconds: float | None = None) -> Iterator[None]:
        """One operation: everything inside shares one deadline; registry faults are BrokkrErrors.

        Registry bytes are checked where they are parsed (each check raises a
        ``BrokkrError`` naming what was wrong); any other exception is a bug in
        this code and propagates as it is, never disguised as a registry fault.

        ``seconds`` defaults to ``limits.deadline``. Use it to put several calls
        (a publish's reads) under one deadline; each public method opens its
        own otherwise. ``doing`` (``"inspecting …"``) goes into the deadline
        error with ``registry`` and the time spent.
        """
        with deadline(seconds or self._limits.deadline, registry=registry, doing=doing):
            try:
                yield
            except BrokkrError as error:
                message = cap_message(str(error))
                if message == str(error):
                    raise
                raise BrokkrError(message) from None

    @staticmethod
    def _expect_ok(reply: Reply, ref: ImageReference, doing: str) -> None:
        if reply.status != 200:
            raise BrokkrError(f"{doing} for {ref} failed: {status_text(reply)}")

    # HTTP and auth -----------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        ref: ImageReference,
        limit: BodyLimit,
        what: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        push: bool = False,
        cross_origin_redirects: bool = True,
        retry: bool = True,
    ) -> Reply:
        """Send with auth and retries; returns any answer but 401/403 and transient ones.

        ``push`` asks for a token that may write (``pull,push``) instead of read.
        Credentials go only to the registry's own origin: a request for another
        origin carries none, and a 401 from another origin (a redirect's target,
        such as a CDN) is not answered with them. ``cross_origin_redirects`` and
        ``retry``: see ``HttpSession.send``.
        """
        scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        registry_origin = httpx.URL(ref.base_url)
        ours = same_origin(httpx.URL(url), registry_origin)
        challenges_answered = 0
        while True:
            request_headers = dict(headers or {})
            authorization = self._auth.authorization(ref.registry, scope) if ours else None
            if authorization is not None:
                request_headers["Authorization"] = authorization
            reply = await self._session.send(
                method,
                url,
                headers=request_headers,
                limit=limit,
                target=ref.registry,
                subject=str(ref),
                content=content,
                what=what,
                cross_origin_redirects=cross_origin_redirects,
                retry=retry,
            )
            if reply.status == 401 and not same_origin(reply.url, registry_origin):
                raise BrokkrError(
                    f"{ref.registry} sent {what} of {ref} on to {clean(reply.url.host, 100)}, "
                    f"which asks for a login ({status_text(reply)}); credentials go only to "
                    f"{ref.registry} and the token service it names, so none were sent"
                )
            if reply.status == 401:
                challenges_answered += 1
                if challenges_answered <= 2 and await self._auth.answer(
                    reply, ref, scope, sent=authorization is not None
                ):
                    continue
                raise self._auth.auth_error(ref, reply)
            if reply.status == 403:
                raise self._auth.denied_error(ref, reply)
            return reply
