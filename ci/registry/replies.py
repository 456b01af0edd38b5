"""A complete, bounded answer from a registry, and the registry's own words in it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from ci.registry.text import clean


@dataclass(frozen=True)
class Reply:
    """A complete, bounded answer: status, headers, decoded body, final URL."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


def status_text(reply: Reply) -> str:
    """``HTTP 404 Not Found (manifest unknown)``: the status and the registry's own words."""
    text = f"HTTP {reply.status}"
    if reply.reason:
        text += f" {reply.reason}"
    detail = registry_errors(reply)
    return f"{text} ({detail})" if detail else text


MAX_ERRORS_QUOTED = 3
"""How many of a registry's ``errors[]`` a message quotes."""


def registry_errors(reply: Reply) -> str:
    """The registry's own error text (``errors[].message``), cleaned and bounded, or ''."""
    errors = _error_list(reply)
    messages = []
    for error in errors:
        text = clean(error.get("message") or error.get("code") or "", 150)
        if text:
            messages.append(text)
    if len(messages) > MAX_ERRORS_QUOTED:
        extra = len(messages) - MAX_ERRORS_QUOTED
        messages = [*messages[:MAX_ERRORS_QUOTED], f"and {extra} more"]
    return "; ".join(messages)


def error_codes(reply: Reply) -> set[str]:
    """The ``errors[].code`` values of an error body."""
    return {str(e.get("code"))[:64] for e in _error_list(reply)}


def _error_list(reply: Reply) -> list[dict[str, object]]:
    try:
        document = json.loads(reply.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return []
    if not isinstance(document, dict) or not isinstance(document.get("errors"), list):
        return []
    return [e for e in document["errors"] if isinstance(e, dict)]
