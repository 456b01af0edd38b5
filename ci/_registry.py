"""A small async client for the OCI distribution API, over httpx.

It reads what publishing and inspection need: manifests and indexes (OCI and
Docker media types, digests verified), config blobs, and tag lists (with
``Link`` pagination). It authenticates anonymously, with Basic auth, or through
the Bearer token challenge that GHCR and Docker Hub use, and retries transient
failures (connection errors, 408, 429, 5xx) a bounded number of times.

Every problem surfaces as a ``BrokkrError`` whose message names the image and
what went wrong; passwords and tokens never appear in messages or logs.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urljoin, urlsplit

import httpx

from ci._errors import BrokkrError
from ci._reference import ImageReference, is_loopback_host, validate_digest

__all__ = [
    "ACCEPT_MANIFESTS",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Credentials",
    "ImageDescription",
    "Manifest",
    "PlatformDescription",
    "RegistryClient",
    "retry_delay",
]

logger = logging.getLogger("ci.registry")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT_MANIFESTS = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the limit distribution itself enforces
MAX_TAG_PAGES = 10_000
USER_AGENT = "brokkr-ci (OCI distribution client)"
_ATTESTATION_ANNOTATION = "vnd.docker.reference.type"


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


@dataclass
class _Token:
    value: str = field(repr=False)
    expires_at: float


def retry_delay(
    failures: int, *, backoff: float, max_delay: float, retry_after: str | None = None
) -> float:
    """Seconds to wait after the ``failures``-th failed attempt.

    Exponential (``backoff``, ``2 * backoff``, ``4 * backoff``…); a ``Retry-After``
    header (seconds or an HTTP date) can lengthen it. Never more than ``max_delay``.
    """
    delay = backoff * 2 ** max(failures - 1, 0)
    if retry_after:
        requested: float | None = None
        text = retry_after.strip()
        if text.isdigit():
            requested = float(text)
        else:
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                requested = (when - datetime.now(UTC)).total_seconds()
        if requested is not None:
            delay = max(delay, requested)
    return max(0.0, min(delay, max_delay))


_AUTH_PART = re.compile(
    r'\s*(?:([\w.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))|([\w.~+/-]+=*)|(,))'
)


def _parse_challenges(headers: httpx.Headers) -> dict[str, dict[str, str]]:
    """``WWW-Authenticate`` challenges by lowercase scheme, with their parameters.

    ``Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="…"`` gives
    ``{"bearer": {"realm": …, "service": …, "scope": …}}``.
    """
    challenges: dict[str, dict[str, str]] = {}
    for header in headers.get_list("www-authenticate"):
        current: dict[str, str] | None = None
        for match in _AUTH_PART.finditer(header):
            key, quoted, bare, scheme, _comma = match.groups()
            if scheme is not None:
                current = challenges.setdefault(scheme.lower(), {})
            elif key is not None and current is not None:
                value = quoted if quoted is not None else bare or ""
                current.setdefault(key.lower(), re.sub(r"\\(.)", r"\1", value))
    return challenges


def _basic_authorization(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _registry_errors(response: httpx.Response) -> str:
    """The registry's own error text (``errors[].message``), or ''."""
    try:
        document = response.json()
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(document, dict) or not isinstance(document.get("errors"), list):
        return ""
    messages = []
    for error in document["errors"]:
        if isinstance(error, dict):
            text = str(error.get("message") or error.get("code") or "").strip()
            if text:
                messages.append(text[:200])
    return "; ".join(messages)


def _error_codes(response: httpx.Response) -> set[str]:
    try:
        document = response.json()
    except (ValueError, UnicodeDecodeError):
        return set()
    if not isinstance(document, dict) or not isinstance(document.get("errors"), list):
        return set()
    return {str(e.get("code")) for e in document["errors"] if isinstance(e, dict)}


def _status_text(response: httpx.Response) -> str:
    text = f"HTTP {response.status_code}"
    if response.reason_phrase:
        text += f" {response.reason_phrase}"
    detail = _registry_errors(response)
    return f"{text} ({detail})" if detail else text


def _hash(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _next_link(response: httpx.Response) -> str | None:
    """The target of a ``Link: <…>; rel="next"`` header, if any."""
    for header in response.headers.get_list("link"):
        for part in re.finditer(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)", header):
            target, params = part.group(1), part.group(2)
            if re.search(r"""rel\s*=\s*"?next"?""", params):
                return target
    return None


def _platform_string(platform: Mapping[str, Any]) -> str:
    os_name = str(platform.get("os") or "unknown")
    architecture = str(platform.get("architecture") or "unknown")
    text = f"{os_name}/{architecture}"
    if platform.get("variant"):
        text += f"/{platform['variant']}"
    return text


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


class RegistryClient:
    """An async client for OCI registries (``async with RegistryClient() as c: …``).

    Options (keyword only):

    - ``credentials``: a ``Credentials`` login used for Basic auth and to obtain
      Bearer tokens; anonymous when None.
    - ``attempts``: how many times one request is tried when it fails
      transiently (connection error, timeout, 408, 429, 5xx). 401, 403 and 404
      are answers, not failures, and are never retried.
    - ``backoff``: seconds before the first retry, doubled for each later one
      (0 retries at once); a ``Retry-After`` header can ask for longer.
    - ``max_delay``: the longest wait between two attempts, whatever
      ``Retry-After`` says.
    - ``timeout``: seconds for connecting and for each read.
    - ``transport``: an ``httpx.AsyncBaseTransport`` to send requests through
      (tests inject failures with one); httpx's default otherwise.
    - ``anonymous_hint``: what an anonymous caller should do when the registry
      wants a login (ends the "authentication required" error).
    """

    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
        max_delay: float = 30.0,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        anonymous_hint: str = "give a username and a password or token",
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if backoff < 0 or max_delay < 0:
            raise ValueError("backoff and max_delay must not be negative")
        self._credentials = credentials
        self._attempts = attempts
        self._backoff = backoff
        self._max_delay = max_delay
        self._timeout = timeout
        self._transport = transport
        self._anonymous_hint = anonymous_hint
        self._client: httpx.AsyncClient | None = None
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._basic_registries: set[str] = set()

    async def __aenter__(self) -> Self:
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=self._timeout,
            follow_redirects=True,  # blobs are often served from a CDN
            headers={"User-Agent": USER_AGENT},
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

    # Reading ----------------------------------------------------------------------

    async def get_manifest(self, ref: ImageReference) -> Manifest:
        """Fetch the manifest or index ``ref`` names, and check its digest.

        The body's sha256 must equal the registry's ``Docker-Content-Digest`` and,
        for a digest reference, the digest asked for.
        """
        manifest = await self._get_manifest(ref, missing_ok=False)
        assert manifest is not None
        return manifest

    async def fetch_manifest_or_none(self, ref: ImageReference) -> Manifest | None:
        """Like ``get_manifest``, but None when the registry answers 404.

        For read-modify-write of an index under a tag (``sha256-<hex>``,
        ``sha256-<hex>.sig``): ``body``, ``media_type`` and ``digest`` of the
        result are what the registry holds now.
        """
        return await self._get_manifest(ref, missing_ok=True)

    async def get_referrers(self, ref: ImageReference, digest: str) -> list[dict[str, Any]] | None:
        """The referrers API (OCI 1.1): descriptors of the manifests whose subject is ``digest``.

        None when the registry has no referrers API (it answers 404, as
        distribution 2.8 does); callers then use the ``sha256-<hex>`` tag
        schema (``ci._referrers``). Only the first page is read.
        """
        validate_digest(digest)
        response = await self._request(
            "GET",
            f"{ref.base_url}/v2/{ref.repository}/referrers/{digest}",
            ref=ref,
            headers={"Accept": OCI_INDEX},
        )
        if response.status_code == 404:
            return None
        self._expect_ok(response, ref, f"listing the referrers of {digest}")
        if len(response.content) > MAX_MANIFEST_BYTES:
            raise BrokkrError(f"the referrers list of {ref} is larger than 4 MiB; refusing it")
        document = self._parse_json(response.content, f"the referrers list of {digest} in {ref}")
        manifests = document.get("manifests", [])
        if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
            raise BrokkrError(f"the referrers list of {digest} in {ref.name} is malformed")
        return manifests

    async def _get_manifest(self, ref: ImageReference, *, missing_ok: bool) -> Manifest | None:
        response = await self._request(
            "GET",
            f"{ref.base_url}/v2/{ref.repository}/manifests/{ref.reference}",
            ref=ref,
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        if response.status_code == 404:
            if missing_ok:
                return None
            raise await self._not_found(ref, response)
        self._expect_ok(response, ref, "reading the manifest")
        body = response.content
        if len(body) > MAX_MANIFEST_BYTES:
            raise BrokkrError(f"the manifest of {ref} is larger than 4 MiB; refusing it")
        digest = self._verify_digest(ref, body, response.headers.get("docker-content-digest"))
        document = self._parse_json(body, f"the manifest of {ref}")
        media_type = (
            document.get("mediaType")
            or response.headers.get("content-type", "").split(";")[0].strip()
        )
        if media_type not in INDEX_MEDIA_TYPES | IMAGE_MEDIA_TYPES:
            if "manifests" in document:
                media_type = OCI_INDEX
            elif "config" in document and "layers" in document:
                media_type = OCI_MANIFEST
            else:
                raise BrokkrError(
                    f"{ref} has a manifest of unsupported type {media_type or 'unknown'!r}; "
                    "supported: OCI image index/manifest, Docker manifest list/schema 2"
                )
        return Manifest(ref, digest, media_type, body, document)

    async def resolve_digest(self, ref: ImageReference) -> str:
        """The digest a tag (or digest) reference points at, verified."""
        return (await self.get_manifest(ref)).digest

    async def get_blob(self, ref: ImageReference, digest: str) -> bytes:
        """Fetch a (small) blob of ``ref``'s repository, such as a config, and verify it."""
        validate_digest(digest)
        response = await self._request(
            "GET", f"{ref.base_url}/v2/{ref.repository}/blobs/{digest}", ref=ref
        )
        if response.status_code == 404:
            raise BrokkrError(f"not found: blob {digest} in {ref.name}")
        self._expect_ok(response, ref, f"reading blob {digest}")
        actual = _hash(digest.split(":", 1)[0], response.content)
        if actual != digest:
            raise BrokkrError(
                f"digest mismatch for blob {digest} of {ref.name}: its content hashes to {actual}"
            )
        return response.content

    async def config_labels(self, ref: ImageReference) -> dict[str, str]:
        """The labels of the image's config (the first platform's, for an index)."""
        manifest = await self.get_manifest(ref)
        if manifest.is_index:
            entries = [
                d
                for d in manifest.document.get("manifests", [])
                if isinstance(d, Mapping) and not _is_attestation(d)
            ]
            if not entries:
                return {}
            manifest = await self.get_manifest(ref.with_digest(str(entries[0].get("digest"))))
        config = manifest.document.get("config")
        if not isinstance(config, Mapping):
            raise BrokkrError(f"the manifest of {ref} has no config")
        document = self._parse_json(
            await self.get_blob(ref, str(config.get("digest"))), f"the config of {ref}"
        )
        labels = (document.get("config") or {}).get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    async def list_tags(
        self, repository: ImageReference, *, page_size: int | None = None, missing_ok: bool = False
    ) -> list[str]:
        """Every tag of ``repository`` (its tag and digest are ignored), in registry order.

        Follows ``Link: <…>; rel="next"`` pagination; ``page_size`` asks for ``n``
        tags per page. An unknown repository is an error, or ``[]`` with
        ``missing_ok=True``.
        """
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be at least 1")
        url = f"{repository.base_url}/v2/{repository.repository}/tags/list"
        if page_size is not None:
            url += f"?n={page_size}"
        origin = urlsplit(repository.base_url)
        tags: list[str] = []
        seen: set[str] = set()
        while True:
            if url in seen or len(seen) >= MAX_TAG_PAGES:
                raise BrokkrError(f"the tag list of {repository.name} does not end (page {url})")
            seen.add(url)
            response = await self._request("GET", url, ref=repository)
            if response.status_code == 404:
                if missing_ok:
                    return []
                raise BrokkrError(f"not found: {repository.name} (no such repository)")
            self._expect_ok(response, repository, "listing tags")
            document = self._parse_json(response.content, f"the tag list of {repository.name}")
            page = document.get("tags") or []
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise BrokkrError(f"the registry sent a malformed tag list for {repository.name}")
            tags.extend(page)
            link = _next_link(response)
            if link is None:
                return tags
            url = urljoin(str(response.url), link)
            target = urlsplit(url)
            if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
                raise BrokkrError(
                    f"the tag list of {repository.name} links to another server ({url}); "
                    "refusing to follow it"
                )

    async def inspect(self, ref: ImageReference) -> ImageDescription:
        """Describe ``ref``: its digest, media type, and every platform it holds.

        For an index: one entry per platform manifest (attestations, whose
        platform is ``unknown/unknown``, are skipped). For a single manifest: the
        platform comes from its config blob. Sizes are compressed bytes (config
        plus layers), as listed in the manifests; layers are not downloaded.
        """
        top = await self.get_manifest(ref)
        if not top.is_index:
            platform = await self._platform_from_config(top)
            return ImageDescription(
                ref, top.digest, top.media_type, (self._describe(top, platform),)
            )
        entries = top.document.get("manifests")
        if not isinstance(entries, list):
            raise BrokkrError(f"the index of {ref} has no manifest list")
        wanted = [e for e in entries if isinstance(e, dict) and not _is_attestation(e)]
        for entry in wanted:
            if entry.get("mediaType") in INDEX_MEDIA_TYPES:
                raise BrokkrError(f"{ref} is an index of indexes, which is not supported")
            if not isinstance(entry.get("digest"), str):
                raise BrokkrError(f"the index of {ref} has an entry without a digest")
        children = await asyncio.gather(
            *(
                self.get_manifest(ImageReference(ref.registry, ref.repository, None, e["digest"]))
                for e in wanted
            ),
            return_exceptions=True,
        )
        platforms = []
        for entry, child in zip(wanted, children, strict=True):
            if isinstance(child, BaseException):
                raise child
            platform = entry.get("platform")
            if isinstance(platform, dict):
                name = _platform_string(platform)
            else:
                name = await self._platform_from_config(child)
            platforms.append(self._describe(child, name))
        return ImageDescription(ref, top.digest, top.media_type, tuple(platforms))

    # Writing ----------------------------------------------------------------------

    async def push_blob(self, ref: ImageReference, data: bytes) -> str:
        """Upload ``data`` as a blob of ``ref``'s repository; returns its ``sha256:`` digest.

        A blob the registry already has (``HEAD`` answers 200) is not sent again.
        Otherwise a monolithic upload: ``POST /v2/<name>/blobs/uploads/`` opens a
        session, ``PUT <location>?digest=…`` sends the bytes. Needs push access.
        """
        digest = _hash("sha256", data)
        blob_url = f"{ref.base_url}/v2/{ref.repository}/blobs/{digest}"
        head = await self._request("HEAD", blob_url, ref=ref, push=True)
        if head.status_code == 200:
            return digest
        started = await self._request(
            "POST", f"{ref.base_url}/v2/{ref.repository}/blobs/uploads/", ref=ref, push=True
        )
        if started.status_code != 202:
            raise BrokkrError(
                f"starting the upload of blob {digest} to {ref.name} failed: "
                f"{_status_text(started)}"
            )
        location = started.headers.get("location")
        if not location:
            raise BrokkrError(
                f"{ref.registry} opened an upload for {ref.name} without a Location header"
            )
        upload = httpx.URL(urljoin(str(started.url), location))
        origin = urlsplit(ref.base_url)
        if (upload.scheme, upload.netloc.decode("ascii")) != (origin.scheme, origin.netloc):
            raise BrokkrError(
                f"{ref.registry} wants the blob upload for {ref.name} sent to another server; "
                "refusing to send it there"
            )
        finished = await self._request(
            "PUT",
            str(upload.copy_merge_params({"digest": digest})),
            ref=ref,
            headers={"Content-Type": "application/octet-stream"},
            content=data,
            push=True,
        )
        if finished.status_code not in (201, 204):
            raise BrokkrError(
                f"uploading blob {digest} to {ref.name} failed: {_status_text(finished)}"
            )
        return digest

    async def push_manifest(
        self, ref: ImageReference, reference: str, body: bytes, media_type: str
    ) -> str:
        """Store ``body`` (of ``media_type``) as ``ref``'s repository's manifest ``reference``.

        ``reference`` is a tag or a digest; its blobs and child manifests must be
        pushed first. Returns the manifest's digest (the sha256 of ``body``),
        checked against the registry's ``Docker-Content-Digest`` when it sends one.
        """
        if reference.startswith(("sha256:", "sha512:")):
            validate_digest(reference)
            target = ref.with_digest(reference)
        else:
            target = ref.with_tag(reference)
        if len(body) > MAX_MANIFEST_BYTES:
            raise BrokkrError(
                f"the manifest for {target} is larger than {MAX_MANIFEST_BYTES} bytes "
                "(the registry limit); not pushing it"
            )
        digest = _hash("sha256", body)
        if target.digest and _hash(target.digest.split(":", 1)[0], body) != target.digest:
            raise BrokkrError(f"the manifest for {target} does not hash to {target.digest}")
        response = await self._request(
            "PUT",
            f"{ref.base_url}/v2/{ref.repository}/manifests/{reference}",
            ref=ref,
            headers={"Content-Type": media_type},
            content=body,
            push=True,
        )
        if response.status_code not in (200, 201, 204):
            raise BrokkrError(f"pushing the manifest {target} failed: {_status_text(response)}")
        header = response.headers.get("docker-content-digest")
        if header and header.startswith("sha256:") and header != digest:
            raise BrokkrError(
                f"digest mismatch pushing {target}: the registry says it stored {header} "
                f"but the manifest sent hashes to {digest}"
            )
        return digest

    # Helpers for reading ---------------------------------------------------------

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
        config = manifest.document.get("config")
        digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(digest, str):
            raise BrokkrError(f"the manifest of {manifest.reference} has no config digest")
        blob = await self.get_blob(manifest.reference, digest)
        document = self._parse_json(blob, f"the config of {manifest.reference}")
        return _platform_string(document)

    @staticmethod
    def _parse_json(body: bytes, what: str) -> dict[str, Any]:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BrokkrError(f"{what} is not valid JSON") from None
        if not isinstance(document, dict):
            raise BrokkrError(f"{what} is not a JSON object")
        return document

    @staticmethod
    def _verify_digest(ref: ImageReference, body: bytes, header: str | None) -> str:
        if header:
            try:
                validate_digest(header)
            except BrokkrError:
                raise BrokkrError(
                    f"the registry sent an invalid Docker-Content-Digest for {ref}: {header!r}"
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

    async def _not_found(self, ref: ImageReference, response: httpx.Response) -> BrokkrError:
        """Say whether the repository or the tag/digest is missing.

        Registries such as distribution v2 answer MANIFEST_UNKNOWN for both, so
        when the code does not tell, the repository's tag list does.
        """
        repository_missing = "NAME_UNKNOWN" in _error_codes(response)
        if not repository_missing:
            try:
                listing = await self._request(
                    "GET", f"{ref.base_url}/v2/{ref.repository}/tags/list?n=1", ref=ref
                )
            except BrokkrError:
                listing = None
            repository_missing = listing is not None and listing.status_code == 404
        if repository_missing:
            return BrokkrError(
                f"not found: {ref} (the registry has no repository {ref.repository})"
            )
        if ref.digest:
            return BrokkrError(f"not found: {ref} (no manifest with digest {ref.digest})")
        return BrokkrError(f"not found: {ref} (no tag {ref.tag} in {ref.name})")

    @staticmethod
    def _expect_ok(response: httpx.Response, ref: ImageReference, doing: str) -> None:
        if response.status_code != 200:
            raise BrokkrError(f"{doing} for {ref} failed: {_status_text(response)}")

    # HTTP, auth and retries --------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        ref: ImageReference,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        push: bool = False,
    ) -> httpx.Response:
        """Send with auth and retries; returns any answer but 401/403 and transient ones.

        ``push`` asks for a token that may write (``pull,push``) instead of read.
        """
        scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        challenges_answered = 0
        while True:
            request_headers = dict(headers or {})
            authorization = self._authorization(ref.registry, scope)
            if authorization is not None:
                request_headers["Authorization"] = authorization
            response = await self._with_retries(
                method,
                url,
                headers=request_headers,
                target=ref.registry,
                subject=str(ref),
                content=content,
            )
            if response.status_code == 401:
                challenges_answered += 1
                if challenges_answered <= 2 and await self._answer_challenge(
                    response, ref, scope, sent=authorization is not None
                ):
                    continue
                raise self._auth_error(ref, response)
            if response.status_code == 403:
                if self._credentials is None:
                    raise BrokkrError(
                        f"access denied to {ref} for anonymous: {_status_text(response)}; "
                        f"{self._anonymous_hint}"
                    )
                raise BrokkrError(
                    f"access denied to {ref} for user {self._credentials.username!r}: "
                    f"{_status_text(response)}; check the account's permissions on the repository"
                )
            return response

    def _authorization(self, registry: str, scope: str) -> str | None:
        token = self._tokens.get((registry, scope))
        if token is not None and token.expires_at > time.monotonic():
            return f"Bearer {token.value}"
        if registry in self._basic_registries and self._credentials is not None:
            return _basic_authorization(self._credentials)
        return None

    async def _answer_challenge(
        self, response: httpx.Response, ref: ImageReference, scope: str, *, sent: bool
    ) -> bool:
        """React to a 401; True when the request is worth sending again."""
        challenges = _parse_challenges(response.headers)
        if "bearer" in challenges:
            params = challenges["bearer"]
            key = (ref.registry, scope)
            if sent and key in self._tokens and self._credentials is None:
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
            if self._credentials is None or ref.registry in self._basic_registries:
                return False
            self._basic_registries.add(ref.registry)
            return True
        return False

    async def _fetch_token(
        self, realm: str, *, service: str | None, scope: str, ref: ImageReference
    ) -> _Token:
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BrokkrError(f"{ref.registry} named an unusable token realm {realm!r}")
        if (
            parts.scheme == "http"
            and self._credentials is not None
            and not is_loopback_host(parts.hostname)
        ):
            raise BrokkrError(
                f"{ref.registry} asked for credentials over plain HTTP ({realm}); refusing "
                "to send them"
            )
        params = [("scope", scope)]
        if service:
            params.insert(0, ("service", service))
        url = str(httpx.URL(realm).copy_merge_params(params))
        headers = {}
        if self._credentials is not None:
            headers["Authorization"] = _basic_authorization(self._credentials)
        response = await self._with_retries(
            "GET", url, headers=headers, target=parts.netloc, subject=str(ref)
        )
        if response.status_code in (401, 403):
            raise self._auth_error(ref, response, token_service=parts.netloc)
        if response.status_code != 200:
            raise BrokkrError(
                f"the token service {parts.netloc} failed for {ref}: {_status_text(response)}"
            )
        try:
            document = response.json()
        except (ValueError, UnicodeDecodeError):
            document = None
        token = None
        if isinstance(document, dict):
            token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise BrokkrError(f"the token service {parts.netloc} sent no token for {ref}")
        expires_in = document.get("expires_in") if isinstance(document, dict) else None
        lifetime = expires_in if isinstance(expires_in, int) and expires_in > 0 else 60
        # Renew a little early so a token does not expire between check and use.
        return _Token(token, time.monotonic() + max(lifetime - 10, lifetime / 2))

    def _auth_error(
        self, ref: ImageReference, response: httpx.Response, *, token_service: str | None = None
    ) -> BrokkrError:
        where = f" (token service {token_service})" if token_service else ""
        if self._credentials is None:
            return BrokkrError(
                f"authentication required: {ref.registry} refused anonymous access to {ref}"
                f"{where}: {_status_text(response)}; {self._anonymous_hint}"
            )
        return BrokkrError(
            f"authentication refused: {ref.registry} did not accept the credentials of user "
            f"{self._credentials.username!r} for {ref}{where}: {_status_text(response)}"
        )

    async def _with_retries(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        target: str,
        subject: str,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send one request, retrying transient failures up to ``attempts`` times."""
        if self._client is None:
            raise RuntimeError("RegistryClient is used outside 'async with'")
        failures = 0
        while True:
            retry_after = None
            try:
                response = await self._client.request(method, url, headers=headers, content=content)
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    return response
                problem = _status_text(response)
                retry_after = response.headers.get("retry-after")
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
                urlsplit(url).path,
                problem,
                delay,
                failures + 1,
                self._attempts,
            )
            await asyncio.sleep(delay)
