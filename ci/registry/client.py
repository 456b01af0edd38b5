"""A small async client for the OCI distribution API.

It reads what publishing and inspection need — manifests and indexes (OCI and
Docker media types, digests verified), config blobs, tag lists (with ``Link``
pagination) — and writes what attaching artifacts needs: blobs and manifests.
Transport, limits and the per-operation deadline live in ``_http``;
challenges, tokens and credentials in ``_auth``.

A broken or hostile registry cannot exhaust memory or time: every body,
header, tag list and index is bounded (``Limits``; the numbers are in
``_http``), every operation has one overall deadline, and every malformed
answer is a ``BrokkrError`` that names the registry and what was wrong. Text
the registry sends is cleaned before it reaches a message; passwords and
tokens never appear in messages or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from ci.errors import BrokkrError
from ci.registry.auth import Authenticator, Credentials
from ci.registry.http import (
    MAX_BLOB_BYTES,
    MAX_INDEX_PLATFORMS,
    MAX_MANIFEST_BYTES,
    MAX_TAG_PAGES,
    MAX_TAGS,
    BodyLimit,
    HttpSession,
    Limits,
    Reply,
    cap_message,
    clean,
    deadline,
    error_codes,
    header_values,
    retry_delay,
    same_origin,
    status_text,
)
from ci.rules.reference import ImageReference, is_loopback_host, validate_digest
from ci.rules.tags import OCI_TAG

__all__ = [
    "ACCEPT_MANIFESTS",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MAX_BLOB_BYTES",
    "MAX_INDEX_PLATFORMS",
    "MAX_MANIFEST_BYTES",
    "MAX_REFERRERS",
    "MAX_TAGS",
    "MAX_TAG_PAGES",
    "NO_REFERRERS_API",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Credentials",
    "ImageDescription",
    "Limits",
    "Manifest",
    "PlatformDescription",
    "RegistryClient",
    "descriptor",
    "next_link",
    "retry_delay",
    "sha256_digest",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT_MANIFESTS = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

MAX_REFERRERS = 10_000
"""Most descriptors one referrers list (all its pages) or fallback index may hold."""
NO_REFERRERS_API = frozenset({400, 404, 405})
"""Answers to ``GET /v2/<name>/referrers/<digest>`` that mean the registry lacks the API."""

INDEX_FETCH_CONCURRENCY = 4
"""Platform manifests of one index read at once (each up to the manifest limit)."""
_ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
_UNREADABLE = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    RecursionError,
    OverflowError,
    UnicodeError,
    zlib.error,
    httpx.HTTPError,
)


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry served it, digest verified."""

    reference: ImageReference
    digest: str
    media_type: str
    body: bytes = field(repr=False)
    document: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def is_index(self) -> bool:
        """Whether this is a multi-platform index (OCI index or Docker manifest list)."""
        return self.media_type in INDEX_MEDIA_TYPES


@dataclass(frozen=True)
class PlatformDescription:
    """One platform of an image: ``os/arch[/variant]``, its manifest, its size."""

    platform: str
    digest: str
    size: int
    """Compressed bytes: the config blob plus every layer."""


@dataclass(frozen=True)
class ImageDescription:
    """What ``RegistryClient.inspect`` reports about an address."""

    reference: ImageReference
    digest: str
    media_type: str
    platforms: tuple[PlatformDescription, ...]


def _hash(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def sha256_digest(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of a blob or manifest body."""
    return _hash("sha256", data)


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    """The OCI descriptor of ``data``: media type, size and sha256 digest."""
    return {"mediaType": media_type, "size": len(data), "digest": sha256_digest(data)}


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


def _platform_string(platform: Mapping[str, Any], where: str) -> str:
    parts = []
    for key in ("os", "architecture", "variant"):
        value = platform.get(key)
        if value is None or value == "":
            if key == "variant":
                continue
            value = "unknown"
        if not isinstance(value, str):
            raise BrokkrError(f"{where} gives a platform {key} that is not a string")
        parts.append(clean(value, 64))
    return "/".join(parts)


def _is_attestation(descriptor: Mapping[str, Any]) -> bool:
    annotations = descriptor.get("annotations")
    if isinstance(annotations, dict) and annotations.get(_ATTESTATION_ANNOTATION) == (
        "attestation-manifest"
    ):
        return True
    platform = descriptor.get("platform")
    return isinstance(platform, dict) and (
        platform.get("os") == "unknown" and platform.get("architecture") == "unknown"
    )


def _descriptor_size(descriptor: Any, where: str) -> int:
    size = descriptor.get("size") if isinstance(descriptor, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BrokkrError(f"{where}: a descriptor has no valid size")
    return size


def _descriptor_digest(descriptor: Any, where: str) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str):
        raise BrokkrError(f"{where}: a descriptor has no digest")
    try:
        return validate_digest(digest)
    except BrokkrError:
        raise BrokkrError(
            f"{where}: a descriptor has an invalid digest {clean(digest, 80)!r}"
        ) from None


def _parse_json(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except RecursionError:
        raise BrokkrError(f"{what} is JSON nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError):
        raise BrokkrError(f"{what} is not valid JSON") from None
    if not isinstance(document, dict):
        raise BrokkrError(f"{what} is not a JSON object")
    return document


class RegistryClient:
    """An async client for OCI registries (``async with RegistryClient() as c: …``).

    Options (keyword only):

    - ``credentials``: a ``Credentials`` login used for Basic auth and to obtain
      Bearer tokens; anonymous when None.
    - ``attempts``: how many times one request is tried when it fails
      transiently (connection error, timeout, 408, 429, 5xx). Other answers
      (401, 403, 404, other 4xx, a broken protocol) are never retried.
    - ``backoff``: seconds before the first retry, doubled for each later one
      (0 retries at once); a ``Retry-After`` header can ask for longer.
    - ``max_delay``: the longest wait between two attempts, whatever
      ``Retry-After`` says.
    - ``timeout``: seconds for connecting and for each read.
    - ``limits``: the bounds on sizes, counts and the per-operation deadline
      (``Limits``; defaults documented in ``_http``).
    - ``transport``: an ``httpx.AsyncBaseTransport`` to send requests through
      (tests inject failures with one); httpx's default otherwise.
    - ``anonymous_hint``: what an anonymous caller should do when the registry
      wants a login (ends the "authentication required" error).
    - ``connect_to``: registries (``localhost:5000``, as in addresses) whose
      connections go to another ``(host, port)`` (a Dagger service's endpoint,
      ``--registry-service``). Only the connection moves (``_http.ConnectTo``):
      URLs, the ``Host`` header, auth scopes, redirects and messages keep the
      registry's own address. Only loopback registries may be moved (a
      ``ValueError`` otherwise): they are the ones spoken to in plain HTTP, as
      the engine does, and no other host's requests are ever redirected.

    Every public method is one operation under the ``limits.deadline`` (unless
    an enclosing ``operation`` block set a sooner one) and raises only
    ``BrokkrError``.
    """

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
        """One operation: everything inside shares one deadline and raises only BrokkrError.

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
            except _UNREADABLE as error:
                raise BrokkrError(
                    f"registry {registry} sent an answer that cannot be read while {doing} "
                    f"({type(error).__name__})"
                ) from None

    # Reading ----------------------------------------------------------------------

    async def get_manifest(self, ref: ImageReference) -> Manifest:
        """Fetch the manifest or index ``ref`` names (at most ``limits.manifest_bytes``).

        The body's sha256 must equal the registry's ``Docker-Content-Digest`` and,
        for a digest reference, the digest asked for.
        """
        with self.operation(ref.registry, f"reading the manifest of {ref}"):
            manifest = await self._get_manifest(ref, missing_ok=False)
        assert manifest is not None
        return manifest

    async def fetch_manifest_or_none(self, ref: ImageReference) -> Manifest | None:
        """Like ``get_manifest``, but None when the registry answers 404.

        For read-modify-write of an index under a tag (``sha256-<hex>``,
        ``sha256-<hex>.sig``): ``body``, ``media_type`` and ``digest`` of the
        result are what the registry holds now.
        """
        with self.operation(ref.registry, f"reading the manifest of {ref}"):
            return await self._get_manifest(ref, missing_ok=True)

    async def get_referrers(self, ref: ImageReference, digest: str) -> list[dict[str, Any]] | None:
        """The referrers API (OCI 1.1): descriptors of the manifests whose subject is ``digest``.

        None when the registry has no referrers API; callers then use the
        ``sha256-<hex>`` tag schema (``ci.registry.referrers``). The distribution
        specification tells clients to fall back on a 404 (distribution 2.8
        answers so), and a registry with the API answers 400 only to an invalid
        digest, which is never sent; registries and proxies that do not know the
        endpoint also answer 400 or 405 (``NO_REFERRERS_API``), so those mean
        "no API" too. Every page is read (``Link: <…>; rel="next"``, same server
        only): at most ``limits.tag_pages`` pages and ``MAX_REFERRERS``
        descriptors in all, each page at most ``limits.manifest_bytes``.
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
        )
        with self.operation(ref.registry, f"listing the referrers of {digest} in {name}"):
            async with contextlib.aclosing(pages):
                first = True
                async for reply in pages:
                    if first and reply.status in NO_REFERRERS_API:
                        return None
                    first = False
                    self._expect_ok(reply, ref, f"listing the referrers of {digest}")
                    document = _parse_json(reply.body, what)
                    page = document.get("manifests", [])
                    if not isinstance(page, list) or not all(isinstance(m, dict) for m in page):
                        raise BrokkrError(f"{what} is malformed")
                    if len(referrers) + len(page) > MAX_REFERRERS:
                        raise BrokkrError(
                            f"{what} has more than {MAX_REFERRERS} entries; refusing it"
                        )
                    referrers.extend(page)
        return referrers

    async def resolve_digest(self, ref: ImageReference) -> str:
        """The digest a tag (or digest) reference points at, verified."""
        return (await self.get_manifest(ref)).digest

    async def get_blob(self, ref: ImageReference, digest: str, size: int | None = None) -> bytes:
        """Fetch a small blob of ``ref``'s repository, such as a config, and verify it.

        ``size`` is the size its descriptor gives: the blob must have exactly
        that many bytes. Either way no more than ``limits.blob_bytes`` are read.
        """
        validate_digest(digest)
        cap = self._limits.blob_bytes
        with self.operation(ref.registry, f"reading blob {digest} of {ref.name}"):
            if size is not None and size > cap:
                raise BrokkrError(
                    f"blob {digest} of {ref.name} is {size} bytes by its descriptor, over "
                    f"{BodyLimit.named(cap, 'blobs read into memory').text}; refusing it"
                )
            limit = (
                BodyLimit(size, f"the size its descriptor gives ({size} bytes)")
                if size is not None
                else BodyLimit.named(cap, "blobs read into memory")
            )
            reply = await self._request(
                "GET",
                f"{ref.base_url}/v2/{ref.repository}/blobs/{digest}",
                ref=ref,
                limit=limit,
                what=f"blob {digest}",
            )
            if reply.status == 404:
                raise BrokkrError(f"not found: blob {digest} in {ref.name}")
            self._expect_ok(reply, ref, f"reading blob {digest}")
            if size is not None and len(reply.body) != size:
                raise BrokkrError(
                    f"blob {digest} of {ref.name} is {len(reply.body)} bytes but its descriptor "
                    f"says {size}"
                )
            actual = _hash(digest.split(":", 1)[0], reply.body)
            if actual != digest:
                raise BrokkrError(
                    f"digest mismatch for blob {digest} of {ref.name}: its content hashes to "
                    f"{actual}"
                )
            return reply.body

    async def config_labels(self, ref: ImageReference) -> dict[str, str]:
        """The labels of the image's config (the first platform's, for an index).

        Keys and values are cleaned of control characters (registry text).
        """
        with self.operation(ref.registry, f"reading the labels of {ref}"):
            manifest = await self.get_manifest(ref)
            if manifest.is_index:
                entries = manifest.document.get("manifests")
                if not isinstance(entries, list):
                    raise BrokkrError(f"the index of {ref} has no manifest list")
                wanted = [d for d in entries if isinstance(d, dict) and not _is_attestation(d)]
                if not wanted:
                    return {}
                child = _descriptor_digest(wanted[0], f"the index of {ref}")
                manifest = await self.get_manifest(ref.with_digest(child))
                if manifest.is_index:
                    raise BrokkrError(f"{ref} is an index of indexes, which is not supported")
            where = f"the manifest of {manifest.reference}"
            config = manifest.document.get("config")
            if not isinstance(config, dict):
                raise BrokkrError(f"{where} has no config descriptor")
            blob = await self.get_blob(
                ref, _descriptor_digest(config, where), _descriptor_size(config, where)
            )
            document = _parse_json(blob, f"the config of {ref}")
            inner = document.get("config")
            if inner is None:
                return {}
            if not isinstance(inner, dict):
                raise BrokkrError(f"the config of {ref} has a 'config' that is not an object")
            labels = inner.get("Labels")
            if labels is None:
                return {}
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise BrokkrError(f"the config of {ref} has labels that are not a string map")
            return {clean(k, 256): clean(v, 1024) for k, v in labels.items()}

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
                document = _parse_json(reply.body, what)
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
    ) -> AsyncIterator[Reply]:
        """Every page of a listing from ``url`` on, as the caller takes them (any status).

        The next page is the ``Link: <…>; rel="next"`` of the one just taken, on
        the same server only (``_next_page``); a page seen before is an error,
        and so is a page past ``limits.tag_pages`` (``pages_name`` names that
        limit). Each page is at most ``limits.manifest_bytes`` (``body_name``
        names that limit). ``what`` names the listing in errors, ``request_what``
        (default ``what``) the page in body errors.
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

    async def inspect(self, ref: ImageReference) -> ImageDescription:
        """Describe ``ref``: its digest, media type, and every platform it holds.

        For an index: one entry per platform manifest (attestations, whose
        platform is ``unknown/unknown``, are skipped; an entry repeated with the
        same platform and digest counts once; more than ``limits.index_platforms``
        is an error). For a single manifest: the platform comes from its config
        blob. Sizes are compressed bytes (config plus layers), as listed in the
        manifests; layers are not downloaded.
        """
        with self.operation(ref.registry, f"inspecting {ref}"):
            return await self._inspect(ref)

    async def _inspect(self, ref: ImageReference) -> ImageDescription:
        top = await self.get_manifest(ref)
        if not top.is_index:
            platform = await self._platform_from_config(top)
            return ImageDescription(
                ref, top.digest, top.media_type, (self._describe(top, platform),)
            )
        where = f"the index of {ref}"
        entries = top.document.get("manifests")
        if not isinstance(entries, list):
            raise BrokkrError(f"{where} has no manifest list")
        wanted: dict[tuple[str | None, str], None] = {}
        for entry in entries:
            if not isinstance(entry, dict) or _is_attestation(entry):
                continue
            media_type = entry.get("mediaType")
            if media_type is not None and not isinstance(media_type, str):
                raise BrokkrError(f"{where} has an entry whose mediaType is not a string")
            if media_type in INDEX_MEDIA_TYPES:
                raise BrokkrError(f"{ref} is an index of indexes, which is not supported")
            digest = _descriptor_digest(entry, where)
            platform = entry.get("platform")
            name = _platform_string(platform, where) if isinstance(platform, dict) else None
            wanted[(name, digest)] = None
            if len(wanted) > self._limits.index_platforms:
                raise BrokkrError(
                    f"{where} lists more than {self._limits.index_platforms} platform manifests "
                    "(the limit for one index, after removing duplicates)"
                )
        slots = asyncio.Semaphore(INDEX_FETCH_CONCURRENCY)
        described: dict[tuple[str | None, str], PlatformDescription] = {}
        needs_config = {digest for name, digest in wanted if name is None}

        async def one(digest: str) -> None:
            async with slots:
                child = await self.get_manifest(
                    ImageReference(ref.registry, ref.repository, None, digest)
                )
                from_config = (
                    await self._platform_from_config(child) if digest in needs_config else None
                )
            for name, wanted_digest in wanted:
                if wanted_digest == digest:
                    platform = name if name is not None else from_config
                    assert platform is not None
                    described[(name, digest)] = self._describe(child, platform)

        results = await asyncio.gather(
            *(one(d) for d in dict.fromkeys(d for _, d in wanted)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return ImageDescription(
            ref, top.digest, top.media_type, tuple(described[key] for key in wanted)
        )

    # Writing ----------------------------------------------------------------------

    async def push_blob(self, ref: ImageReference, data: bytes) -> str:
        """Upload ``data`` as a blob of ``ref``'s repository; returns its ``sha256:`` digest.

        A blob the registry already has (``HEAD`` answers 200) is not sent again.
        Otherwise a monolithic upload: ``POST /v2/<name>/blobs/uploads/`` opens a
        session, ``PUT <location>?digest=…`` sends the bytes. Needs push access.
        """
        digest = _hash("sha256", data)
        with self.operation(ref.registry, f"pushing blob {digest} to {ref.name}"):
            small = BodyLimit.named(self._limits.small_body_bytes, "upload answers")
            blob_url = f"{ref.base_url}/v2/{ref.repository}/blobs/{digest}"
            head = await self._request(
                "HEAD", blob_url, ref=ref, limit=small, what="a blob check", push=True
            )
            if head.status == 200:
                return digest
            started = await self._request(
                "POST",
                f"{ref.base_url}/v2/{ref.repository}/blobs/uploads/",
                ref=ref,
                limit=small,
                what="an upload session",
                push=True,
            )
            if started.status != 202:
                raise BrokkrError(
                    f"starting the upload of blob {digest} to {ref.name} failed: "
                    f"{status_text(started)}"
                )
            locations = header_values(
                started.headers, "location", limit=self._limits.header_chars, registry=ref.registry
            )
            if not locations or not locations[0].strip():
                raise BrokkrError(
                    f"{ref.registry} opened an upload for {ref.name} without a Location header"
                )
            try:
                upload = started.url.join(locations[0].strip())
                same = same_origin(upload, httpx.URL(ref.base_url))
                target = str(upload.copy_merge_params({"digest": digest}))
            except (httpx.InvalidURL, ValueError):
                raise BrokkrError(
                    f"{ref.registry} gave a malformed upload location {clean(locations[0], 100)!r}"
                ) from None
            if not same:
                raise BrokkrError(
                    f"{ref.registry} wants the blob upload for {ref.name} sent to another server "
                    f"({clean(upload.host, 100)}); refusing to send it there"
                )
            finished = await self._request(
                "PUT",
                target,
                ref=ref,
                limit=small,
                what="a blob upload",
                headers={"Content-Type": "application/octet-stream"},
                content=data,
                push=True,
            )
            if finished.status not in (201, 204):
                raise BrokkrError(
                    f"uploading blob {digest} to {ref.name} failed: {status_text(finished)}"
                )
            return digest

    async def push_manifest(
        self, ref: ImageReference, reference: str, body: bytes, media_type: str
    ) -> str:
        """Store ``body`` (of ``media_type``) as ``ref``'s repository's manifest ``reference``.

        ``reference`` is a tag or a digest; its blobs and child manifests must be
        pushed first. Returns the manifest's digest (the sha256 of ``body``),
        checked against the registry's ``Docker-Content-Digest`` when it sends one.
        A body over ``limits.manifest_bytes`` is refused before anything is sent.
        """
        if reference.startswith(("sha256:", "sha512:")):
            target = ref.with_digest(validate_digest(reference))
        else:
            target = ref.with_tag(reference)
        limit = self._limits.manifest_bytes
        if len(body) > limit:
            raise BrokkrError(
                f"the manifest for {target} is {len(body)} bytes, over "
                f"{BodyLimit.named(limit, 'manifests and indexes').text}; not pushing it"
            )
        digest = _hash("sha256", body)
        if target.digest and _hash(target.digest.split(":", 1)[0], body) != target.digest:
            raise BrokkrError(f"the manifest for {target} does not hash to {target.digest}")
        with self.operation(ref.registry, f"pushing the manifest {target}"):
            reply = await self._request(
                "PUT",
                f"{ref.base_url}/v2/{ref.repository}/manifests/{reference}",
                ref=ref,
                limit=BodyLimit.named(self._limits.small_body_bytes, "upload answers"),
                what="a manifest upload",
                headers={"Content-Type": media_type},
                content=body,
                push=True,
            )
            if reply.status not in (201, 204):
                raise BrokkrError(f"pushing the manifest {target} failed: {status_text(reply)}")
            header = reply.headers.get("docker-content-digest")
            if header and header.startswith("sha256:") and header != digest:
                raise BrokkrError(
                    f"digest mismatch pushing {target}: the registry says it stored "
                    f"{clean(header, 80)} but the manifest sent hashes to {digest}"
                )
            return digest

    # Helpers for reading ---------------------------------------------------------

    async def _get_manifest(self, ref: ImageReference, *, missing_ok: bool) -> Manifest | None:
        reply = await self._request(
            "GET",
            f"{ref.base_url}/v2/{ref.repository}/manifests/{ref.reference}",
            ref=ref,
            limit=BodyLimit.named(self._limits.manifest_bytes, "manifests and indexes"),
            what=f"the manifest of {ref}",
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        if reply.status == 404:
            if missing_ok:
                return None
            raise await self._not_found(ref, reply)
        self._expect_ok(reply, ref, "reading the manifest")
        digest = self._verify_digest(ref, reply.body, reply.headers.get("docker-content-digest"))
        document = _parse_json(reply.body, f"the manifest of {ref}")
        declared = document.get("mediaType")
        if declared is not None and not isinstance(declared, str):
            raise BrokkrError(f"the manifest of {ref} has a mediaType that is not a string")
        media_type = declared or reply.headers.get("content-type", "").split(";")[0].strip()
        if media_type not in INDEX_MEDIA_TYPES | IMAGE_MEDIA_TYPES:
            if "manifests" in document:
                media_type = OCI_INDEX
            elif "config" in document and "layers" in document:
                media_type = OCI_MANIFEST
            else:
                raise BrokkrError(
                    f"{ref} has a manifest of unsupported type "
                    f"{clean(media_type, 100) or 'unknown'!r}; supported: OCI image "
                    "index/manifest, Docker manifest list/schema 2"
                )
        return Manifest(ref, digest, media_type, reply.body, document)

    def _describe(self, manifest: Manifest, platform: str) -> PlatformDescription:
        if manifest.is_index:
            raise BrokkrError(
                f"{manifest.reference} is an index of indexes, which is not supported"
            )
        where = f"the manifest of {manifest.reference}"
        layers = manifest.document.get("layers")
        if not isinstance(layers, list):
            raise BrokkrError(f"{where} has no layer list")
        size = _descriptor_size(manifest.document.get("config"), where)
        size += sum(_descriptor_size(layer, where) for layer in layers)
        return PlatformDescription(platform, manifest.digest, size)

    async def _platform_from_config(self, manifest: Manifest) -> str:
        where = f"the manifest of {manifest.reference}"
        config = manifest.document.get("config")
        if not isinstance(config, dict):
            raise BrokkrError(f"{where} has no config descriptor")
        blob = await self.get_blob(
            manifest.reference, _descriptor_digest(config, where), _descriptor_size(config, where)
        )
        document = _parse_json(blob, f"the config of {manifest.reference}")
        return _platform_string(document, f"the config of {manifest.reference}")

    @staticmethod
    def _verify_digest(ref: ImageReference, body: bytes, header: str | None) -> str:
        if header:
            try:
                validate_digest(header)
            except BrokkrError:
                raise BrokkrError(
                    f"the registry sent an invalid Docker-Content-Digest for {ref}: "
                    f"{clean(header, 80)!r}"
                ) from None
            actual = _hash(header.split(":", 1)[0], body)
            if actual != header:
                raise BrokkrError(
                    f"digest mismatch for {ref}: the registry says {header} but the manifest "
                    f"it sent hashes to {actual}"
                )
        if ref.digest:
            actual = _hash(ref.digest.split(":", 1)[0], body)
            if actual != ref.digest:
                raise BrokkrError(
                    f"digest mismatch for {ref}: asked for {ref.digest} but the manifest the "
                    f"registry sent hashes to {actual}"
                )
            return ref.digest
        return header or _hash("sha256", body)

    async def _not_found(self, ref: ImageReference, reply: Reply) -> BrokkrError:
        """Say whether the repository or the tag/digest is missing.

        Registries such as distribution v2 answer MANIFEST_UNKNOWN for both, so
        when the code does not tell, the repository's tag list does.
        """
        repository_missing = "NAME_UNKNOWN" in error_codes(reply)
        if not repository_missing:
            try:
                listing = await self._request(
                    "GET",
                    f"{ref.base_url}/v2/{ref.repository}/tags/list?n=1",
                    ref=ref,
                    limit=BodyLimit.named(self._limits.manifest_bytes, "tag list pages"),
                    what=f"the tag list of {ref.name}",
                )
            except BrokkrError:
                listing = None
            repository_missing = listing is not None and listing.status == 404
        if repository_missing:
            return BrokkrError(
                f"not found: {ref} (the registry has no repository {ref.repository})"
            )
        if ref.digest:
            return BrokkrError(f"not found: {ref} (no manifest with digest {ref.digest})")
        return BrokkrError(f"not found: {ref} (no tag {ref.tag} in {ref.name})")

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
    ) -> Reply:
        """Send with auth and retries; returns any answer but 401/403 and transient ones.

        ``push`` asks for a token that may write (``pull,push``) instead of read.
        """
        scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        challenges_answered = 0
        while True:
            request_headers = dict(headers or {})
            authorization = self._auth.authorization(ref.registry, scope)
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
