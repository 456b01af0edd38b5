"""Fan-out for the whole package: run jobs concurrently, wait for all, report every failure.

Rule: imports only `ci.errors` (and anyio); every layer may import it. Every
fan-out in `ci/` goes through `run_all`, so a user sees one `BrokkrError`
naming every failure, never an `ExceptionGroup` ("unhandled errors in a
TaskGroup") and never only the first of several failures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

import anyio

from ci.errors import BrokkrError

T = TypeVar("T")

Job = Callable[[], Awaitable[T]]
"""One unit of work: called once, awaited once."""


async def run_all(jobs: Sequence[Job[T]], *, limit: int | None = None) -> list[T]:
    """Run every job concurrently (at most `limit` at once) and wait for all of them.

    Returns the jobs' results in the jobs' order. A job that raises does not
    stop the others. Once all have finished:

    - an exception that is not a `BrokkrError` (a bug in our code) is re-raised
      as itself, the first one in the jobs' order, so it is never disguised as
      a user-facing problem;
    - otherwise one `BrokkrError` failed the run: it is re-raised as itself;
    - otherwise several did: one `BrokkrError` names each of them, in the
      jobs' order, joined by `; ` (a message repeated word for word once).

    Cancellation (an outer deadline) is not a failure: it propagates as anyio
    delivers it.
    """
    results: list[T | None] = [None] * len(jobs)
    errors: list[Exception | None] = [None] * len(jobs)
    limiter = anyio.CapacityLimiter(limit) if limit is not None else None

    async def run(index: int, job: Job[T]) -> None:
        try:
            if limiter is None:
                results[index] = await job()
            else:
                async with limiter:
                    results[index] = await job()
        except Exception as e:  # collected and raised below, outside the task group
            errors[index] = e

    async with anyio.create_task_group() as tg:
        for index, job in enumerate(jobs):
            tg.start_soon(run, index, job)

    failures = [e for e in errors if e is not None]
    if bugs := [e for e in failures if not isinstance(e, BrokkrError)]:
        raise bugs[0]
    if len(failures) == 1:
        raise failures[0]
    if failures:
        messages = list(dict.fromkeys(str(e) for e in failures))
        raise BrokkrError("; ".join(messages))
    return cast(list[T], results)  # every job returned
