"""A loopback stand-in for GitHub's packages API, backed by a real docker-registry.

It implements the endpoints `prune` uses, as docs.github.com/rest/packages
documents them (API version 2022-11-28):

- `GET /users/{owner}`: `{"login": …, "type": "Organization" | "User"}`;
- `GET /orgs|users/{owner}/packages/container/{package}/versions?per_page=&page=`:
  a JSON array of versions `{id, name, metadata: {package_type, container: {tags}}}`,
  newest first, `Link: <…page=N+1>; rel="next"` while more pages remain;
- `DELETE /orgs|users/{owner}/packages/container/{package}/versions/{id}`: 204,
  or 404 for an unknown id.

The versions are what the registry really stores: every manifest revision of
the repository `{namespace}/{owner}/{package}` in the registry's storage folder
(distribution's own layout), each with the tags whose current link names it; a
version's id is stable for its digest. Deleting a version deletes that manifest
from the registry (`DELETE /v2/<name>/manifests/<digest>`), as GHCR does. Every
request must carry `Authorization: Bearer <token>`; the requests are recorded.

`tamper` (a function over the version list of each listing) lets a test lie,
`link_to` sends the next-page link elsewhere, and `deletes_allowed` makes later
deletions fail.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from tests.support.loopback import HttpThread
from tests.support.registry_server import RegistryServer

Version = dict[str, object]


@dataclass
class GitHubStandIn:
    """The API's state: the registry behind it, who owns what, and what was asked."""

    registry: RegistryServer
    namespace: str
    token: str
    organizations: set[str] = field(default_factory=set)
    per_page_max: int = 100
    tamper: Callable[[list[Version]], list[Version]] | None = None
    link_to: str | None = None
    deletes_allowed: int | None = None
    """After this many deletions, answer 400 as GitHub does for a version it keeps."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def repository(self, owner: str, package: str) -> str:
        return "/".join(p for p in (self.namespace, owner, package) if p)

    def _id(self, digest: str) -> int:
        if digest not in self.ids:
            self.ids[digest] = 1000 + len(self.ids)
        return self.ids[digest]

    def versions(self, owner: str, package: str) -> list[Version]:
        """Every manifest revision the registry stores for the package, with its tags."""
        assert self.registry.storage is not None
        root = (
            self.registry.storage
            / "docker/registry/v2/repositories"
            / self.repository(owner, package)
            / "_manifests"
        )
        tags: dict[str, list[str]] = {}
        for link in sorted((root / "tags").glob("*/current/link")):
            tags.setdefault(link.read_text().strip(), []).append(link.parent.parent.name)
        found = []
        for link in sorted((root / "revisions/sha256").glob("*/link")):
            digest = link.read_text().strip()
            found.append(
                {
                    "id": self._id(digest),
                    "name": digest,
                    "url": f"{self.url}/versions/{self._id(digest)}",
                    "metadata": {
                        "package_type": "container",
                        "container": {"tags": sorted(tags.get(digest, []))},
                    },
                }
            )
        found.sort(key=lambda v: -int(v["id"]))  # type: ignore[call-overload]
        return self.tamper(found) if self.tamper else found

    def delete(self, owner: str, package: str, version_id: int) -> bool:
        for version in self.versions(owner, package):
            if version["id"] == version_id:
                reply = httpx.delete(
                    f"{self.registry.base_url}/v2/{self.repository(owner, package)}"
                    f"/manifests/{version['name']}"
                )
                return reply.status_code == 202
        return False


def _handler(api: GitHubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: object = None, headers: dict[str, str] | None = None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            api.requests.append((method, self.path))
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                self._answer(401, {"message": "Requires authentication"})
                return
            split = urlsplit(self.path)
            parts = [unquote(p) for p in split.path.strip("/").split("/")]
            query = parse_qs(split.query)
            if method == "GET" and len(parts) == 2 and parts[0] == "users":
                kind = "Organization" if parts[1] in api.organizations else "User"
                self._answer(200, {"login": parts[1], "type": kind})
                return
            if len(parts) < 6 or parts[2:4] != ["packages", "container"] or parts[5] != "versions":
                self._answer(404, {"message": "Not Found"})
                return
            segment, owner, package = parts[0], parts[1], parts[4]
            expected = "orgs" if owner in api.organizations else "users"
            if segment != expected:
                self._answer(404, {"message": "Not Found"})
                return
            if method == "DELETE" and len(parts) == 7:
                done = sum(1 for m, _ in api.requests if m == "DELETE") - 1
                if api.deletes_allowed is not None and done >= api.deletes_allowed:
                    self._answer(400, {"message": "You cannot delete the last version."})
                    return
                deleted = api.delete(owner, package, int(parts[6]))
                self._answer(204 if deleted else 404, None if deleted else {"message": "x"})
                return
            if method != "GET" or len(parts) != 6:
                self._answer(404, {"message": "Not Found"})
                return
            per_page = min(int(query.get("per_page", ["30"])[0]), api.per_page_max)
            page = int(query.get("page", ["1"])[0])
            versions = api.versions(owner, package)
            if (
                not versions
                and not (
                    api.registry.storage
                    / "docker/registry/v2/repositories"
                    / api.repository(owner, package)
                ).exists()
            ):
                self._answer(404, {"message": "Package not found."})
                return
            chunk = versions[(page - 1) * per_page : page * per_page]
            headers = {}
            if page * per_page < len(versions):
                base = api.link_to or f"{api.url}{split.path}"
                headers["Link"] = f'<{base}?per_page={per_page}&page={page + 1}>; rel="next"'
            self._answer(200, chunk, headers)

        def do_GET(self) -> None:
            self._route("GET")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler


@contextlib.contextmanager
def github_api(registry: RegistryServer, namespace: str, token: str) -> Iterator[GitHubStandIn]:
    """Serve the stand-in on a free loopback port until the block ends."""
    api = GitHubStandIn(registry, namespace, token)
    http = HttpThread(_handler(api))
    api.url = f"http://127.0.0.1:{http.port}"
    try:
        yield api
    finally:
        http.stop()


def storage_revisions(registry: RegistryServer, repository: str) -> set[str]:
    """The manifest digests the registry stores for `repository` (from its storage folder)."""
    assert registry.storage is not None
    root = Path(registry.storage) / "docker/registry/v2/repositories" / repository / "_manifests"
    return {p.read_text().strip() for p in (root / "revisions/sha256").glob("*/link")}
