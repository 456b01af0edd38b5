"""GitHub's REST API for packages: list a container package's versions, delete one.

GHCR implements no manifest `DELETE`; a container image's manifests are the
*versions* of its package, and deleting one goes through the API
(docs.github.com/rest/packages/packages, API version 2022-11-28):

- `GET /users/{owner}` says whether the owner is an organization or a user;
- `GET /orgs/{org}/packages/container/{package}/versions` (or
  `/users/{user}/…`), `per_page=100`, pages followed through `Link: <…>;
  rel="next"`: each version has `id`, `name` (the manifest digest) and
  `metadata.container.tags`;
- `DELETE /orgs/{org}/packages/container/{package}/versions/{id}` (or
  `/users/{user}/…`): 204. The token needs the `delete:packages` scope (a
  workflow's `GITHUB_TOKEN` with `packages: write`, on packages its
  repository administers). GitHub refuses to delete the last version of a
  package and versions of public packages with over 5,000 downloads.

Bounded like the registry client (it uses its `HttpSession` and `Limits`, from
`transport` and `limits`):
one deadline per operation, every page at most `limits.manifest_bytes`, at
most `limits.tag_pages` pages and `limits.tags` versions; a next page only on
the API's own origin and under its base path; the token only ever goes to the
API's origin (redirects elsewhere drop it). The base URL must be HTTPS, or
plain HTTP to loopback (tests). A listing that repeats a version id or a
digest, or whose entries are malformed, is refused as a whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from ci.errors import BrokkrError
from ci.registry.deadline import deadline
from ci.registry.limits import BodyLimit, Limits
from ci.registry.listing import next_link
from ci.registry.replies import status_text
from ci.registry.text import clean, header_values
from ci.registry.transport import HttpSession, same_origin
from ci.rules.reference import is_loopback_host, validate_digest
from ci.rules.tags import OCI_TAG

__all__ = ["DEFAULT_API", "GitHubPackages", "PackageVersion", "validate_api_url"]

DEFAULT_API = "https://api.github.com"
API_VERSION = "2022-11-28"
PER_PAGE = 100
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")


@dataclass(frozen=True)
class PackageVersion:
    """One version of a container package: its id, its manifest digest, its tags."""

    id: int
    digest: str
    tags: tuple[str, ...]


def validate_api_url(url: str) -> str:
    """The API base URL without a trailing slash: HTTPS, or plain HTTP to loopback only."""
    text = url.strip().rstrip("/")
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError):
        raise BrokkrError(f"--github-api {clean(url)!r} is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or parsed.fragment:
        raise BrokkrError(f"--github-api must be an http(s) base URL, got {clean(url)!r}")
    if parsed.scheme == "http" and not is_loopback_host(parsed.host):
        raise BrokkrError(
            f"--github-api {clean(url)!r} is plain HTTP off loopback; the token goes there: "
            "use HTTPS"
        )
    if parsed.userinfo:
        raise BrokkrError("--github-api must not hold credentials")
    return text


class GitHubPackages:
    """The versions of one container package (`owner`/`package`) through GitHub's API."""

    def __init__(
        self, session: HttpSession, *, api: str, token: str, owner: str, package: str
    ) -> None:
        if not _OWNER.fullmatch(owner):
            raise BrokkrError(f"{owner!r} is not a GitHub user or organization name")
        if not token:
            raise BrokkrError(
                "deleting GHCR images goes through GitHub's API and needs a token: pass "
                "--password (a token that may delete packages)"
            )
        self._session = session
        self._api = validate_api_url(api)
        self._token = token
        self.owner = owner
        self.package = package
        self._base: str | None = None

    @property
    def limits(self) -> Limits:
        return self._session.limits

    def _headers(self) -> dict[str, str]:
        return {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "Authorization": f"Bearer {self._token}",
        }

    async def _send(self, method: str, url: str, what: str) -> tuple[int, bytes, httpx.Headers]:
        reply = await self._session.send(
            method,
            url,
            headers=self._headers(),
            limit=BodyLimit.named(self.limits.manifest_bytes, "API pages"),
            target=httpx.URL(self._api).host,
            subject=f"package {self.owner}/{self.package}",
            what=what,
            cross_origin_redirects=False,  # the API answers itself; elsewhere is an error
        )
        if reply.status in (401, 403):
            raise BrokkrError(
                f"GitHub's API refused {what} ({status_text(reply)}): the token needs "
                "permission to read and delete packages (delete:packages; in a workflow, "
                "`permissions: packages: write` on a package the repository administers)"
            )
        return reply.status, reply.body, reply.headers

    async def _package_url(self) -> str:
        """`{api}/orgs|users/{owner}/packages/container/{package}` (owner kind asked once)."""
        if self._base is None:
            status, body, _ = await self._send(
                "GET", f"{self._api}/users/{self.owner}", f"the owner {self.owner}"
            )
            if status != 200:
                raise BrokkrError(f"GitHub's API does not know the owner {self.owner} ({status})")
            kind = _json(body, f"the owner {self.owner}").get("type")
            segment = "orgs" if kind == "Organization" else "users"
            name = quote(self.package, safe="")
            self._base = f"{self._api}/{segment}/{self.owner}/packages/container/{name}"
        return self._base

    async def versions(self) -> list[PackageVersion]:
        """Every version of the package (all pages), each digest and id once."""
        with deadline(self.limits.deadline, registry=self._api, doing=self._doing("listing")):
            url = f"{await self._package_url()}/versions?per_page={PER_PAGE}"
            seen_pages: set[str] = set()
            found: list[PackageVersion] = []
            ids: set[int] = set()
            digests: set[str] = set()
            while True:
                if url in seen_pages:
                    raise BrokkrError(f"{self._what()} does not end (a page repeats)")
                if len(seen_pages) >= self.limits.tag_pages:
                    raise BrokkrError(f"{self._what()} has more than {self.limits.tag_pages} pages")
                seen_pages.add(url)
                status, body, headers = await self._send("GET", url, self._what())
                if status == 404:
                    raise BrokkrError(
                        f"GitHub's API has no container package {self.owner}/{self.package} "
                        "(or the token may not see it)"
                    )
                if status != 200:
                    raise BrokkrError(f"{self._what()} failed: HTTP {status}")
                for version in _page(body, self._what()):
                    if version.id in ids or version.digest in digests:
                        raise BrokkrError(
                            f"{self._what()} lists version {version.id} ({version.digest}) "
                            "twice; refusing a listing that contradicts itself"
                        )
                    ids.add(version.id)
                    digests.add(version.digest)
                    found.append(version)
                    if len(found) > self.limits.tags:
                        raise BrokkrError(
                            f"{self._what()} has more than {self.limits.tags} versions"
                        )
                following = self._next(headers, url)
                if following is None:
                    return found
                url = following

    async def delete(self, version: PackageVersion) -> bool:
        """Delete one version; True when deleted, False when already gone (404)."""
        with deadline(self.limits.deadline, registry=self._api, doing=self._doing("deleting")):
            url = f"{await self._package_url()}/versions/{version.id}"
            what = f"the deletion of {self.owner}/{self.package} version {version.id}"
            status, _, _ = await self._send("DELETE", url, what)
        if status in (200, 204):
            return True
        if status == 404:
            return False
        raise BrokkrError(
            f"GitHub's API refused {what} ({version.digest}): HTTP {status}; it was not removed"
        )

    def _next(self, headers: httpx.Headers, current: str) -> str | None:
        link = next_link(
            header_values(headers, "link", limit=self.limits.header_chars, registry=self._api)
        )
        if link is None:
            return None
        try:
            target = httpx.URL(current).join(link.strip())
        except (httpx.InvalidURL, ValueError):
            raise BrokkrError(f"{self._what()} links to a malformed URL") from None
        base = httpx.URL(self._api)
        if not same_origin(target, base) or not target.path.startswith(base.path.rstrip("/")):
            raise BrokkrError(
                f"{self._what()} links to another server ({clean(str(target), 120)}); "
                "refusing to follow it (the token goes with the request)"
            )
        return str(target)

    def _what(self) -> str:
        return f"the version listing of {self.owner}/{self.package}"

    def _doing(self, verb: str) -> str:
        return f"{verb} the versions of {self.owner}/{self.package}"


def _json(body: bytes, what: str) -> dict[str, object]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BrokkrError(f"GitHub's API sent {what} that is not JSON") from None
    if not isinstance(document, dict):
        raise BrokkrError(f"GitHub's API sent {what} that is not a JSON object")
    return document


def _page(body: bytes, what: str) -> list[PackageVersion]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BrokkrError(f"{what}: a page is not JSON") from None
    if not isinstance(document, list):
        raise BrokkrError(f"{what}: a page is not a JSON array")
    versions = []
    for entry in document:
        try:
            version_id = entry["id"]
            name = entry["name"]
            tags = entry["metadata"]["container"]["tags"]
        except (KeyError, TypeError):
            raise BrokkrError(
                f"{what}: an entry lacks id, name or metadata.container.tags"
            ) from None
        if not isinstance(version_id, int) or isinstance(version_id, bool) or version_id < 0:
            raise BrokkrError(f"{what}: a version id is not a number")
        if not isinstance(name, str) or not isinstance(tags, list):
            raise BrokkrError(f"{what}: version {version_id} is malformed")
        try:
            digest = validate_digest(name)
        except BrokkrError:
            raise BrokkrError(
                f"{what}: version {version_id} is named {clean(name, 80)!r}, not a digest"
            ) from None
        if not all(isinstance(t, str) and OCI_TAG.fullmatch(t) for t in tags):
            raise BrokkrError(f"{what}: version {version_id} has an invalid tag")
        versions.append(PackageVersion(version_id, digest, tuple(tags)))
    return versions
