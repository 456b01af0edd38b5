"""OCI image labels (pure): what GHCR and users read off a published image."""

import re
from collections.abc import Mapping
from datetime import datetime

from ci.errors import BrokkrError
from ci.rules.components import ComponentSpec

LICENSE = "Elastic-2.0"
"""Brokkr's license (SPDX identifier)."""

DEFAULT_SOURCE_URL = "https://github.com/colliery-io/brokkr"
"""The repository GHCR links the packages to."""

REVISION_LABEL = "org.opencontainers.image.revision"
"""The label holding the commit an image was built from."""

_URL = re.compile(r"https://[^\s\"']+")


EPOCH = "1970-01-01T00:00:00Z"
"""`created` when no commit time is given: fixed, as ko and other reproducible builders do."""


def validate_created(created: str) -> str:
    """Check `created` is an RFC 3339 timestamp (the commit time); return it, or `EPOCH`.

    The label holds the commit time rather than the wall clock, so that the
    labels of two builds of one commit are the same. (The image digest still
    differs: layer timestamps are not fixed.)
    """
    if not created:
        return EPOCH
    try:
        stamp = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None or "T" not in created:
        msg = (
            f"--created must be an RFC 3339 timestamp with a time zone, such as "
            f"2026-11-26T22:53:05Z (`git log -1 --format=%cI`); got {created!r}"
        )
        raise BrokkrError(msg)
    return created


def validate_source_url(url: str) -> str:
    """Check the repository URL GHCR links the package to."""
    if not _URL.fullmatch(url):
        msg = f"--source-url must be an https:// URL of the repository, got {url!r}"
        raise BrokkrError(msg)
    return url


def image_labels(
    spec: ComponentSpec,
    *,
    revision: str,
    version: str,
    created: str = EPOCH,
    source_url: str = DEFAULT_SOURCE_URL,
) -> Mapping[str, str]:
    """The `org.opencontainers.image.*` labels of one published image.

    `version` is the most specific tag; `created` is the commit time, or
    `EPOCH` (never the wall clock, so the labels of a commit never change
    between builds).
    """
    return {
        "org.opencontainers.image.source": source_url,
        REVISION_LABEL: revision,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.description": spec.description,
        "org.opencontainers.image.licenses": LICENSE,
    }
