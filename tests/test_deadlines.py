"""The one-timer bound on the Redis backend's calls (asyncio only, like the backend): each
block ends with TimeoutError at its own deadline, blocks that finish in time are untouched, and
a cancellation from outside stays a cancellation. Also the cases a review found unbounded: a
due timer replaced by a later one, a timer left on a loop that stopped, entries of that loop,
and a block closed by the garbage collector while another task runs."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import weakref

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
        with deadlines.bound():
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
        with deadlines.bound():
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


async def test_a_busy_loop_that_enters_a_block_after_a_deadline_does_not_postpone_it() -> None:
    """The loop is blocked past the first block's deadline; a second block starts before the
    timer has run. The first must still end at once, not a full timeout later."""
    deadlines = Deadlines(0.2)

    async def late_step() -> None:
        await asyncio.sleep(0.1)
        time.sleep(0.15)  # a slow step: the loop is stuck past the first deadline
        with deadlines.bound():
            await asyncio.sleep(0.01)

    step = asyncio.ensure_future(late_step())
    outcome, took = await _timed(deadlines, hold=5)
    await step
    assert outcome == "timeout" and took < 0.35


def test_a_timer_left_on_a_stopped_loop_does_not_leave_the_next_loop_unbounded() -> None:
    deadlines = Deadlines(0.3)

    async def quick() -> None:
        with deadlines.bound():
            await asyncio.sleep(0.01)  # the timer stays armed on this loop, which then ends

    asyncio.run(quick())
    outcome, took = asyncio.run(_timed(deadlines, hold=3))
    assert outcome == "timeout" and took < 1.0


def test_blocks_of_a_stopped_loop_are_dropped_once_the_timer_runs_elsewhere() -> None:
    deadlines = Deadlines(0.05)

    async def blocked() -> None:
        with deadlines.bound():
            await asyncio.sleep(10)

    loop = asyncio.new_event_loop()
    task = loop.create_task(blocked())
    timer = None

    def stop_when_the_timer_fires() -> None:
        nonlocal timer
        timer = deadlines._timer
        assert timer is not None
        loop.call_at(timer.when(), loop.stop)  # stops in the iteration the timer runs

    loop.call_soon(stop_when_the_timer_fires)
    loop.run_forever()
    assert task in deadlines._expired and not task.done()
    loop.close()
    gone = weakref.ref(task)
    del task

    async def later() -> None:
        for _ in range(3):
            await _timed(deadlines, hold=1)

    asyncio.run(later())
    gc.collect()
    assert gone() is None
    assert not deadlines._calls and not deadlines._expired


def test_a_block_closed_by_the_garbage_collector_leaves_other_blocks_bounded() -> None:
    """A task abandoned inside a block on a closed loop: when the collector closes its
    coroutine during another task's block, that other block keeps its deadline."""
    deadlines = Deadlines(0.3)

    async def abandoned() -> None:
        with deadlines.bound():
            await asyncio.sleep(100)

    loop = asyncio.new_event_loop()
    task = loop.create_task(abandoned())
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    del task  # a cycle with its future: freed by the collector only
    gc.disable()
    try:

        async def main() -> tuple[str, float]:
            loop = asyncio.get_running_loop()
            start = loop.time()
            try:
                with deadlines.bound():
                    gc.collect()  # closes the abandoned coroutine here, in this task
                    await asyncio.sleep(3)
            except TimeoutError:
                return "timeout", loop.time() - start
            return "done", loop.time() - start

        outcome, took = asyncio.run(main())
    finally:
        gc.enable()
    assert outcome == "timeout" and took < 1.0


async def test_blocks_do_not_nest() -> None:
    deadlines = Deadlines(1.0)
    with deadlines.bound(), pytest.raises(RuntimeError, match="nest"), deadlines.bound():
        pass
