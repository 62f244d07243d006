"""The one-timer bound on the Redis backend's calls (asyncio only, like the backend): each
block ends with TimeoutError at its own deadline, blocks that finish in time are untouched, and
a cancellation from outside stays a cancellation."""

from __future__ import annotations

import asyncio
import sys

import pytest

from asgi_wechat_oauth.backends._deadlines import Deadlines

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 uses anyio's cancel scope"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _timed(deadlines: Deadlines, hold: float) -> tuple[str, float]:
    """Hold a block for ``hold`` seconds: how it ended, and after how long."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        with deadlines:
            await asyncio.sleep(hold)
    except TimeoutError:
        return "timeout", loop.time() - start
    return "done", loop.time() - start


async def test_a_block_past_its_deadline_raises_timeout_error_at_the_deadline() -> None:
    outcome, took = await _timed(Deadlines(0.2), hold=5)
    assert outcome == "timeout"
    assert 0.19 <= took < 1.0
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_block_that_ends_in_time_is_untouched_and_the_timer_stops() -> None:
    deadlines = Deadlines(0.2)
    assert await _timed(deadlines, hold=0.01) == ("done", pytest.approx(0.01, abs=0.1))
    await asyncio.sleep(0.3)  # the timer fires once, finds nothing, and is not re-armed
    assert deadlines._timer is None and not deadlines._calls


async def test_staggered_blocks_each_end_at_their_own_deadline() -> None:
    """One timer for many blocks: started 50 ms apart, each still gets its full timeout, and
    the short ones among them finish normally."""
    deadlines = Deadlines(0.3)

    async def later(delay: float, hold: float) -> tuple[str, float]:
        await asyncio.sleep(delay)
        return await _timed(deadlines, hold)

    holds = [5, 0.05, 5, 0.1, 5, 5, 0.02, 5]
    results = await asyncio.gather(*(later(i * 0.05, h) for i, h in enumerate(holds)))
    for hold, (outcome, took) in zip(holds, results, strict=True):
        if hold < 0.3:
            assert outcome == "done" and took < 0.3
        else:
            assert outcome == "timeout" and 0.29 <= took < 1.0
    assert not deadlines._calls and not deadlines._expired


async def test_a_shorter_timeout_set_later_is_kept_too() -> None:
    deadlines = Deadlines(5.0)
    long = asyncio.ensure_future(_timed(deadlines, hold=0.5))
    await asyncio.sleep(0.01)
    deadlines.timeout = 0.1  # the timer armed for the 5 s block must not delay this one
    outcome, took = await _timed(deadlines, hold=5)
    assert outcome == "timeout" and took < 1.0
    assert await long == ("done", pytest.approx(0.5, abs=0.3))


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines(5.0)
    task = asyncio.ensure_future(_timed(deadlines, hold=5))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._calls


async def test_a_cancellation_at_the_deadline_is_not_turned_into_a_timeout() -> None:
    """The outside cancel arrives while the block is being cancelled for its deadline: the
    task must still end cancelled (as asyncio.timeout() does), not carry on after a
    TimeoutError."""
    deadlines = Deadlines(0.1)
    entered = asyncio.Event()

    async def block() -> None:
        with deadlines:
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.ensure_future(block())
    await entered.wait()
    # Each loop iteration, until the timer has cancelled it for its deadline; then cancel it
    # too, before it runs again (its wake-up is queued behind this one).
    while task not in deadlines._expired:
        assert not task.done()
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_timeouts_inside_a_task_group_leave_its_cancellation_count_alone() -> None:
    """After a TimeoutError, the task's cancel requests are back to what they were: a
    TaskGroup around it goes on normally."""
    deadlines = Deadlines(0.05)
    async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
        first = group.create_task(_timed(deadlines, hold=5))
        second = group.create_task(_timed(deadlines, hold=0.01))
    assert first.result()[0] == "timeout"
    assert second.result()[0] == "done"
