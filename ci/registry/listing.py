"""Listings that come in pages: a repository's tags and the referrers API.

The next page is the ``Link: <…>; rel="next"`` of the one just read, on the
same server only; a page seen before, or one past the page limit, is an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from ci.errors import BrokkrError
from ci.registry.api import RegistryApi
from ci.registry.documents import parse_json
from ci.registry.limits import BodyLimit
from ci.registry.manifests import OCI_INDEX
from ci.registry.replies import Reply
from ci.registry.text import clean, header_values
from ci.registry.transport import same_origin
from ci.rules.reference import ImageReference, validate_digest
from ci.rules.tags import OCI_TAG

MAX_REFERRERS = 10_000
"""Most descriptors one referrers list (all its pages) or fallback index may hold."""


def next_link(values: list[str]) -> str | None:
    """The target of a ``Link: <…>; rel="next"`` header, if any (one linear pass).

    Callers bound the length (``header_values``).
    """
    for value in values:
        position = 0
        while (start := value.find("<", position)) >= 0:
            end = value.find(">", start + 1)
            if end < 0:
                break
            following = value.find("<", end + 1)
            params = value[end + 1 : following if following >= 0 else len(value)]
            if _is_next(params):
                return value[start + 1 : end]
            if following < 0:
                break
            position = following
    return None


def _is_next(params: str) -> bool:
    for param in params.split(";"):
        name, sep, rel = param.partition("=")
        values = rel.strip().strip(",").strip().strip('"').lower().split()
        if sep and name.strip().lower() == "rel" and "next" in values:
            return True
    return False


def _from_the_api(reply: Reply, ref: ImageReference) -> bool:
    """Whether ``reply`` can be the referrers API: a same-origin 200 of an OCI image index."""
    return (
        reply.status == 200
        and same_origin(reply.url, httpx.URL(ref.base_url))
        and reply.headers.get("content-type", "").split(";")[0].strip().lower() == OCI_INDEX
    )


class Listings(RegistryApi):
    """Tag listings and referrers listings."""

    async def get_referrers(self, ref: ImageReference, digest: str) -> list[dict[str, Any]] | None:
        """The referrers API (OCI 1.1): descriptors of the manifests whose subject is ``digest``.

        None when the registry offers no referrers API; callers then use the
        referrers tag schema (``ci.registry.referrers``). As the distribution
        specification tells clients, only a ``200`` from the registry's own
        origin whose body is an OCI image index (``Content-Type`` and
        ``mediaType`` both ``application/vnd.oci.image.index.v1+json``, a
        ``manifests`` list) counts as the API; any other first answer means "no
        API": a 404 (distribution 2.8), a 400 or 405 (proxies that do not know
        the endpoint), a ``{}`` from a proxy answering every path, a 5xx or 429,
        and a redirect to another origin, which is never followed (GHCR answers
        ``303 See Other`` to a rate-limited page of github.com). That first
        request is sent once, not retried. A 401 or 403 is still an error (the
        tag would be refused too). Every page is read (``Link: <…>;
        rel="next"``, same server only): at most ``limits.tag_pages`` pages and
        ``MAX_REFERRERS`` descriptors in all, each page at most
        ``limits.manifest_bytes``.
        """
        validate_digest(digest)
        name = ref.name
        what = f"the referrers list of {digest} in {name}"
        url = f"{ref.base_url}/v2/{ref.repository}/referrers/{digest}"
        referrers: list[dict[str, Any]] = []
        pages = self._pages(
            url,
            ref=ref,
            what=what,
            pages_name="listing pages",
            body_name="manifests and indexes",
            request_what=f"the referrers of {digest}",
            headers={"Accept": OCI_INDEX},
            first_try_only=True,
        )
        with self.operation(ref.registry, f"listing the referrers of {digest} in {name}"):
            async with contextlib.aclosing(pages):
                first = True
                async for reply in pages:
                    if first and not _from_the_api(reply, ref):
                        return None
                    self._expect_ok(reply, ref, f"listing the referrers of {digest}")
                    try:
                        document = parse_json(reply.body, what, max_values=self._limits.json_values)
                    except BrokkrError:
                        if first:
                            return None
                        raise
                    page = document.get("manifests")
                    if first and (
                        document.get("mediaType") != OCI_INDEX or not isinstance(page, list)
                    ):
                        return None  # a 200 that is not an index ({} from a proxy)
                    first = False
                    if not isinstance(page, list) or not all(isinstance(m, dict) for m in page):
                        raise BrokkrError(f"{what} is malformed")
                    if len(referrers) + len(page) > MAX_REFERRERS:
                        raise BrokkrError(
                            f"{what} has more than {MAX_REFERRERS} entries; refusing it"
                        )
                    referrers.extend(page)
        return referrers

    async def list_tags(
        self, repository: ImageReference, *, page_size: int | None = None, missing_ok: bool = False
    ) -> list[str]:
        """Every tag of ``repository`` (its tag and digest are ignored), in registry order.

        Follows ``Link: <…>; rel="next"`` pagination on the same server;
        ``page_size`` asks for ``n`` tags per page. At most ``limits.tags`` tags
        over ``limits.tag_pages`` pages, each page at most
        ``limits.manifest_bytes``; every tag must be a valid OCI tag. An unknown
        repository is an error, or ``[]`` with ``missing_ok=True``.
        """
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be at least 1")
        with self.operation(repository.registry, f"listing the tags of {repository.name}"):
            return await self._list_tags(repository, page_size, missing_ok=missing_ok)

    async def _list_tags(
        self, repository: ImageReference, page_size: int | None, *, missing_ok: bool
    ) -> list[str]:
        limits = self._limits
        name = repository.name
        url = f"{repository.base_url}/v2/{repository.repository}/tags/list"
        if page_size is not None:
            url += f"?n={page_size}"
        tags: list[str] = []
        what = f"the tag list of {name}"
        pages = self._pages(
            url, ref=repository, what=what, pages_name="tag list pages", body_name="tag list pages"
        )
        async with contextlib.aclosing(pages):
            async for reply in pages:
                if reply.status == 404:
                    if missing_ok:
                        return []
                    raise BrokkrError(f"not found: {name} (no such repository)")
                self._expect_ok(reply, repository, "listing tags")
                document = parse_json(reply.body, what, max_values=self._limits.json_values)
                page = document.get("tags") or []
                if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                    raise BrokkrError(f"the registry sent a malformed tag list for {name}")
                for tag in page:
                    if not OCI_TAG.fullmatch(tag):
                        raise BrokkrError(f"{what} holds an invalid tag {clean(tag, 80)!r}")
                if len(tags) + len(page) > limits.tags:
                    raise BrokkrError(
                        f"{name} has more than {limits.tags} tags (the limit for one tag listing)"
                    )
                tags.extend(page)
        return tags

    async def _pages(
        self,
        url: str,
        *,
        ref: ImageReference,
        what: str,
        pages_name: str,
        body_name: str,
        request_what: str | None = None,
        headers: Mapping[str, str] | None = None,
        first_try_only: bool = False,
    ) -> AsyncIterator[Reply]:
        """Every page of a listing from ``url`` on, as the caller takes them (any status).

        The next page is the ``Link: <…>; rel="next"`` of the one just taken, on
        the same server only (``_next_page``); a page seen before is an error,
        and so is a page past ``limits.tag_pages`` (``pages_name`` names that
        limit). Each page is at most ``limits.manifest_bytes`` (``body_name``
        names that limit). ``what`` names the listing in errors, ``request_what``
        (default ``what``) the page in body errors. With ``first_try_only`` the
        first page is asked for once, and a redirect to another origin comes
        back as its answer instead of being followed.
        """
        seen: set[str] = set()
        while True:
            if url in seen:
                raise BrokkrError(f"{what} does not end (page {clean(url, 120)})")
            if len(seen) >= self._limits.tag_pages:
                raise BrokkrError(
                    f"{what} has more than {self._limits.tag_pages} pages (the limit for "
                    f"{pages_name})"
                )
            seen.add(url)
            reply = await self._request(
                "GET",
                url,
                ref=ref,
                limit=BodyLimit.named(self._limits.manifest_bytes, body_name),
                what=request_what or what,
                headers=headers,
                cross_origin_redirects=not (first_try_only and len(seen) == 1),
                retry=not (first_try_only and len(seen) == 1),
            )
            yield reply
            following = self._next_page(reply, ref, what)
            if following is None:
                return
            url = following

    def _next_page(self, reply: Reply, repository: ImageReference, what: str) -> str | None:
        """The next page of a listing (``Link: <…>; rel="next"``), on the same server only."""
        links = header_values(
            reply.headers, "link", limit=self._limits.header_chars, registry=repository.registry
        )
        link = next_link(links)
        if link is None:
            return None
        try:
            target = reply.url.join(link.strip())
            same = same_origin(target, httpx.URL(repository.base_url))
        except (httpx.InvalidURL, ValueError):
            raise BrokkrError(f"{what} links to a malformed URL {clean(link, 100)!r}") from None
        if not same:
            raise BrokkrError(
                f"{what} links to another server ({clean(str(target), 120)}); refusing to follow it"
            )
        return str(target)
