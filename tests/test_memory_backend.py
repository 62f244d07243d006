"""MemoryBackend: the claim/complete/wait/recover contract, TTLs, and bounded memory."""

from __future__ import annotations

import logging

import anyio
import pytest

from asgi_wechat_oauth import AccessToken, WeChatIdentity
from asgi_wechat_oauth.backends import Backend, Claim, MemoryBackend
from asgi_wechat_oauth.errors import CodeRejected, ServiceUnavailable, UpstreamError
from support import CALLBACK, CountingBackend, wait_until

pytestmark = pytest.mark.anyio

IDENTITY = WeChatIdentity.from_token(AccessToken("oOpen", "snsapi_base", "a", "r"))
INVALID = CodeRejected("code_invalid", "invalid", errcode=40029)
BUSY = UpstreamError("upstream_busy", "busy", errcode=-1)


def test_memory_backend_is_a_backend():
    backend = MemoryBackend(max_entries=7)
    assert isinstance(backend, Backend)
    assert backend.lease_ttl == 0.0
    assert repr(backend) == "MemoryBackend(max_entries=7)"


async def test_first_claim_leads_and_the_next_waits():
    backend = MemoryBackend()
    lead = await backend.claim("k")
    assert lead.lease is not None and lead.outcome is None
    wait = await backend.claim("k")
    assert wait.lease is None and wait.outcome is None
    assert backend.in_flight == 1


async def test_complete_wakes_waiters_and_stores_the_outcome():
    backend = CountingBackend(MemoryBackend())
    lease = (await backend.claim("k")).lease
    got: list[object] = []

    async def waiter() -> None:
        got.append(await backend.wait("k", timeout=10))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(waiter)
        await wait_until(lambda: backend.waiting == 3)
        await backend.complete("k", lease, IDENTITY, ttl=60)

    assert got == [IDENTITY] * 3
    assert (backend.in_flight, backend.stored) == (0, 1)
    assert (await backend.claim("k")).outcome == IDENTITY


async def test_ttl_zero_wakes_waiters_but_stores_nothing():
    backend = CountingBackend(MemoryBackend())
    lease = (await backend.claim("k")).lease
    async with anyio.create_task_group() as tg:
        got: list[object] = []

        async def waiter() -> None:
            got.append(await backend.wait("k", timeout=10))

        tg.start_soon(waiter)
        await wait_until(lambda: backend.waiting == 1)
        await backend.complete("k", lease, BUSY, ttl=0)
    assert got == [BUSY]
    assert (backend.in_flight, backend.stored) == (0, 0)
    assert (await backend.claim("k")).lease is not None  # the next request tries again


async def test_complete_with_another_lease_stores_but_keeps_the_flight():
    backend = MemoryBackend()
    lease = (await backend.claim("k")).lease
    await backend.complete("k", "someone-else", IDENTITY, ttl=60)
    assert (backend.in_flight, backend.stored) == (1, 1)
    assert await backend.recover("k", timeout=1) == IDENTITY
    await backend.complete("k", lease, INVALID, ttl=60)
    assert backend.in_flight == 0
    assert (await backend.claim("k")).outcome == IDENTITY  # the first stored result stays


async def test_wait_without_a_flight_returns_the_stored_outcome_or_none():
    backend = MemoryBackend()
    assert await backend.wait("k", timeout=1) is None
    lease = (await backend.claim("k")).lease
    await backend.complete("k", lease, INVALID, ttl=60)
    assert await backend.wait("k", timeout=1) == INVALID


async def test_wait_timeout_returns_none_and_leaves_the_flight():
    backend = MemoryBackend()
    await backend.claim("k")
    assert await backend.wait("k", timeout=0.01) is None
    assert backend.in_flight == 1


async def test_recover_returns_only_a_stored_outcome():
    backend = MemoryBackend()
    assert await backend.recover("k", timeout=1) is None
    await backend.claim("k")
    assert await backend.recover("k", timeout=1) is None  # in flight is not a result


async def test_results_expire_after_their_ttl():
    backend = MemoryBackend()
    lease = (await backend.claim("k")).lease
    await backend.complete("k", lease, IDENTITY, ttl=0.02)
    assert (await backend.claim("k")).outcome == IDENTITY
    await anyio.sleep(0.05)  # longer than the ttl
    assert await backend.recover("k", timeout=1) is None
    assert (await backend.claim("k")).lease is not None


async def test_least_recently_used_result_is_dropped_first():
    backend = MemoryBackend(max_entries=2)
    for key in ("a", "b"):
        await backend.complete(key, (await backend.claim(key)).lease, IDENTITY, ttl=60)
    assert (await backend.claim("a")).outcome == IDENTITY  # "a" is now the most recent
    await backend.complete("c", (await backend.claim("c")).lease, IDENTITY, ttl=60)
    assert backend.stored == 2
    assert await backend.recover("a", timeout=1) == IDENTITY
    assert await backend.recover("b", timeout=1) is None
    assert await backend.recover("c", timeout=1) == IDENTITY


async def test_full_in_flight_map_refuses_new_codes_but_serves_running_ones():
    backend = CountingBackend(MemoryBackend(max_entries=1))
    lease = (await backend.claim("running")).lease
    with pytest.raises(ServiceUnavailable) as exc:
        await backend.claim("new")
    assert (exc.value.reason, exc.value.status_code) == ("overloaded", 503)
    assert (await backend.claim("running")).lease is None  # a duplicate still waits
    got: list[object] = []
    async with anyio.create_task_group() as tg:

        async def waiter() -> None:
            got.append(await backend.wait("running", timeout=10))

        tg.start_soon(waiter)
        await wait_until(lambda: backend.waiting == 1)
        await backend.complete("running", lease, IDENTITY, ttl=60)
    assert got == [IDENTITY]
    assert (await backend.claim("new")).lease is not None  # room again


async def test_a_flood_of_errors_does_not_push_out_results():
    backend = MemoryBackend(max_entries=3, max_errors=2)
    assert repr(backend) == "MemoryBackend(max_entries=3)"
    for key in ("a", "b"):
        await backend.complete(key, (await backend.claim(key)).lease, IDENTITY, ttl=60)
    for i in range(10):
        key = f"bad{i}"
        await backend.complete(key, (await backend.claim(key)).lease, INVALID, ttl=60)
    assert backend.stored == 4  # 2 results, and the 2 newest errors
    assert [await backend.recover(k, timeout=1) for k in ("a", "b")] == [IDENTITY] * 2
    assert await backend.recover("bad9", timeout=1) == INVALID
    assert await backend.recover("bad7", timeout=1) is None


def test_max_errors_must_be_positive():
    with pytest.raises(ValueError, match="max_errors"):
        MemoryBackend(max_errors=0)


async def test_peek_answers_without_a_lease():
    backend = MemoryBackend()
    key = "ab" * 32  # a hex digest, as the middleware's keys are
    assert backend.peek(key) is None
    lease = (await backend.claim(key)).lease
    assert lease is not None
    assert backend.peek(key) == Claim()  # in flight here: wait for it
    assert backend.in_flight == 1  # peeking took nothing
    await backend.complete(key, lease, IDENTITY, ttl=60)
    assert backend.peek(key) == Claim(outcome=IDENTITY)
    assert backend.peek("cd" * 32) is None
    odd = "z" * 64  # 64 characters, not hex: kept as it is
    await backend.complete(odd, (await backend.claim(odd)).lease, INVALID, ttl=60)
    assert backend.peek(odd) == Claim(outcome=INVALID)


async def test_aclose_drops_stored_results():
    backend = MemoryBackend()
    await backend.complete("k", (await backend.claim("k")).lease, IDENTITY, ttl=60)
    await backend.aclose()
    assert backend.stored == 0


async def test_100k_definitive_results_stay_bounded():
    backend = MemoryBackend(max_entries=10_000)
    assert backend.max_errors == 1000  # errors: a tenth of max_entries unless told
    for i in range(100_000):
        key = f"{i:064x}"
        claim = await backend.claim(key)
        assert claim.lease is not None
        await backend.complete(key, claim.lease, INVALID, ttl=120)
        if i % 997 == 0:
            assert backend.stored <= 1000
            assert backend.in_flight == 0
    assert backend.stored == 1000
    assert backend.in_flight == 0
    assert (await backend.claim(f"{99_999:064x}")).outcome == INVALID  # the newest kept


# --- through the middleware ---------------------------------------------------------------------


async def test_flood_of_invalid_codes_through_http_stays_bounded(emulator, make_app, caplog):
    caplog.set_level(logging.ERROR, logger="asgi_wechat_oauth")  # 300 warnings are not the point
    backend = MemoryBackend(max_entries=500, max_errors=50)
    middleware, client = await make_app(backend=backend)
    for i in range(300):
        response = await client.get(f"{CALLBACK}?code=flood{i:05d}")
        assert response.status_code == 400
        assert response.json()["error"] == "code_invalid"
        assert backend.stored <= 50
        assert backend.in_flight == 0
    assert emulator.total_exchanges == 300
    assert backend.stored == 50


async def test_in_flight_bound_answers_503_without_exchange(
    emulator, make_app, gate, gated_upstream
):
    backend = MemoryBackend(max_entries=2)
    middleware, client = await make_app(backend=backend, http_client=gated_upstream)
    codes = [emulator.issue_code() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for code in codes[:2]:
            tg.start_soon(client.get, f"{CALLBACK}?code={code}")
        await wait_until(lambda: backend.in_flight == 2)  # both held at the gate
        third = await client.get(f"{CALLBACK}?code={codes[2]}")
        gate.open()
    assert third.status_code == 503
    assert third.json() == {
        "error": "overloaded",
        "message": "Too many logins in progress; try again.",
    }
    assert emulator.exchange_count(codes[2]) == 0
    assert [emulator.exchange_count(c) for c in codes[:2]] == [1, 1]
    assert middleware.counters.errors == {"overloaded": 1}
    assert backend.in_flight == 0


@pytest.mark.parametrize("outcome", [IDENTITY, INVALID], ids=["result", "error"])
async def test_forget_drops_a_stored_outcome_under_a_hashed_key(outcome):
    # Hashed keys are held as raw bytes, results and errors in two caches: forget finds both.
    backend = MemoryBackend()
    key = "ab" * 32
    lead = await backend.claim(key)
    assert lead.lease is not None
    await backend.complete(key, lead.lease, outcome, ttl=60)
    assert not await backend.forget(key, only_if=lambda stored: stored is not outcome)
    assert backend.peek(key) == Claim(outcome=outcome)
    assert await backend.forget(key, only_if=lambda stored: stored is outcome)
    assert backend.peek(key) is None and backend.stored == 0
    assert (await backend.claim(key)).lease is not None  # the next claim leads again
