"""Blobs: reading small ones into memory (verified) and uploading them."""

from __future__ import annotations

import httpx

from ci.errors import BrokkrError
from ci.registry.api import RegistryApi
from ci.registry.limits import BodyLimit
from ci.registry.manifests import check_stored_digest, hash_of
from ci.registry.replies import status_text
from ci.registry.text import clean, header_values
from ci.registry.transport import same_origin
from ci.rules.reference import ImageReference, validate_digest


class Blobs(RegistryApi):
    """Reading and uploading blobs."""

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
            actual = hash_of(digest.split(":", 1)[0], reply.body)
            if actual != digest:
                raise BrokkrError(
                    f"digest mismatch for blob {digest} of {ref.name}: its content hashes to "
                    f"{actual}"
                )
            return reply.body

    async def push_blob(self, ref: ImageReference, data: bytes) -> str:
        """Upload ``data`` as a blob of ``ref``'s repository; returns its ``sha256:`` digest.

        A blob the registry already has (``HEAD`` answers 200) is not sent again.
        Otherwise a monolithic upload: ``POST /v2/<name>/blobs/uploads/`` opens a
        session, ``PUT <location>?digest=…`` sends the bytes. Needs push access.
        """
        digest = hash_of("sha256", data)
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
            check_stored_digest(
                finished.headers.get("docker-content-digest"), data, f"blob {digest} to {ref.name}"
            )
            return digest
