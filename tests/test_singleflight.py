"""One exchange per code: concurrent duplicates wait, late ones hit the cache, aborts are survived,
and a code another worker traded is recovered."""

from __future__ import annotations

import dataclasses

import anyio
import httpx
import pytest

from asgi_wechat_oauth import WeChatIdentity, WeChatOAuthClient
from asgi_wechat_oauth.backends import MemoryBackend, Outcome
from asgi_wechat_oauth.errors import CodeRejected, WeChatOAuthError
from asgi_wechat_oauth.testing import Fault, double_callback
from support import (
    CALLBACK,
    WECHAT_URL,
    CountingBackend,
    call_asgi,
    code_key,
    get_all,
    http_scope,
    wait_until,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("n", [2, 10, 100])
async def test_concurrent_duplicates_share_one_exchange(
    n, emulator, make_app, gate, gated_upstream
):
    backend = CountingBackend(MemoryBackend())
    middleware, client = await make_app(backend=backend, http_client=gated_upstream)
    code = emulator.issue_code("snsapi_userinfo")
    url = f"{CALLBACK}?code={code}&state=s"

    async with anyio.create_task_group() as tg:
        results: list[httpx.Response] = []

        async def one() -> None:
            results.append(await client.get(url))

        for _ in range(n):
            tg.start_soon(one)
        # The leader is held at the gate until every duplicate is parked on its flight.
        await wait_until(lambda: gate.arrived == 1 and middleware.counters.waiting == n - 1)
        gate.open()

    assert [r.status_code for r in results] == [200] * n
    assert {r.json()["openid"] for r in results} == {emulator.user.openid}
    assert emulator.exchange_count(code) == 1
    assert emulator.calls["userinfo"] == 1
    assert middleware.counters.exchanges == 1
    assert middleware.counters.deduplicated == n - 1
    assert middleware.counters.cache_hits == 0
    assert middleware.counters.waiting == 0
    # The followers waited on the leader's own flight, with no call to the backend each.
    assert backend.waits == 0


class KeepsAnEarlierIdentity(MemoryBackend):
    """Answers a stored error with an identity it kept from before, as Redis does when
    another worker stored the code's identity before this leader's 40029/40163."""

    def __init__(self, kept: WeChatIdentity) -> None:
        super().__init__()
        self.kept = kept

    async def complete(
        self, key: str, lease: str, outcome: Outcome, *, ttl: float
    ) -> Outcome | None:
        await super().complete(key, lease, outcome, ttl=ttl)
        return self.kept if ttl > 0 and isinstance(outcome, WeChatOAuthError) else None


async def test_followers_here_get_what_the_backend_kept_over_a_stored_error(
    emulator, make_app, gate, gated_upstream
):
    kept = WeChatIdentity(
        openid="o-kept", scope="snsapi_base", access_token="A", refresh_token="R", state="s"
    )
    middleware, client = await make_app(
        backend=KeepsAnEarlierIdentity(kept), http_client=gated_upstream
    )
    url = f"{CALLBACK}?code=madeupcode1&state=s"
    responses: dict[int, httpx.Response] = {}

    async def one(i: int) -> None:
        responses[i] = await client.get(url)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0)
        await wait_until(lambda: gate.arrived == 1)  # request 0 leads
        for i in (1, 2):
            tg.start_soon(one, i)
        await wait_until(lambda: middleware.counters.waiting == 2)
        gate.open()
    assert responses[0].json()["error"] == "code_invalid"  # the leader's own answer
    assert [responses[i].json()["openid"] for i in (1, 2)] == ["o-kept", "o-kept"]


async def test_overlapping_duplicates_with_latency_share_one_exchange(emulator, make_app):
    # The natural overlap, without the gate: WeChat takes a while to answer.
    emulator.latency = 0.05
    middleware, client = await make_app()
    code = emulator.issue_code("snsapi_userinfo")
    responses = await get_all(client, [f"{CALLBACK}?code={code}"] * 10)
    assert [r.status_code for r in responses] == [200] * 10
    assert {r.json()["nickname"] for r in responses} == {emulator.user.nickname}
    assert emulator.exchange_count(code) == 1
    assert emulator.calls["userinfo"] == 1
    assert middleware.counters.deduplicated + middleware.counters.cache_hits == 9


async def test_concurrent_waiters_share_the_leaders_error(emulator, make_app, gate, gated_upstream):
    n = 10
    backend = CountingBackend(MemoryBackend())
    middleware, client = await make_app(backend=backend, http_client=gated_upstream)
    emulator.inject_fault(Fault.HTTP_502)
    code = emulator.issue_code()

    async with anyio.create_task_group() as tg:
        results: list[httpx.Response] = []

        async def one() -> None:
            results.append(await client.get(f"{CALLBACK}?code={code}"))

        for _ in range(n):
            tg.start_soon(one)
        await wait_until(lambda: gate.arrived == 1 and middleware.counters.waiting == n - 1)
        gate.open()

    assert [r.status_code for r in results] == [502] * n
    assert {r.json()["error"] for r in results} == {"upstream_unavailable"}
    assert emulator.exchange_count(code) == 1
    assert middleware.counters.errors["upstream_unavailable"] == n


async def test_late_duplicate_is_served_from_the_cache(emulator, make_app):
    middleware, client = await make_app()
    code = emulator.issue_code("snsapi_userinfo")
    first = await client.get(f"{CALLBACK}?code={code}")
    again = await client.get(f"{CALLBACK}?code={code}")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert emulator.exchange_count(code) == 1
    assert emulator.calls["userinfo"] == 1
    assert middleware.counters.cache_hits == 1


async def test_result_ttl_is_honoured_then_the_code_is_burned(emulator, make_app):
    middleware, client = await make_app(result_ttl=0.05)
    code = emulator.issue_code()
    assert (await client.get(f"{CALLBACK}?code={code}")).status_code == 200
    await anyio.sleep(0.1)  # longer than result_ttl: the stored result has expired
    late = await client.get(f"{CALLBACK}?code={code}")
    assert late.status_code == 400
    assert late.json()["error"] in ("code_used", "code_invalid")
    assert emulator.exchange_count(code) == 2
    assert middleware.counters.cache_hits == 0


@pytest.mark.parametrize(
    ("fault", "count", "reason"),
    [
        (Fault.HTTP_500, 1, "upstream_unavailable"),
        (Fault.HTTP_502, 1, "upstream_unavailable"),
        (Fault.BUSY, 2, "upstream_busy"),
    ],
)
async def test_transient_failure_is_not_cached(emulator, make_app, fault, count, reason):
    middleware, client = await make_app()
    emulator.inject_fault(fault, count=count)
    code = emulator.issue_code()
    failed = await client.get(f"{CALLBACK}?code={code}")
    assert failed.status_code == 502
    assert failed.json()["error"] == reason
    # These faults happen before WeChat uses the code, so trying again must work.
    retried = await client.get(f"{CALLBACK}?code={code}")
    assert retried.status_code == 200
    assert retried.json()["openid"] == emulator.user.openid
    assert middleware.counters.cache_hits == 0
    assert middleware.counters.exchanges == 2


async def test_definitive_error_is_cached(emulator, make_app):
    middleware, client = await make_app()
    code = "unknowncode0123456789"  # never issued: WeChat answers 40029
    first = await client.get(f"{CALLBACK}?code={code}")
    again = await client.get(f"{CALLBACK}?code={code}")
    assert first.status_code == again.status_code == 400
    assert first.json() == again.json()
    assert first.json()["error"] == "code_invalid"
    assert emulator.exchange_count(code) == 1
    assert middleware.counters.cache_hits == 1


async def test_expired_code_error_is_cached(emulator, make_app):
    middleware, client = await make_app()
    code = emulator.issue_code()
    emulator.expire_code(code)
    for _ in range(2):
        response = await client.get(f"{CALLBACK}?code={code}")
        assert response.status_code == 400
        assert response.json()["error"] == "code_expired"
    assert emulator.exchange_count(code) == 1


async def test_aborted_first_callback_does_not_lose_the_login(emulator, make_app):
    emulator.latency = 0.05
    middleware, client = await make_app()
    code = emulator.issue_code("snsapi_userinfo")
    second = await double_callback(
        client, f"{CALLBACK}?code={code}&state=abc", abort_after=0.01, gap=0.019
    )
    assert second.status_code == 200
    assert second.json()["openid"] == emulator.user.openid
    assert second.json()["nickname"] == emulator.user.nickname
    assert second.json()["state"] == "abc"
    assert emulator.exchange_count(code) == 1


async def test_cancelled_only_request_still_completes_the_exchange(emulator, make_app):
    emulator.latency = 0.05
    middleware, client = await make_app()
    code = emulator.issue_code()

    async with anyio.create_task_group() as tg:

        async def doomed() -> None:
            await client.get(f"{CALLBACK}?code={code}")

        tg.start_soon(doomed)
        await wait_until(lambda: emulator.calls["access_token"] >= 1)  # mid-exchange
        tg.cancel_scope.cancel()

    await wait_until(lambda: middleware.counters.exchanges == 1 and middleware.backend.stored == 1)
    response = await client.get(f"{CALLBACK}?code={code}")
    assert response.status_code == 200
    assert response.json()["openid"] == emulator.user.openid
    assert emulator.exchange_count(code) == 1
    assert middleware.counters.cache_hits == 1


async def test_cancelled_waiter_does_not_disturb_the_flight(
    emulator, make_app, gate, gated_upstream
):
    backend = CountingBackend(MemoryBackend())
    middleware, client = await make_app(backend=backend, http_client=gated_upstream)
    code = emulator.issue_code()
    url = f"{CALLBACK}?code={code}"

    async with anyio.create_task_group() as tg:
        results: list[httpx.Response] = []

        async def leader() -> None:
            results.append(await client.get(url))

        tg.start_soon(leader)
        await wait_until(lambda: gate.arrived == 1)
        with anyio.CancelScope() as waiter_scope:
            async with anyio.create_task_group() as waiters:
                waiters.start_soon(client.get, url)
                await wait_until(lambda: middleware.counters.waiting == 1)
                waiter_scope.cancel()
        assert backend.in_flight == 1  # the flight survived its waiter's cancellation
        gate.open()

    assert results[0].status_code == 200
    assert emulator.exchange_count(code) == 1


async def test_unexpected_exception_in_exchange_releases_the_flight(emulator, make_app):
    # A real fault outside WeChat's answers: the upstream httpx client is closed, so sending
    # raises RuntimeError, which is neither an httpx error nor an OSError.
    closed = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url=WECHAT_URL)
    await closed.aclose()
    middleware, client = await make_app(http_client=closed)
    code = emulator.issue_code()
    response = await client.get(f"{CALLBACK}?code={code}")
    assert response.status_code == 502
    assert response.json()["error"] == "upstream_unavailable"
    assert middleware.backend.in_flight == 0
    assert middleware.backend.stored == 0  # not definitive: not cached


@pytest.mark.parametrize(("prior_uses", "errcode"), [(1, 40163), (2, 40029)])
async def test_code_traded_by_another_worker_is_recovered(
    emulator, upstream, make_app, gate, gated_upstream, prior_uses, errcode
):
    """Simulates two workers sharing a backend, racing for one code.

    In one process the race cannot happen for real (the lease keeps everyone else away from
    WeChat), so the test plays "the other worker": after our middleware has claimed the code
    (its exchange is held at the gate on its way to WeChat), the test trades the code at the
    emulator first and stores that identity in the shared backend under another lease, as a
    worker that won the race would. When the gate opens, WeChat tells our middleware the code is
    used (40163 on the second use, 40029 after); the middleware must recover the stored identity.
    """
    backend = MemoryBackend()
    middleware, client = await make_app(backend=backend, http_client=gated_upstream)
    code = emulator.issue_code("snsapi_userinfo")
    key = code_key(emulator.appid, code)
    other_worker = WeChatOAuthClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )

    async with anyio.create_task_group() as tg:
        results: list[httpx.Response] = []

        async def callback() -> None:
            results.append(await client.get(f"{CALLBACK}?code={code}&state=mine"))

        tg.start_soon(callback)
        await wait_until(lambda: gate.arrived == 1)
        assert backend.in_flight == 1  # our middleware holds the lease

        token = await other_worker.exchange_code(code)
        for _ in range(prior_uses - 1):  # more stray uses of the code (e.g. a third worker)
            with pytest.raises(CodeRejected):
                await other_worker.exchange_code(code)
        # The other worker served a duplicate of our callback (same state). It stored no
        # profile: that tells its identity apart from one our middleware traded itself.
        theirs = dataclasses.replace(WeChatIdentity.from_token(token), state="mine")
        await backend.complete(key, "other-worker-lease", theirs, ttl=60)
        assert backend.in_flight == 1  # another lease's complete leaves our flight alone
        gate.open()

    (response,) = results
    assert response.status_code == 200, response.text
    assert response.json()["openid"] == emulator.user.openid
    assert response.json()["nickname"] is None  # the other worker's identity
    assert response.json()["state"] == "mine"
    assert emulator.exchange_count(code) == prior_uses + 1
    assert emulator.calls["userinfo"] == 0
    assert middleware.counters.recovered == 1
    assert middleware.counters.errors == {}
    assert backend.in_flight == 0


async def test_used_code_with_nothing_to_recover_is_code_used(emulator, upstream, make_app):
    other = WeChatOAuthClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )
    middleware, client = await make_app()
    code = emulator.issue_code()
    await other.exchange_code(code)  # traded elsewhere, result not shared with us
    response = await client.get(f"{CALLBACK}?code={code}")
    assert response.status_code == 400
    assert response.json()["error"] == "code_used"
    assert middleware.counters.recovered == 0


async def test_counters_after_a_scripted_sequence(emulator, make_app, gate, gated_upstream):
    backend = CountingBackend(MemoryBackend())
    middleware, client = await make_app(backend=backend, http_client=gated_upstream)
    pair = emulator.issue_code()
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(client.get, f"{CALLBACK}?code={pair}")  # exchange 1, 1 deduplicated
        await wait_until(lambda: gate.arrived == 1 and middleware.counters.waiting == 1)
        gate.open()
    assert (await client.get(f"{CALLBACK}?code={pair}")).status_code == 200  # cache hit 1
    bad = "neverissued0000000000"
    assert (await client.get(f"{CALLBACK}?code={bad}")).status_code == 400  # exchange 2
    assert (await client.get(f"{CALLBACK}?code={bad}")).status_code == 400  # cache hit 2
    assert (await client.get(f"{CALLBACK}?code=bad!")).status_code == 400  # no exchange
    assert (await client.post(f"{CALLBACK}?code={pair}")).status_code == 405  # no exchange
    emulator.inject_fault(Fault.BUSY, count=2)
    busy = emulator.issue_code()
    assert (await client.get(f"{CALLBACK}?code={busy}")).status_code == 502  # exchange 3
    assert (await client.get(f"{CALLBACK}?code={busy}")).status_code == 200  # exchange 4

    counters = middleware.counters.as_dict()
    assert {k: counters[k] for k in ("exchanges", "deduplicated", "cache_hits", "recovered")} == {
        "exchanges": 4,
        "deduplicated": 1,
        "cache_hits": 2,
        "recovered": 0,
    }
    assert counters["errors"] == {
        "code_invalid": 2,
        "malformed_code": 1,
        "method_not_allowed": 1,
        "upstream_busy": 1,
    }


# --- the request path: what duplicates cost ---------------------------------------------------


def _count_tasks() -> list[str]:
    """Names of the asyncio tasks created from now on (a task factory that records them)."""
    import asyncio

    loop = asyncio.get_running_loop()
    created: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro, **kwargs):  # type: ignore[no-untyped-def]
        created.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    return created


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_duplicates_are_served_without_a_task_of_their_own(
    emulator, make_app, gate, gated_upstream
):
    # Only the leader's exchange is detached from its request (a task on asyncio): a late
    # duplicate, and a follower of a flight running in this process, are served in their own.
    import asyncio

    backend = CountingBackend(MemoryBackend())
    middleware, _ = await make_app(backend=backend, http_client=gated_upstream)
    code = emulator.issue_code()
    query = f"code={code}&state=s".encode()
    created = _count_tasks()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call_asgi, middleware, http_scope(query_string=query))
            await wait_until(lambda: gate.arrived == 1)
            assert len(created) == 2  # the test's request, and the leader's detached exchange
            tg.start_soon(call_asgi, middleware, http_scope(query_string=query))
            await wait_until(lambda: middleware.counters.waiting == 1)
            assert len(created) == 3  # the follower's request: nothing more
            gate.open()
        created.clear()
        late = await call_asgi(middleware, http_scope(query_string=query))
        assert late.status == 200
        assert created == []
    finally:
        asyncio.get_running_loop().set_task_factory(None)
    assert emulator.exchange_count(code) == 1
    assert (middleware.counters.deduplicated, middleware.counters.cache_hits) == (1, 1)


async def test_the_leader_is_answered_before_its_followers(
    emulator, make_app, gate, gated_upstream
):
    # On asyncio the leader's exchange runs in a task of its own; its request must still be
    # answered first, not after every follower its flight wakes (trio does this by itself).
    n = 50
    backend = CountingBackend(MemoryBackend())
    middleware, _ = await make_app(backend=backend, http_client=gated_upstream)
    query = f"code={emulator.issue_code()}&state=s".encode()
    finished: list[int] = []

    async def one(i: int) -> None:
        response = await call_asgi(middleware, http_scope(query_string=query))
        assert response.status == 200
        finished.append(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0)
        await wait_until(lambda: gate.arrived == 1)  # request 0 leads
        for i in range(1, n):
            tg.start_soon(one, i)
        await wait_until(lambda: middleware.counters.waiting == n - 1)
        gate.open()
    assert finished[0] == 0
    assert sorted(finished) == list(range(n))
