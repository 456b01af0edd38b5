"""One overall deadline per registry operation.

Every operation (an inspection, a tag listing, a publish's registry reads)
has one deadline. It covers connecting, every read, informational ``1xx``
answers, redirects and the waits between retries, so a server that trickles
bytes or sends ``102 Processing`` forever cannot extend it; the per-read
``timeout`` of the client is a second, shorter bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from ci.errors import BrokkrError


@dataclass(frozen=True)
class _Deadline:
    at: float
    started: float
    seconds: float
    registry: str
    doing: str

    def expired(self) -> BrokkrError:
        spent = time.monotonic() - self.started
        return BrokkrError(
            f"registry {self.registry} took too long: {self.doing} did not finish within the "
            f"{self.seconds:g} s deadline (gave up after {spent:.1f} s)"
        )


_DEADLINE: ContextVar[_Deadline | None] = ContextVar("brokkr_registry_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float, *, registry: str, doing: str) -> Iterator[None]:
    """Bound everything the registry client does inside the block to ``seconds`` in all.

    An enclosing deadline that ends sooner stays in force. Tasks started inside
    the block (``ci.concurrency.run_all``) inherit it.
    """
    now = time.monotonic()
    current = _DEADLINE.get()
    if current is not None and current.at <= now + seconds:
        yield
        return
    token = _DEADLINE.set(_Deadline(now + seconds, now, seconds, registry, doing))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


T = TypeVar("T")


async def bounded(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` within the current deadline (if any)."""
    current = _DEADLINE.get()
    if current is None:
        return await awaitable
    remaining = current.at - time.monotonic()
    if remaining <= 0:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise current.expired()
    timeout = asyncio.timeout(remaining)
    try:
        async with timeout:
            return await awaitable
    except TimeoutError:
        if timeout.expired():
            raise current.expired() from None
        raise
