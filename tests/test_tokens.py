"""AccessTokenKeeper: one token per app for all callers and workers, refreshed before expiry,
dropped and refetched once when an API rejects it; WeCom's gettoken and the official
account's stable_token and token endpoints, on the emulators. Memory backend on asyncio and
trio; Redis (four 'workers' sharing one server) on asyncio."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from asgi_wechat_oauth import WeChatIdentity
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.errors import CredentialsRejected, UpstreamError
from asgi_wechat_oauth.testing import Fault, WeChatEmulator, WeComEmulator
from asgi_wechat_oauth.tokens import (
    AccessTokenKeeper,
    ClientCredentialTokenFetcher,
    StableTokenFetcher,
    TokenGrant,
    WeComTokenFetcher,
)
from asgi_wechat_oauth.wecom import WeComOAuthClient

pytestmark = pytest.mark.anyio

WECOM_URL = "http://qyapi.test"
WECHAT_URL = "http://api.test"
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture
def wecom() -> WeComEmulator:
    emulator = WeComEmulator()
    emulator.latency = 0.05  # concurrent callers overlap the fetch in flight
    return emulator


@pytest.fixture
async def http(wecom: WeComEmulator, emulator: WeChatEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """One client reaching both emulators, as WeCom's and WeChat's hosts."""
    async with httpx.AsyncClient(
        mounts={
            WECOM_URL: httpx.ASGITransport(app=wecom),
            WECHAT_URL: httpx.ASGITransport(app=emulator),
        }
    ) as client:
        yield client


@pytest.fixture
async def keepers(http: httpx.AsyncClient) -> AsyncIterator[list[AccessTokenKeeper]]:
    """Keepers made in a test, closed at its end."""
    made: list[AccessTokenKeeper] = []
    yield made
    for keeper in made:
        await keeper.aclose()


def wecom_keeper(
    wecom: WeComEmulator, http: httpx.AsyncClient, made: list[AccessTokenKeeper], **options
) -> AccessTokenKeeper:
    secret = options.pop("secret", wecom.secret)
    fetcher = WeComTokenFetcher(wecom.corpid, secret, api_base_url=WECOM_URL, http_client=http)
    keeper = AccessTokenKeeper(fetcher, **options)
    made.append(keeper)
    return keeper


async def get_all(keepers: list[AccessTokenKeeper], n: int) -> list[str]:
    tokens: list[str] = []

    async def one(keeper: AccessTokenKeeper) -> None:
        tokens.append(await keeper.get())

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, keepers[i % len(keepers)])
    return tokens


# --- one fetch for everyone -------------------------------------------------------------------


async def test_concurrent_callers_on_a_cold_start_cause_one_gettoken(wecom, http, keepers):
    keeper = wecom_keeper(wecom, http, keepers)
    tokens = await get_all([keeper], 50)
    assert wecom.calls["gettoken"] == 1
    assert len(set(tokens)) == 1 and wecom.tokens.check(tokens[0]) == 0
    assert keeper.counters.exchanges == 1


async def test_get_is_served_from_the_process_without_asking_anyone(wecom, http, keepers):
    backend = MemoryBackend()
    keeper = wecom_keeper(wecom, http, keepers, backend=backend)
    token = await keeper.get()
    await backend.aclose()  # the stored copy is gone: only the keeper's own copy is left
    assert [await keeper.get() for _ in range(100)] == [token] * 100
    assert wecom.calls["gettoken"] == 1


async def test_keepers_sharing_a_backend_share_the_token(wecom, http, keepers):
    backend = MemoryBackend()
    group = [wecom_keeper(wecom, http, keepers, backend=backend) for _ in range(4)]
    tokens = await get_all(group, 40)
    assert wecom.calls["gettoken"] == 1 and len(set(tokens)) == 1


async def test_two_apps_of_one_corp_never_share_a_token(wecom, http, keepers):
    backend = MemoryBackend()
    ours = wecom_keeper(wecom, http, keepers, backend=backend)
    other = wecom_keeper(wecom, http, keepers, backend=backend, secret="another-agent-secret")
    assert await ours.get()
    with pytest.raises(CredentialsRejected):
        await other.get()  # its own key: it asked WeCom itself, and its secret is wrong
    assert wecom.calls["gettoken"] == 2


async def test_the_token_is_refreshed_shortly_before_it_expires(wecom, http, keepers):
    wecom.tokens.ttl = 2  # refreshed at half its life when that is shorter than the margin
    keeper = wecom_keeper(wecom, http, keepers)
    first = await keeper.get()
    assert await keeper.get() == first and wecom.calls["gettoken"] == 1
    await anyio.sleep(1.2)
    assert wecom.tokens.check(first) == 0  # still valid: the refresh comes before expiry
    await keeper.get()
    assert wecom.calls["gettoken"] == 2


# --- an API rejects the token -----------------------------------------------------------------


@pytest.mark.parametrize("spoil", ["revoke", "expire"], ids=["40014", "42001"])
async def test_a_rejected_token_is_refreshed_once_and_the_call_retried(wecom, http, spoil):
    async with WeComOAuthClient(
        wecom.corpid, wecom.agentid, wecom.secret, api_base_url=WECOM_URL, http_client=http
    ) as client:
        old = await client.token_keeper.get()
        getattr(wecom.tokens, spoil)()
        code = wecom.issue_code()
        identity = await client.get_identity(code)
        assert identity.userid == wecom.user.userid
        assert await client.token_keeper.get() != old
    assert wecom.calls["gettoken"] == 2
    assert wecom.exchange_count(code) == 1  # the first try, refused for its token: not counted


async def test_a_token_rejected_twice_is_not_refreshed_again(wecom, http, keepers):
    keeper = wecom_keeper(wecom, http, keepers)
    calls = 0

    async def always_rejected(token: str) -> None:
        nonlocal calls
        calls += 1
        raise UpstreamError("upstream_error", "rejected", errcode=40014)

    with pytest.raises(UpstreamError) as caught:
        await keeper.call(always_rejected)
    assert caught.value.errcode == 40014
    assert calls == 2 and wecom.calls["gettoken"] == 2


async def test_other_errors_are_not_a_reason_to_refresh(wecom, http, keepers):
    keeper = wecom_keeper(wecom, http, keepers)

    async def busy(token: str) -> None:
        raise UpstreamError("upstream_busy", "busy", errcode=-1)

    with pytest.raises(UpstreamError):
        await keeper.call(busy)
    assert wecom.calls["gettoken"] == 1


async def test_invalidating_an_old_token_keeps_its_replacement(wecom, http, keepers):
    backend = MemoryBackend()
    slow, fast = (wecom_keeper(wecom, http, keepers, backend=backend) for _ in range(2))
    old = await slow.get()
    assert await fast.get() == old
    wecom.tokens.revoke()
    await fast.invalidate(old)
    new = await fast.get()
    assert new != old
    # The slow worker learns about the old token only now: the new one must survive that.
    await slow.invalidate(old)
    assert await slow.get() == new
    assert wecom.calls["gettoken"] == 2


# --- failures of the token endpoint -----------------------------------------------------------


async def test_wrong_secret_is_a_configuration_error_logged_with_its_meaning(
    wecom, http, keepers, caplog
):
    keeper = wecom_keeper(wecom, http, keepers, secret="not-the-secret")
    for _ in range(2):  # not stored: the next call asks again
        with pytest.raises(CredentialsRejected) as caught:
            await keeper.get()
    assert caught.value.reason == "configuration_error" and caught.value.errcode == 40001
    assert wecom.calls["gettoken"] == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("errcode=40001" in m and "invalid corpsecret" in m for m in errors)
    assert "not-the-secret" not in caplog.text


async def test_untrusted_server_ip_says_so(wecom, http, keepers, caplog):
    wecom.inject_errcode(60020, endpoint="gettoken")
    keeper = wecom_keeper(wecom, http, keepers)
    with pytest.raises(CredentialsRejected) as caught:
        await keeper.get()
    assert "trusted IPs" in caught.value.message
    assert "60020" in caplog.text


async def test_busy_is_retried_once(wecom, http, keepers):
    wecom.inject_fault(Fault.BUSY, endpoint="gettoken")
    keeper = wecom_keeper(wecom, http, keepers)
    assert await keeper.get()
    assert wecom.calls["gettoken"] == 2


async def test_busy_twice_is_a_502(wecom, http, keepers):
    wecom.inject_fault(Fault.BUSY, count=2, endpoint="gettoken")
    keeper = wecom_keeper(wecom, http, keepers)
    with pytest.raises(UpstreamError) as caught:
        await keeper.get()
    assert (caught.value.reason, caught.value.status_code) == ("upstream_busy", 502)
    assert await keeper.get()  # not stored: the next caller fetches


@pytest.mark.parametrize("fault", [Fault.MALFORMED_JSON, Fault.HTTP_502, Fault.TRUNCATED])
async def test_broken_answers_are_upstream_errors(wecom, http, keepers, fault):
    wecom.inject_fault(fault, endpoint="gettoken")
    keeper = wecom_keeper(wecom, http, keepers)
    with pytest.raises(UpstreamError):
        await keeper.get()


# --- the official account's token -------------------------------------------------------------


async def test_stable_token_is_fetched_once_and_force_refreshed_after_rejection(
    emulator, http, keepers
):
    fetcher = StableTokenFetcher(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=http
    )
    keeper = AccessTokenKeeper(fetcher)
    keepers.append(keeper)
    tokens = await get_all([keeper], 20)
    assert len(set(tokens)) == 1 and emulator.calls["stable_token"] == 1
    await keeper.invalidate(tokens[0])
    fresh = await keeper.get()
    # stable_token hands back the same token unless forced: after a rejection it is forced.
    assert fresh != tokens[0] and emulator.calls["stable_token"] == 2


async def test_classic_token_endpoint_is_called_once_by_many_callers(emulator, http, keepers):
    emulator.latency = 0.05
    fetcher = ClientCredentialTokenFetcher(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=http
    )
    backend = MemoryBackend()
    group = [AccessTokenKeeper(fetcher, backend=backend) for _ in range(3)]
    keepers.extend(group)
    tokens = await get_all(group, 30)
    # Each call to cgi-bin/token retires the previous token: one call means nobody's token
    # was knocked out by another worker's refresh.
    assert emulator.calls["token"] == 1 and len(set(tokens)) == 1


async def test_official_account_wrong_secret(emulator, http, keepers):
    fetcher = StableTokenFetcher(emulator.appid, "wrong", api_base_url=WECHAT_URL, http_client=http)
    keeper = AccessTokenKeeper(fetcher)
    keepers.append(keeper)
    with pytest.raises(CredentialsRejected) as caught:
        await keeper.get()
    assert caught.value.errcode == 40125


# --- safe to print ----------------------------------------------------------------------------


async def test_tokens_never_appear_in_reprs(wecom, http, keepers):
    keeper = wecom_keeper(wecom, http, keepers)
    token = await keeper.get()
    grant = TokenGrant(token, 0.0)
    for text in (repr(grant), repr(keeper), repr(keeper.fetcher), str(keeper.counters.as_dict())):
        assert token not in text and wecom.secret not in text


def test_grant_fields_are_validated():
    for bad in ("", None, 42, "tok en\n", "x" * 5000):
        with pytest.raises(ValueError):
            TokenGrant(bad, 0.0)  # type: ignore[arg-type]
    for answer in ({"access_token": "t"}, {"access_token": "t", "expires_in": "7200"}):
        with pytest.raises(ValueError):
            TokenGrant.from_answer(answer, margin=300)


# --- Backend.forget ---------------------------------------------------------------------------


async def test_memory_forget_checks_what_is_stored():
    backend = MemoryBackend()
    grant = TokenGrant("a", 1e12)
    claim = await backend.claim("k")
    assert claim.lease is not None
    await backend.complete("k", claim.lease, grant, ttl=60)
    assert not await backend.forget("k", only_if=lambda o: o is not grant)
    assert (await backend.claim("k")).outcome == grant
    assert await backend.forget("k", only_if=lambda o: o is grant)
    assert not await backend.forget("k")
    assert (await backend.claim("k")).lease is not None


@pytest.mark.redis
@ASYNCIO_ONLY
async def test_redis_forget_checks_what_is_stored(redis_server):
    from asgi_wechat_oauth.backends.redis import RedisBackend

    backend = RedisBackend(redis_server.url, prefix=f"forget-{uuid.uuid4().hex[:8]}")
    try:
        claim = await backend.claim("k")
        assert claim.lease is not None
        await backend.complete("k", claim.lease, TokenGrant("a", 1e12), ttl=60)
        assert not await backend.forget("k", only_if=lambda o: o.access_token == "b")
        assert (await backend.claim("k")).outcome == TokenGrant("a", 1e12)
        assert await backend.forget("k", only_if=lambda o: o.access_token == "a")
        assert not await backend.forget("k")
        assert (await backend.claim("k")).lease is not None
    finally:
        await backend.aclose()


@pytest.mark.redis
@ASYNCIO_ONLY
async def test_redis_workers_fetch_one_token_and_survive_a_stale_invalidation(
    redis_server, wecom, http, keepers
):
    from asgi_wechat_oauth.backends.redis import RedisBackend

    prefix = f"tokens-{uuid.uuid4().hex[:8]}"
    backends = [RedisBackend(redis_server.url, prefix=prefix) for _ in range(4)]
    try:
        workers = [wecom_keeper(wecom, http, keepers, backend=b) for b in backends]
        tokens = await get_all(workers, 80)
        assert wecom.calls["gettoken"] == 1 and len(set(tokens)) == 1
        old = tokens[0]
        wecom.tokens.revoke()
        await workers[0].invalidate(old)
        new = await workers[0].get()
        # The other workers find out when WeCom rejects their copy: late, which must not
        # drop the new token.
        for worker in workers[1:]:
            await worker.invalidate(old)
            assert await worker.get() == new
        assert wecom.calls["gettoken"] == 2
    finally:
        for keeper in keepers:
            await keeper.aclose()
        keepers.clear()
        for backend in backends:
            await backend.aclose()


async def test_keeper_results_never_mix_with_identities():
    # A token is a Result of its own kind, stored and loaded like an identity.
    from asgi_wechat_oauth.backends._codec import dump_outcome, load_outcome

    grant = TokenGrant("tok", 123.0)
    assert load_outcome(dump_outcome(grant)) == grant
    assert not isinstance(load_outcome(dump_outcome(grant)), WeChatIdentity)
