"""Registry-supplied text made safe: for messages, log lines, tables and header parsing.

Text from the registry (error messages, reason phrases, media types, URLs…)
goes through ``clean`` before it reaches a message, a log line or a table;
headers that are parsed are refused past a length first (``header_values``).
"""

from __future__ import annotations

import unicodedata

import httpx

from ci.errors import BrokkrError
from ci.registry.limits import MAX_MESSAGE_CHARS, MAX_REGISTRY_TEXT


def clean(text: object, limit: int = MAX_REGISTRY_TEXT) -> str:
    """Registry-supplied text made safe for a message, a log line or a table.

    Control and format characters (newlines, ESC, bidi overrides…) become
    spaces, runs of spaces collapse, ``::`` (which starts a GitHub workflow
    command) becomes ``: :``, and the result is cut to ``limit`` characters.
    """
    raw = str(text)[: limit * 4]
    kept = [
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") else ch
        for ch in raw
    ]
    result = " ".join("".join(kept).split())
    while "::" in result:
        result = result.replace("::", ": :")
    if len(result) > limit:
        result = result[: max(limit - 1, 0)] + "…"
    return result


def markdown_cell(text: object, limit: int = MAX_REGISTRY_TEXT) -> str:
    """``clean`` text that also cannot end a Markdown table cell (``|`` escaped)."""
    return clean(text, limit).replace("\\", "\\\\").replace("|", "\\|")


def cap_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` cut to ``limit`` characters, saying that it was."""
    if len(message) <= limit:
        return message
    return message[: limit - 20] + " … (message cut)"


def header_values(headers: httpx.Headers, name: str, *, limit: int, registry: str) -> list[str]:
    """Every value of header ``name``; over ``limit`` characters in all is an error."""
    values = headers.get_list(name)
    if sum(len(v) for v in values) > limit:
        raise BrokkrError(
            f"{registry} sent a {name} header longer than {limit} characters "
            f"(the limit for parsed headers); refusing it"
        )
    return values
