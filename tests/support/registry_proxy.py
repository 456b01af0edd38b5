"""A loopback HTTP server in front of a real registry, for what the real one lacks.

``RegistryProxy`` forwards the distribution API to an upstream registry (the
Debian ``docker-registry`` of the fixtures) and adds, on request:

- Bearer token auth the way GHCR and Docker Hub do it: a 401 with
  ``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` and a ``/token``
  endpoint that checks Basic credentials and records what it was asked for;
- ``tags/list`` pagination with ``n``/``last`` and ``Link`` headers
  (distribution v2.8 ignores ``n``; GHCR and distribution v3 paginate);
- injected failures (``fail``), and a log of every request it saw;
- GHCR's shape (``ghcr_shaped``): Bearer tokens that a push with Basic
  credentials may skip (as GHCR accepts a PAT over Basic), no ``OCI-Subject``
  answer, and ``/referrers/`` answered ``303 See Other`` to a rate-limited page
  on another loopback origin (``RateLimitedPage``: ``429`` with HTML), as GHCR
  sends it to github.com.
- with ``tag_deletion``, ``DELETE /v2/<name>/manifests/<tag>`` removing that tag
  alone (distribution v3 and other registries can; v2.8 answers 400), done in
  the upstream's storage folder. Deletion by digest is forwarded.

No pytest dependency; use it as a context manager.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from tests.support.loopback import HttpThread, Loopback
from tests.support.registry_server import RegistryServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


@dataclass
class TokenRequest:
    """One call of the token endpoint: its query and who it authenticated as."""

    service: str | None
    scope: str | None
    username: str | None


@dataclass
class _Failure:
    match: str
    remaining: int
    status: int
    headers: dict[str, str]


@dataclass
class RegistryProxy(Loopback):
    """A proxy registry on 127.0.0.1 (``address``/``base_url`` like a RegistryServer)."""

    upstream: RegistryServer
    host: str = "127.0.0.1"
    bearer: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    service: str = "brokkr-proxy"
    referrers_redirect: str | None = None
    """Where ``/referrers/`` is sent with ``303 See Other`` (GHCR: a page of github.com)."""
    accept_basic: bool = False
    """With ``bearer``: a request with the right Basic credentials needs no token."""
    tag_deletion: bool = False
    token_requests: list[TokenRequest] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    issued_tokens: list[str] = field(default_factory=list, repr=False)
    _failures: list[_Failure] = field(default_factory=list)
    _http: HttpThread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)  # token -> scope

    # Life cycle -------------------------------------------------------------------

    def __enter__(self) -> Self:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_HEAD(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_PUT(self) -> None:
                proxy._handle(self)

            def do_DELETE(self) -> None:
                proxy._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = HttpThread(Handler)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._http is not None:
            self._http.stop()

    @property  # type: ignore[override]
    def port(self) -> int:
        assert self._http is not None, "use RegistryProxy as a context manager"
        return self._http.port

    # Test controls ------------------------------------------------------------------

    def fail(
        self,
        times: int,
        *,
        status: int = 500,
        match: str = "/v2/",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose path contains ``match`` with ``status``."""
        with self._lock:
            self._failures.append(_Failure(match, times, status, dict(headers or {})))

    def hits(self, match: str) -> int:
        """How many requests with ``match`` in their path reached the proxy."""
        with self._lock:
            return sum(1 for _, path, _ in self.requests if match in path)

    # Serving --------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        url = urlsplit(handler.path)
        path = url.path
        length = int(handler.headers.get("Content-Length") or 0)
        request_body = handler.rfile.read(length) if length else b""
        status, headers, body = self._respond(
            method, path, url.query, handler.headers, request_body
        )
        with self._lock:
            self.requests.append((method, handler.path, status))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(body)

    def _respond(
        self,
        method: str,
        path: str,
        query: str,
        request_headers: HTTPMessage,
        request_body: bytes = b"",
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and failure.match in path:
                    failure.remaining -= 1
                    return failure.status, list(failure.headers.items()), _errors("UNAVAILABLE")
        authorization = str(request_headers.get("Authorization") or "")
        if path == "/token":
            return self._token(query, authorization)
        if not path.startswith("/v2/"):
            return 404, [], b"not a registry path"
        if self.referrers_redirect is not None and "/referrers/" in path:
            return 303, [("Location", f"{self.referrers_redirect}{path}")], b""
        basic_ok = self.accept_basic and authorization == _basic(self.username, self.password)
        if self.bearer and not basic_ok:
            scope = _scope_of(path, write=method in ("POST", "PUT", "PATCH", "DELETE"))
            token = (
                authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
            )
            with self._lock:
                granted = self._tokens.get(token)
            if granted is None or (scope is not None and not _grants(granted, scope)):
                challenge = f'Bearer realm="{self.base_url}/token",service="{self.service}"'
                if scope is not None:
                    challenge += f',scope="{scope}"'
                return 401, [("WWW-Authenticate", challenge)], _errors("UNAUTHORIZED")
        if method == "DELETE" and self.tag_deletion and (deleted := self._delete_tag(path)):
            return deleted
        if method == "GET" and path.endswith("/tags/list") and "n" in parse_qs(query):
            return self._paginated_tags(path, parse_qs(query))
        forwarded = httpx.request(
            method,
            f"{self.upstream.base_url}{path}" + (f"?{query}" if query else ""),
            headers={
                k: v for k, v in request_headers.items() if k.lower() in ("accept", "content-type")
            },
            content=request_body or None,
            auth=self.upstream.auth,
            timeout=30.0,
        )
        headers = [
            (k, v.replace(self.upstream.base_url, self.base_url) if k.lower() == "location" else v)
            for k, v in forwarded.headers.items()
            if k.lower() not in _HOP_BY_HOP
            and not (self.referrers_redirect is not None and k.lower() == "oci-subject")
        ]
        return forwarded.status_code, headers, forwarded.content

    def _delete_tag(self, path: str) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """Remove a tag alone from the upstream's storage; None for a digest (forwarded)."""
        name, _, reference = path.removeprefix("/v2/").rpartition("/manifests/")
        if not name or ":" in reference or self.upstream.storage is None:
            return None
        tag = (
            self.upstream.storage
            / "docker/registry/v2/repositories"
            / name
            / "_manifests/tags"
            / reference
        )
        if not tag.is_dir():
            return 404, [], _errors("MANIFEST_UNKNOWN")
        shutil.rmtree(tag)
        return 202, [], b""

    def _token(self, query: str, authorization: str) -> tuple[int, list[tuple[str, str]], bytes]:
        params = parse_qs(query)
        username = None
        if authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            username, _, password = decoded.partition(":")
            if self.username is not None and (username, password) != (self.username, self.password):
                return 401, [], _errors("DENIED")
        elif self.username is not None:
            return 401, [], _errors("DENIED")
        scope = params.get("scope", [None])[0]
        with self._lock:
            self.token_requests.append(
                TokenRequest(params.get("service", [None])[0], scope, username)
            )
            token = secrets.token_urlsafe(24)
            self._tokens[token] = scope or ""
            self.issued_tokens.append(token)
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        return 200, [("Content-Type", "application/json")], body

    def _paginated_tags(
        self, path: str, params: dict[str, list[str]]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = httpx.get(f"{self.upstream.base_url}{path}", auth=self.upstream.auth, timeout=30)
        if upstream.status_code != 200:
            headers = [("Content-Type", "application/json")]
            return upstream.status_code, headers, upstream.content
        document = upstream.json()
        tags = sorted(document.get("tags") or [])
        last = params.get("last", [None])[0]
        if last is not None:
            tags = [t for t in tags if t > last]
        size = int(params["n"][0])
        page, more = tags[:size], len(tags) > size
        headers = [("Content-Type", "application/json")]
        if more:
            query = urlencode({"n": size, "last": page[-1]})
            headers.append(("Link", f'<{path}?{query}>; rel="next"'))
        body = json.dumps({"name": document["name"], "tags": page}).encode()
        return 200, headers, body


def _basic(username: str | None, password: str | None) -> str | None:
    if username is None or password is None:
        return None
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def ghcr_shaped(upstream: RegistryServer, page: RateLimitedPage, **login: str) -> RegistryProxy:
    """A proxy answering as GHCR does (see the module docstring); ``login``: username, password."""
    return RegistryProxy(
        upstream=upstream,
        bearer=True,
        accept_basic=True,
        service="ghcr-shaped",
        referrers_redirect=page.base_url,
        **login,
    )


@dataclass
class RateLimitedPage(Loopback):
    """Another origin on loopback that answers everything ``429`` with an HTML page.

    It records the path and the ``Authorization`` header (if any) of every request.
    """

    host: str = "127.0.0.1"
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    _http: HttpThread | None = None

    def __enter__(self) -> Self:
        page = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                page.seen.append((self.path, self.headers.get("Authorization")))
                body = b"<html><body>Too Many Requests</body></html>"
                self.send_response(429)
                self.send_header("Content-Type", "text/html")
                self.send_header("Retry-After", "60")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = HttpThread(Handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._http is not None:
            self._http.stop()

    @property  # type: ignore[override]
    def port(self) -> int:
        assert self._http is not None, "use RateLimitedPage as a context manager"
        return self._http.port


def _scope_of(path: str, *, write: bool = False) -> str | None:
    """``repository:<name>:pull`` (``pull,push`` to write) for a repository path, None for ``/v2/``.

    Like GHCR, a push token also reads: see ``_grants``.
    """
    rest = path[len("/v2/") :]
    for marker in ("/manifests/", "/blobs/", "/tags/list"):
        if marker in rest:
            return f"repository:{rest.split(marker, 1)[0]}:{'pull,push' if write else 'pull'}"
    return None


def _grants(granted: str, wanted: str) -> bool:
    """Whether a token for ``granted`` allows ``wanted`` (a push token also reads)."""
    return granted == wanted or granted == wanted.removesuffix(":pull") + ":pull,push"


def _errors(code: str) -> bytes:
    return json.dumps(
        {"errors": [{"code": code, "message": code.lower(), "detail": None}]}
    ).encode()
