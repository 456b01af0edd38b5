"""Which failures are worth another attempt, and how long to wait before it.

Only transient failures are retried: a connection that could not be made or
was dropped before any byte of the answer arrived, a timeout, and the statuses
408, 429, 500, 502, 503 and 504. A broken protocol, an unsupported scheme and
any other 4xx are not. Waits grow exponentially; ``Retry-After`` can lengthen
one, never past the caller's maximum.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Answers retried like a dropped connection."""


def retry_delay(
    failures: int, *, backoff: float, max_delay: float, retry_after: str | None = None
) -> float:
    """Seconds to wait after the ``failures``-th failed attempt.

    Exponential (``backoff``, ``2 * backoff``, ``4 * backoff``…); a ``Retry-After``
    header (ASCII seconds or an HTTP date) can lengthen it, anything else in it
    is ignored. Never more than ``max_delay``.
    """
    delay = backoff * 2 ** min(max(failures - 1, 0), 32)
    requested = _retry_after_seconds(retry_after) if retry_after else None
    if requested is not None:
        delay = max(delay, requested)
    return max(0.0, min(delay, max_delay))


def _retry_after_seconds(value: str) -> float | None:
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (when - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
