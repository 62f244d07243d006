"""Cancellation at the worst moments: between the lease and the exchange, and at shutdown
after the request that started an exchange has gone."""

from __future__ import annotations

import anyio
import pytest

from asgi_wechat_oauth.backends import Claim, MemoryBackend
from support import CALLBACK, CountingBackend, wait_until

pytestmark = pytest.mark.anyio


class SlowClaimBackend(CountingBackend):
    """Holds the answer to the first ``claim`` after the backend granted it, until released: the
    moment a cancelled request would drop a lease it had been given. (A real Redis reply can
    arrive after its caller was cancelled; in-process the moment has to be held open.)"""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.granted = anyio.Event()
        self.release = anyio.Event()
        self._held = False

    async def claim(self, key: str) -> Claim:
        claim = await self.inner.claim(key)
        if claim.lease is not None and not self._held:
            self._held = True
            self.granted.set()
            await self.release.wait()
        return claim


async def test_request_cancelled_between_lease_and_exchange_still_trades(emulator, make_app):
    backend = SlowClaimBackend(MemoryBackend())
    middleware, client = await make_app(backend=backend)
    code = emulator.issue_code()

    first_request = anyio.CancelScope()

    async def first() -> None:
        with first_request:
            await client.get(CALLBACK, params={"code": code})

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await backend.granted.wait()
        first_request.cancel()  # the browser aborts #1 right here
        backend.release.set()

    with anyio.fail_after(5):  # far below any lease: nobody waits for a lease to expire
        second = await client.get(CALLBACK, params={"code": code})
    assert second.status_code == 200
    assert emulator.exchange_count(code) == 1


async def test_shutdown_waits_for_an_exchange_whose_request_is_gone(
    emulator, make_app, gate, gated_upstream, anyio_backend
):
    if anyio_backend == "trio":
        pytest.skip(
            "on trio the exchange runs shielded in the request's own task: it cannot be gone"
        )
    middleware, client = await make_app(http_client=gated_upstream)
    code = emulator.issue_code()
    with anyio.move_on_after(5) as scope:

        async def aborted() -> None:
            await client.get(CALLBACK, params={"code": code})

        async with anyio.create_task_group() as tg:
            tg.start_soon(aborted)
            await wait_until(lambda: gate.arrived == 1)
            tg.cancel_scope.cancel()  # the request that started the exchange is gone
    assert not scope.cancelled_caught

    async def open_soon() -> None:
        await anyio.sleep(0.05)
        gate.open()

    async with anyio.create_task_group() as tg:
        tg.start_soon(open_soon)
        await middleware.aclose()  # must wait for the exchange, not cancel it
    assert middleware.counters.exchanges == 1
    assert emulator.exchange_count(code) == 1
    assert "shutting_down" not in middleware.counters.errors
