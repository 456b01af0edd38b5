"""Reading an answer's body: streamed, decoded and counted against its limit.

Bodies are counted *after* decompression, so a gzip bomb stops at the same
limit as a plain body. A successful body over its limit is a ``BrokkrError``
that names the limit; error bodies (which only feed messages) are cut there
instead.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx

from ci.errors import BrokkrError
from ci.registry.limits import BodyLimit
from ci.registry.text import clean


class _Decoder:
    """Content-Encoding decoding whose output per call never exceeds what is asked."""

    def __init__(self, encoding: str | None, *, registry: str, what: str) -> None:
        codings = [c.strip().lower() for c in (encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        self.coding = codings[0] if codings else None
        if len(codings) > 1 or self.coding not in (None, "gzip", "x-gzip", "deflate"):
            raise BrokkrError(
                f"{registry} sent {what} with an unsupported Content-Encoding "
                f"{clean(encoding or '', 60)!r} (supported: gzip, deflate)"
            )
        self._zlib = None
        if self.coding is not None:
            wbits = zlib.MAX_WBITS | (16 if "gzip" in self.coding else 0)
            self._zlib = zlib.decompressobj(wbits)

    def decode(self, data: bytes, room: int) -> bytes:
        """Up to ``room`` decoded bytes of ``data`` (more input may stay unread: then full)."""
        if self._zlib is None:
            return data
        out = self._zlib.decompress(data, room)
        while self._zlib.unconsumed_tail and len(out) < room:
            more = self._zlib.decompress(self._zlib.unconsumed_tail, room - len(out))
            if not more:
                break
            out += more
        return out

    def finish(self, room: int) -> bytes:
        if self._zlib is None:
            return b""
        if self._zlib.unconsumed_tail:  # more output than room: over the limit anyway
            return b"\0" * room
        return self._zlib.flush()


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def read_body(
    response: httpx.Response, limit: BodyLimit, *, strict: bool, registry: str, what: str
) -> bytes:
    """The decoded body, at most ``limit.size`` bytes.

    Over the limit: a ``BrokkrError`` when ``strict``, else the body cut there.
    """
    declared = response.headers.get("content-length", "")
    # A declared length counts encoded bytes: only a plain body can be refused up front.
    plain = not response.headers.get("content-encoding")
    if (
        strict
        and plain
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > limit.size
    ):
        raise BrokkrError(
            f"{what} from {registry} is {declared} bytes, over {limit.text}; refusing it"
        )
    encoding = response.headers.get("content-encoding")
    if response.is_stream_consumed:  # built in memory (httpx.MockTransport), decoded already
        encoding, chunks = None, _single(response.content)
    else:
        chunks = response.aiter_raw()
    try:
        decoder = _Decoder(encoding, registry=registry, what=what)
    except BrokkrError:
        if strict:
            raise
        return b""
    body = bytearray()
    try:
        async for chunk in chunks:
            body += decoder.decode(chunk, limit.size + 1 - len(body))
            if len(body) > limit.size:
                break
        else:
            body += decoder.finish(limit.size + 1 - len(body))
    except zlib.error:
        if not strict:
            return bytes(body[: limit.size])
        raise BrokkrError(
            f"{what} from {registry} is not valid {decoder.coding} data (Content-Encoding)"
        ) from None
    if len(body) > limit.size:
        if strict:
            raise BrokkrError(f"{what} from {registry} is larger than {limit.text}; refusing it")
        del body[limit.size :]
    return bytes(body)
