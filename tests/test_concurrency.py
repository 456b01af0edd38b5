"""`ci.concurrency.run_all`: every job runs to its end, every failure reaches the user in
one `BrokkrError`, and a bug in our own code surfaces as itself."""

import anyio
import pytest

from ci.concurrency import run_all
from ci.errors import BrokkrError


def fails(message: str, *, after: float = 0.0):
    async def job() -> None:
        await anyio.sleep(after)
        raise BrokkrError(message)

    return job


def finishes(done: list[str], name: str, *, after: float = 0.0, result: object = None):
    async def job() -> object:
        await anyio.sleep(after)
        done.append(name)
        return result

    return job


async def test_results_come_back_in_the_jobs_order() -> None:
    done: list[str] = []
    jobs = [finishes(done, "slow", after=0.05, result=1), finishes(done, "fast", result=2)]
    assert await run_all(jobs) == [1, 2]
    assert done == ["fast", "slow"]  # they ran concurrently


async def test_every_failure_is_named_in_one_error_in_the_jobs_order() -> None:
    done: list[str] = []
    jobs = [
        fails("broker: the registry said no", after=0.05),
        finishes(done, "agent"),
        fails("ui: the build failed"),
    ]
    with pytest.raises(BrokkrError) as caught:
        await run_all(jobs)
    assert type(caught.value) is BrokkrError  # not an ExceptionGroup, not wrapped
    assert str(caught.value) == "broker: the registry said no; ui: the build failed"
    assert done == ["agent"]


async def test_a_message_repeated_word_for_word_is_said_once() -> None:
    with pytest.raises(BrokkrError) as caught:
        await run_all([fails("the deadline passed"), fails("the deadline passed")])
    assert str(caught.value) == "the deadline passed"


async def test_one_failure_is_raised_as_itself() -> None:
    error = BrokkrError("only this one")

    async def job() -> None:
        raise error

    with pytest.raises(BrokkrError) as caught:
        await run_all([job, finishes([], "other")])
    assert caught.value is error


async def test_a_failure_does_not_cancel_the_others_all_are_waited_for() -> None:
    done: list[str] = []
    jobs = [fails("first", after=0.0), finishes(done, "a", after=0.05), finishes(done, "b")]
    with pytest.raises(BrokkrError, match=r"^first$"):
        await run_all(jobs)
    assert sorted(done) == ["a", "b"]


async def test_a_bug_propagates_as_itself_not_as_a_user_error() -> None:
    done: list[str] = []

    async def bug() -> None:
        await anyio.sleep(0.01)
        {}["missing"]  # our own mistake: a KeyError

    jobs = [fails("a registry problem"), bug, finishes(done, "slow", after=0.05)]
    with pytest.raises(KeyError) as caught:
        await run_all(jobs)
    assert not isinstance(caught.value, BrokkrError)
    assert done == ["slow"]  # the bug did not stop the others either


async def test_the_limit_caps_how_many_jobs_run_at_once() -> None:
    running = 0
    most = 0

    async def job() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(0.01)
        running -= 1

    await run_all([job] * 8, limit=3)
    assert most == 3


async def test_an_outer_deadline_cancels_the_jobs_without_an_error() -> None:
    done: list[str] = []
    with anyio.move_on_after(0.05) as scope:
        await run_all([finishes(done, "never", after=10), finishes(done, "quick")])
    assert scope.cancelled_caught
    assert done == ["quick"]


async def test_no_jobs_is_no_work() -> None:
    assert await run_all([]) == []
