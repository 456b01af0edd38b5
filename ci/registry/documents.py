"""Registry JSON, parsed only within bounds.

A body's size in bytes does not bound what parsing it costs: 4 MiB of ``{}``
values become over a million Python objects (~+112 MiB). So before
``json.loads`` runs, one pass over the bytes counts the JSON values they can
hold (every ``{``, ``[``, ``,`` and ``:`` outside strings, plus one); a
document with more than ``Limits.json_values`` is refused unparsed. Strings
cost at most their own bytes, so with the body limits (``MAX_MANIFEST_BYTES``,
``MAX_BLOB_BYTES``) and the value limit a single answer stays well under
64 MiB of memory however it is shaped. Nesting past Python's recursion limit
is refused as well.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ci.errors import BrokkrError
from ci.registry.limits import MAX_JSON_VALUES

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def value_count(body: bytes) -> int:
    """An upper bound on the JSON values ``body`` holds (strings count as one each)."""
    structure = _STRING.sub(b'""', body)
    return (
        structure.count(b"{")
        + structure.count(b"[")
        + structure.count(b",")
        + structure.count(b":")
        + 1
    )


def parse_json(body: bytes, what: str, *, max_values: int = MAX_JSON_VALUES) -> dict[str, Any]:
    """``body`` as a JSON object, or a ``BrokkrError`` naming ``what`` was wrong with it."""
    if value_count(body) > max_values:
        raise BrokkrError(
            f"{what} holds more than {max_values} JSON values (the limit for parsed "
            "documents); refusing it"
        )
    try:
        document = json.loads(body)
    except RecursionError:
        raise BrokkrError(f"{what} is JSON nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError):
        raise BrokkrError(f"{what} is not valid JSON") from None
    if not isinstance(document, dict):
        raise BrokkrError(f"{what} is not a JSON object")
    return document
