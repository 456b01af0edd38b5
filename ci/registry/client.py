"""A small async client for the OCI distribution API.

It reads what publishing and inspection need — manifests and indexes (OCI and
Docker media types, digests verified), config blobs, tag lists (with ``Link``
pagination) — and writes what attaching artifacts needs: blobs and manifests.
The pieces live in their own modules (``api``, ``manifests``, ``blobs``,
``listing``, ``describe``; ``transport``, ``limits``, ``auth``…); this module
puts them together.

A broken or hostile registry cannot exhaust memory or time: every body,
header, tag list and index is bounded (``Limits``; the numbers are in
``ci.registry.limits``), every operation has one overall deadline, and every malformed
answer is a ``BrokkrError`` that names the registry and what was wrong. Text
the registry sends is cleaned before it reaches a message; passwords and
tokens never appear in messages or logs.
"""

from __future__ import annotations

from ci.registry.auth import Credentials
from ci.registry.describe import Describe, ImageDescription, PlatformDescription
from ci.registry.limits import (
    MAX_BLOB_BYTES,
    MAX_INDEX_PLATFORMS,
    MAX_MANIFEST_BYTES,
    MAX_TAG_PAGES,
    MAX_TAGS,
    Limits,
)
from ci.registry.listing import MAX_REFERRERS, Listings, next_link
from ci.registry.manifests import (
    ACCEPT_MANIFESTS,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    descriptor,
    sha256_digest,
)
from ci.registry.retry import retry_delay

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


class RegistryClient(Describe, Listings):
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
      (``Limits``; defaults in ``ci.registry.limits``).
    - ``transport``: an ``httpx.AsyncBaseTransport`` to send requests through
      (tests inject failures with one); httpx's default otherwise.
    - ``anonymous_hint``: what an anonymous caller should do when the registry
      wants a login (ends the "authentication required" error).
    - ``connect_to``: registries (``localhost:5000``, as in addresses) whose
      connections go to another ``(host, port)`` (a Dagger service's endpoint,
      ``--registry-service``). Only the connection moves (``transport.ConnectTo``):
      URLs, the ``Host`` header, auth scopes, redirects and messages keep the
      registry's own address. Only loopback registries may be moved (a
      ``ValueError`` otherwise): they are the ones spoken to in plain HTTP, as
      the engine does, and no other host's requests are ever redirected.

    Every public method is one operation under the ``limits.deadline`` (unless
    an enclosing ``operation`` block set a sooner one) and raises only
    ``BrokkrError``.
    """
