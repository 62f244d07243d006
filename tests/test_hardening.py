"""Findings of the outside audit (issue 18) and of the review after it, each a regression test:
state lifetimes and spellings, backends whose ``complete`` fails, text that cannot be encoded,
the number of codes one state may trade, hostile callbacks."""

from __future__ import annotations

import json
import logging
import math
import traceback
import uuid
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth._core.login import COOKIE_GRACE
from asgi_wechat_oauth._core.state import StateSigner
from asgi_wechat_oauth.backends import MemoryBackend, Outcome
from asgi_wechat_oauth.backends._codec import dump_outcome
from asgi_wechat_oauth.errors import WeChatOAuthError
from asgi_wechat_oauth.testing import EmulatedUser
from support import CALLBACK, WECHAT_URL, CountingBackend, code_key, wait_until

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"


def _callback_parts(callback: str) -> tuple[str, str]:
    params = dict(parse_qsl(urlsplit(callback).query))
    return params["code"], params["state"]


# --- defect 7: state lifetimes and spellings ---------------------------------------------------


@pytest.mark.parametrize("max_age", [0.5, 0.999, 0, -1, math.nan, math.inf])
def test_state_max_age_under_a_second_or_not_finite_is_refused(max_age):
    with pytest.raises(ValueError, match="state_max_age"):
        WeChatOAuthMiddleware(
            Starlette(), appid="wx", secret="s", login_path=LOGIN, state_max_age=max_age
        )
    with pytest.raises(ValueError):
        StateSigner(b"k" * 16, max_age=max_age)


@pytest.mark.parametrize(
    "options",
    [{"exchange_timeout": math.nan}, {"exchange_timeout": math.inf}, {"result_ttl": math.nan}],
)
def test_non_finite_timeouts_are_refused(options):
    with pytest.raises(ValueError):
        WeChatOAuthMiddleware(Starlette(), appid="wx", secret="s", **options)


@pytest.mark.parametrize(("max_age", "cookie_max_age"), [(1, 1), (1.2, 2), (600.0, 600)])
async def test_cookie_max_age_is_rounded_up(make_app, max_age, cookie_max_age):
    middleware, client = await make_app(login_path=LOGIN, state_max_age=max_age)
    response = await client.get(LOGIN)
    assert response.status_code == 302
    assert f"Max-Age={cookie_max_age + COOKIE_GRACE};" in response.headers["set-cookie"]


@pytest.mark.parametrize("prefix", ["0", "00", "0000000"])
async def test_non_canonical_state_spelling_is_403(
    consent, make_app, browser_factory, emulator, prefix
):
    middleware, _ = await make_app(login_path=LOGIN, authorize_base_url=WECHAT_URL)
    browser = browser_factory(middleware)
    code, state = _callback_parts(await consent(browser))
    response = await browser.get(CALLBACK, params={"code": code, "state": prefix + state})
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_state"
    assert emulator.exchange_count(code) == 0
    canonical = await browser.get(CALLBACK, params={"code": code, "state": state})
    assert canonical.status_code == 200


# --- defect 1: a backend whose complete raises; text that cannot be encoded ----------------------


class CompleteFails(MemoryBackend):
    """A store that fails to take a result, as one that serialises outcomes fails on text it
    cannot encode: the exception carries the whole serialised identity, tokens included.
    ``errors_too`` makes it fail for every outcome."""

    def __init__(self, *, errors_too: bool = False) -> None:
        super().__init__()
        self.errors_too = errors_too
        self.failures = 0

    async def complete(self, key: str, lease: str, outcome: Outcome, *, ttl: float) -> None:
        if self.errors_too or not isinstance(outcome, WeChatOAuthError):
            self.failures += 1
            text = json.dumps(outcome.to_dict(), ensure_ascii=False)
            raise UnicodeEncodeError("utf-8", text, 0, 1, "surrogates not allowed")
        await super().complete(key, lease, outcome, ttl=ttl)


class ThroughTheCodec(MemoryBackend):
    """A memory backend that first encodes each outcome as a backend outside the process does
    (``dump_outcome``), and raises whatever the codec raises."""

    async def complete(self, key: str, lease: str, outcome: Outcome, *, ttl: float) -> None:
        dump_outcome(outcome, context=key.encode())
        await super().complete(key, lease, outcome, ttl=ttl)


async def _echo_identity(scope, receive, send):
    """The app behind the middleware, answering in JSON that escapes what UTF-8 cannot hold."""
    me = scope["wechat"]
    nickname = me.userinfo.nickname if me.userinfo else None
    body = json.dumps({"openid": me.openid, "nickname": nickname}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _no_token_in(records: list[logging.LogRecord], emulator) -> None:
    tokens = [*emulator._tokens, *emulator._refresh_tokens]
    assert tokens
    for record in records:
        rendered = repr(record.__dict__) + record.getMessage()
        if record.exc_info:
            rendered += "".join(traceback.format_exception(*record.exc_info))
            rendered += repr(record.exc_info[1]) + repr(record.exc_info[1].args)
        assert not any(token in rendered for token in tokens), record.getMessage()


async def test_complete_that_raises_still_serves_the_leader_and_its_waiters(
    emulator, make_app, gate, gated_upstream, caplog
):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    failing = CompleteFails()
    backend = CountingBackend(failing)
    middleware, client = await make_app(backend=backend, http_client=gated_upstream)
    code = emulator.issue_code("snsapi_userinfo")
    url = f"{CALLBACK}?code={code}&state=s1"
    results: list[httpx.Response] = []

    async def one() -> None:
        results.append(await client.get(url))

    with anyio.fail_after(10):  # a stranded waiter would wait out its whole deadline
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
            await wait_until(lambda: gate.arrived == 1 and middleware.counters.waiting == 2)
            gate.open()
    assert [r.status_code for r in results] == [200, 200, 200]
    assert {r.json()["openid"] for r in results} == {emulator.user.openid}
    assert failing.failures == 1
    assert failing.in_flight == 0  # the lease was given back
    # The identity could not be stored: a late duplicate is told so at once, without WeChat.
    late = await client.get(url)
    assert (late.status_code, late.json()["error"]) == (502, "exchange_lost")
    assert emulator.exchange_count(code) == 1
    failed = [r for r in caplog.records if r.getMessage().startswith("wechat_oauth.complete_")]
    assert [r.getMessage().split()[-1] for r in failed] == ["error=UnicodeEncodeError"]
    assert failed[0].exc_info is None
    _no_token_in(caplog.records, emulator)


class Stalls(MemoryBackend):
    """A backend whose ``recover`` (or ``complete`` of a stored error) never returns: a
    third-party backend stuck on its store. The followers in the leader's process wait on its
    flight with no deadline of their own, so the flight must end within theirs."""

    def __init__(self, *, where: str) -> None:
        super().__init__()
        self.where = where

    async def recover(self, key: str, *, timeout: float) -> Outcome | None:
        if self.where == "recover":
            await anyio.sleep_forever()
        return await super().recover(key, timeout=timeout)

    async def complete(
        self, key: str, lease: str, outcome: Outcome, *, ttl: float
    ) -> Outcome | None:
        if self.where == "complete" and ttl > 0 and isinstance(outcome, WeChatOAuthError):
            await anyio.sleep_forever()
        return await super().complete(key, lease, outcome, ttl=ttl)


@pytest.mark.parametrize("where", ["recover", "complete"])
async def test_a_stuck_backend_holds_no_follower_past_its_deadline(
    where, emulator, upstream, make_app, gate, gated_upstream
):
    from asgi_wechat_oauth import WeChatOAuthClient

    exchange_timeout = 0.5  # the followers' deadline: 0.5 + 0 (memory) + 2 s of grace
    middleware, client = await make_app(
        backend=Stalls(where=where), http_client=gated_upstream, exchange_timeout=exchange_timeout
    )
    code = emulator.issue_code()
    other = WeChatOAuthClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )
    await other.exchange_code(code)  # traded elsewhere: this leader gets 40163
    url = f"{CALLBACK}?code={code}&state=s"
    answers: list[tuple[int, str]] = []

    async def one() -> None:
        response = await client.get(url)
        answers.append((response.status_code, response.json()["error"]))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            await wait_until(lambda: gate.arrived == 1)
            tg.start_soon(one)
            await wait_until(lambda: middleware.counters.waiting == 1)
            gate.open()
    # The follower is answered when the flight gives up on the stuck backend, at its
    # deadline (2.5 s), well within fail_after's 10 s.
    assert answers == [(400, "code_used")] * 2
    assert middleware.counters.waiting == 0


async def test_complete_that_always_raises_never_escapes(emulator, make_app):
    backend = CompleteFails(errors_too=True)
    middleware, client = await make_app(backend=backend)
    ok = await client.get(f"{CALLBACK}?code={emulator.issue_code()}")
    assert ok.status_code == 200
    refused = await client.get(f"{CALLBACK}?code=notacode123")
    assert (refused.status_code, refused.json()["error"]) == (400, "code_invalid")
    assert backend.failures == 3  # the identity, then exchange_lost in its place; the error


async def test_lone_surrogate_nickname_logs_in_and_leaks_no_token(emulator, make_app, caplog):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    emulator.user = EmulatedUser(nickname="Tom\ud83d")  # valid JSON, half an emoji
    for backend in (MemoryBackend(), ThroughTheCodec()):
        middleware, client = await make_app(app=_echo_identity, backend=backend)
        url = f"{CALLBACK}?code={emulator.issue_code('snsapi_userinfo')}&state=s1"
        response = await client.get(url)
        assert response.status_code == 200, response.text
        assert response.json() == {"openid": emulator.user.openid, "nickname": "Tom\ud83d"}
        late = await client.get(url)
        assert late.status_code in (200, 502)  # 502 exchange_lost if the codec cannot take it
    _no_token_in(caplog.records, emulator)


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_lone_surrogate_on_redis_leaves_no_lease_and_answers_duplicates_promptly(
    emulator, make_app, redis_server, caplog
):
    """Whatever the Redis codec makes of the text, the login succeeds, the lease is released,
    and a duplicate on another worker gets an answer (the identity, or ``exchange_lost`` if it
    could not be stored) without waiting out ``lease_ttl``."""
    from asgi_wechat_oauth.backends.redis import RedisBackend

    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    emulator.user = EmulatedUser(nickname="Tom\ud83d")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    one, two = (RedisBackend(redis_server.url, prefix=prefix, lease_ttl=30) for _ in range(2))
    try:
        _, first = await make_app(app=_echo_identity, backend=one)
        _, second = await make_app(app=_echo_identity, backend=two)
        code = emulator.issue_code("snsapi_userinfo")
        url = f"{CALLBACK}?code={code}&state=s1"
        response = await first.get(url)
        assert response.status_code == 200, response.text
        assert response.json()["openid"] == emulator.user.openid
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            key = code_key(emulator.appid, code)
            assert await client.exists(f"{prefix}:{{{key}}}:lease") == 0
        finally:
            await client.aclose()
        with anyio.fail_after(10):  # well under lease_ttl
            duplicate = await second.get(url)
        assert duplicate.status_code in (200, 502)
        if duplicate.status_code == 502:
            assert duplicate.json()["error"] == "exchange_lost"
        assert emulator.exchange_count(code) == 1
    finally:
        await one.aclose()
        await two.aclose()
    _no_token_in(caplog.records, emulator)
