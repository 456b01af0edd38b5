"""Registry authentication: credentials, ``WWW-Authenticate`` challenges, Bearer tokens.

Docker's token protocol: a registry answers 401 with
``WWW-Authenticate: Bearer realm="…",service="…"``; the client asks the realm
for a token (with Basic credentials when it has a login) and sends it as
``Authorization: Bearer …``. A registry that answers ``Basic`` gets the
credentials directly.

Trust rules:

- credentials are sent only over HTTPS, or plain HTTP to loopback
  (``127.0.0.0/8``, ``::1``, ``localhost``), whether to the registry or to the
  token realm it names;
- the scope asked for is always ours (``repository:<name>:pull``, or
  ``pull,push`` to write), never what a challenge suggests;
- a token must be 1 to ``MAX_TOKEN_CHARS`` visible ASCII characters; a token
  service that sends anything else is refused, and its text is never shown;
- passwords and tokens never appear in a message, a log record or a repr.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field

import httpx

from ci.errors import BrokkrError
from ci.registry.limits import BodyLimit
from ci.registry.replies import Reply, status_text
from ci.registry.text import clean, header_values
from ci.registry.transport import HttpSession
from ci.rules.reference import ImageReference, is_loopback_host

__all__ = ["Authenticator", "Credentials", "parse_challenges"]

TOKEN_LIFETIME_DEFAULT = 60
"""Seconds a token lives when the token service does not say (Docker's default)."""
TOKEN_LIFETIME_MAX = 24 * 3600
"""A longer ``expires_in`` is taken as this."""


@dataclass(frozen=True)
class Credentials:
    """A registry login. The password (or token) never shows in repr or str."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise BrokkrError("registry credentials need both a username and a password")

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<redacted>)"

    __str__ = __repr__


@dataclass
class _Token:
    value: str = field(repr=False)
    expires_at: float


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_challenges(values: list[str]) -> dict[str, dict[str, str]]:
    """``WWW-Authenticate`` challenges by lowercase scheme, with their parameters.

    ``Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="…"`` gives
    ``{"bearer": {"realm": …, "service": …, "scope": …}}``. One pass over the
    text (linear time, whatever it holds); the first value of a parameter wins.
    Callers bound the length (``header_values``).
    """
    challenges: dict[str, dict[str, str]] = {}
    for text in values:
        current: dict[str, str] | None = None
        i, n = 0, len(text)
        while i < n:
            if text[i] in " \t,":
                i += 1
                continue
            start = i
            while i < n and (text[i] in _TCHAR or text[i] == "/"):
                i += 1
            word = text[start:i]
            if not word:
                i += 1  # a character that starts nothing: skip it
                continue
            j = i
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == "=":
                i = j + 1
                while i < n and text[i] in " \t":
                    i += 1
                value, i = _param_value(text, i)
                if current is not None:
                    current.setdefault(word.lower(), value)
            else:
                current = challenges.setdefault(word.lower(), {})
                i = j
    return challenges


def _param_value(text: str, i: int) -> tuple[str, int]:
    """A quoted-string (with ``\\`` escapes) or a bare token starting at ``i``."""
    n = len(text)
    if i < n and text[i] == '"':
        i += 1
        chars = []
        while i < n and text[i] != '"':
            if text[i] == "\\" and i + 1 < n:
                i += 1
            chars.append(text[i])
            i += 1
        return "".join(chars), i + 1
    start = i
    while i < n and text[i] not in " \t,":
        i += 1
    return text[start:i], i


def basic_authorization(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


class Authenticator:
    """Answers a registry's 401s: caches tokens per (registry, scope), remembers Basic."""

    def __init__(
        self, session: HttpSession, credentials: Credentials | None, anonymous_hint: str
    ) -> None:
        self._session = session
        self.credentials = credentials
        self._anonymous_hint = anonymous_hint
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._basic_registries: set[str] = set()

    def authorization(self, registry: str, scope: str) -> str | None:
        """The ``Authorization`` header to send, if any."""
        token = self._tokens.get((registry, scope))
        if token is not None and token.expires_at > time.monotonic():
            return f"Bearer {token.value}"
        if registry in self._basic_registries and self.credentials is not None:
            return basic_authorization(self.credentials)
        return None

    async def answer(self, reply: Reply, ref: ImageReference, scope: str, *, sent: bool) -> bool:
        """React to a 401; True when the request is worth sending again."""
        limit = self._session.limits.header_chars
        challenges = parse_challenges(
            header_values(reply.headers, "www-authenticate", limit=limit, registry=ref.registry)
        )
        if "bearer" in challenges:
            params = challenges["bearer"]
            key = (ref.registry, scope)
            if sent and key in self._tokens and self.credentials is None:
                return False  # an anonymous token that was refused stays refused
            self._tokens.pop(key, None)
            realm = params.get("realm")
            if not realm:
                raise BrokkrError(f"{ref.registry} asked for a Bearer token but named no realm")
            self._tokens[key] = await self._fetch_token(
                realm, service=params.get("service"), scope=scope, ref=ref
            )
            return True
        if "basic" in challenges:
            if self.credentials is None or ref.registry in self._basic_registries:
                return False
            # ref.scheme is plain HTTP only for loopback registries.
            self._basic_registries.add(ref.registry)
            return True
        return False

    async def _fetch_token(
        self, realm: str, *, service: str | None, scope: str, ref: ImageReference
    ) -> _Token:
        unusable = BrokkrError(
            f"{ref.registry} named an unusable token realm {clean(realm, 100)!r}"
        )
        try:
            url = httpx.URL(realm)
            host = url.host
        except (httpx.InvalidURL, ValueError):
            raise unusable from None
        if url.scheme not in ("http", "https") or not host:
            raise unusable
        service_name = clean(url.netloc.decode("ascii", "replace"), 100)
        if url.scheme == "http" and self.credentials is not None and not is_loopback_host(host):
            raise BrokkrError(
                f"{ref.registry} asked for credentials over plain HTTP "
                f"({clean(str(url.copy_with(query=None)), 100)}); refusing to send them"
            )
        params = [("scope", scope)]
        if service:
            params.insert(0, ("service", service))
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = basic_authorization(self.credentials)
        limits = self._session.limits
        reply = await self._session.send(
            "GET",
            str(url.copy_merge_params(params)),
            headers=headers,
            limit=BodyLimit.named(limits.small_body_bytes, "token responses"),
            target=service_name,
            subject=str(ref),
            what="a token",
        )
        if reply.status in (401, 403):
            raise self.auth_error(ref, reply, token_service=service_name)
        if reply.status != 200:
            raise BrokkrError(
                f"the token service {service_name} failed for {ref}: {status_text(reply)}"
            )
        try:
            document = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            document = None
        if not isinstance(document, dict):
            raise BrokkrError(f"the token service {service_name} sent no token for {ref}")
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise BrokkrError(f"the token service {service_name} sent no token for {ref}")
        visible = token.isascii() and token.isprintable() and " " not in token
        if len(token) > limits.token_chars or not visible:
            raise BrokkrError(
                f"the token service {service_name} sent an unusable token for {ref} (not 1 to "
                f"{limits.token_chars} visible ASCII characters); refusing it"
            )
        expires_in = document.get("expires_in")
        lifetime: float = TOKEN_LIFETIME_DEFAULT
        number = isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
        if number and expires_in > 0:
            lifetime = min(float(expires_in), TOKEN_LIFETIME_MAX)
        # Renew a little early so a token does not expire between check and use.
        return _Token(token, time.monotonic() + max(lifetime - 10, lifetime / 2))

    def auth_error(
        self, ref: ImageReference, reply: Reply, *, token_service: str | None = None
    ) -> BrokkrError:
        where = f" (token service {token_service})" if token_service else ""
        if self.credentials is None:
            return BrokkrError(
                f"authentication required: {ref.registry} refused anonymous access to {ref}"
                f"{where}: {status_text(reply)}; {self._anonymous_hint}"
            )
        return BrokkrError(
            f"authentication refused: {ref.registry} did not accept the credentials of user "
            f"{self.credentials.username!r} for {ref}{where}: {status_text(reply)}"
        )

    def denied_error(self, ref: ImageReference, reply: Reply) -> BrokkrError:
        if self.credentials is None:
            return BrokkrError(
                f"access denied to {ref} for anonymous: {status_text(reply)}; "
                f"{self._anonymous_hint}"
            )
        return BrokkrError(
            f"access denied to {ref} for user {self.credentials.username!r}: "
            f"{status_text(reply)}; check the account's permissions on the repository"
        )
