"""Every bound of the registry client, in one place.

A registry's answers are bounded before they are trusted: bodies in decoded
bytes, parsed documents in JSON values and nesting, headers in characters,
listings in pages and entries, redirects in number, and every operation in
seconds. ``Limits`` holds them all; the defaults are the constants below
(tests pass smaller ones to reach each limit quickly).
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB

MAX_MANIFEST_BYTES = 4 * MIB
"""Largest manifest or index read or pushed (distribution's own limit)."""
MAX_BLOB_BYTES = 4 * MIB
"""Largest blob read into memory (image configs); a blob must also match its descriptor size."""
MAX_JSON_VALUES = 200_000
"""Most JSON values (objects, arrays, keys, scalars) one parsed document may hold."""
MAX_SMALL_BODY_BYTES = 64 * KIB
"""Largest token response; error bodies are cut here (they only feed messages)."""
MAX_HEADER_CHARS = 16 * KIB
"""Longest ``WWW-Authenticate``/``Link``/``Location`` value parsed (all values of one name)."""
MAX_TOKEN_CHARS = 16 * KIB
"""Longest Bearer token accepted from a token service."""
MAX_TAGS = 100_000
"""Most tags one repository listing may return, over all its pages."""
MAX_TAG_PAGES = 1_000
"""Most pages one repository listing may take."""
MAX_INDEX_PLATFORMS = 64
"""Most platform manifests of one index, after duplicates and attestations are removed."""
MAX_REDIRECTS = 5
"""Most redirects followed for one request."""
DEFAULT_DEADLINE = 300.0
"""Seconds one registry operation (inspect, list tags, a publish's reads) may take in all."""
MAX_MESSAGE_CHARS = 2_000
"""Longest error message the client raises; registry text in it is cut far shorter."""
MAX_REGISTRY_TEXT = 200
"""Longest piece of registry-supplied text quoted in a message."""


@dataclass(frozen=True)
class Limits:
    """Every bound of the registry client; the defaults are the constants above.

    Tests pass small ones to exercise each limit quickly.
    """

    manifest_bytes: int = MAX_MANIFEST_BYTES
    blob_bytes: int = MAX_BLOB_BYTES
    json_values: int = MAX_JSON_VALUES
    small_body_bytes: int = MAX_SMALL_BODY_BYTES
    header_chars: int = MAX_HEADER_CHARS
    token_chars: int = MAX_TOKEN_CHARS
    tags: int = MAX_TAGS
    tag_pages: int = MAX_TAG_PAGES
    index_platforms: int = MAX_INDEX_PLATFORMS
    redirects: int = MAX_REDIRECTS
    deadline: float = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"limit {name} must be positive")


def size_text(size: int) -> str:
    """``4194304`` → ``4 MiB``; ``1500`` → ``1500 bytes``."""
    if size % MIB == 0:
        return f"{size // MIB} MiB"
    if size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} bytes"


@dataclass(frozen=True)
class BodyLimit:
    """How many decoded bytes a successful answer may have, and how to name that bound."""

    size: int
    text: str

    @classmethod
    def named(cls, size: int, name: str) -> BodyLimit:
        """``the 4 MiB limit for manifests and indexes``."""
        return cls(size, f"the {size_text(size)} limit for {name}")
