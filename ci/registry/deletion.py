"""OCI manifest deletion: `DELETE /v2/<name>/manifests/<digest or tag>`.

The distribution specification makes deletion optional: a registry that does
not allow it answers 405 (distribution's `UNSUPPORTED`, its default until
`storage.delete.enabled` is set), and deleting a tag alone is a newer feature
(distribution 2.8 answers 400 to it). `delete_manifest` tells these apart:
`DELETED`, `MISSING` (already gone: 404), `REFUSED` (the registry does not do
this kind of deletion); anything else is a `BrokkrError` naming what was not
removed. It goes through the registry client's own request path, so its auth
rules, limits, retries and deadline apply. GHCR implements no manifest DELETE
at all: it deletes through GitHub's packages API (`github_packages`).
"""

from __future__ import annotations

import enum

from ci.errors import BrokkrError
from ci.registry.client import RegistryClient
from ci.registry.limits import BodyLimit
from ci.registry.replies import error_codes, status_text
from ci.rules.reference import ImageReference, validate_digest
from ci.rules.tags import OCI_TAG

__all__ = ["Deleted", "delete_manifest"]

_REFUSING_STATUSES = frozenset({400, 405})
"""A registry without (tag) deletion: 405 Method Not Allowed / UNSUPPORTED, or 400."""
_REFUSING_CODES = frozenset({"UNSUPPORTED", "DIGEST_INVALID", "TAG_INVALID"})


class Deleted(enum.Enum):
    """What a DELETE did."""

    DELETED = "deleted"
    MISSING = "already gone"
    REFUSED = "refused by the registry"


async def delete_manifest(
    client: RegistryClient, repository: ImageReference, reference: str
) -> Deleted:
    """Delete `reference` (a digest, or a tag alone) from `repository`.

    202 (or 200/204) is `DELETED`, 404 `MISSING`; 405, or 400 with
    `UNSUPPORTED`/`DIGEST_INVALID`/`TAG_INVALID` (what registries answer to a
    kind of deletion they do not do), is `REFUSED`. Needs push access.
    """
    if reference.startswith(("sha256:", "sha512:")):
        validate_digest(reference)
        target = repository.with_digest(reference)
    elif OCI_TAG.fullmatch(reference):
        target = repository.with_tag(reference)
    else:
        raise BrokkrError(f"cannot delete {reference!r}: neither a digest nor a tag")
    with client.operation(repository.registry, f"deleting {target}"):
        # The client's request path: its login, token scopes (push), retries, limits.
        reply = await client._request(
            "DELETE",
            f"{repository.base_url}/v2/{repository.repository}/manifests/{reference}",
            ref=target,
            limit=BodyLimit.named(client.limits.small_body_bytes, "deletion answers"),
            what=f"the deletion of {target}",
            push=True,
        )
    if reply.status in (200, 202, 204):
        return Deleted.DELETED
    if reply.status == 404:
        return Deleted.MISSING
    if reply.status == 405 or (
        reply.status in _REFUSING_STATUSES and error_codes(reply) & _REFUSING_CODES
    ):
        return Deleted.REFUSED
    raise BrokkrError(f"deleting {target} failed: {status_text(reply)}; it was not removed")
