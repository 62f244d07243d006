"""Mini-program login (``sns/jscode2session``) on the memory backend, on asyncio and trio: each
code traded once however many requests carry it, the body replayed to the app, JSON errors
before any call to WeChat for bad input, WeChat's errcodes mapped, the session key kept secret,
and keys kept apart from the web flow's on a shared backend."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import anyio
import httpx
import pytest

from _miniprogram_app import LOGIN, mp_app
from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth._core.singleflight import flight_key
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.errors import CodeRejected
from asgi_wechat_oauth.miniprogram import (
    MiniProgramClient,
    MiniProgramIdentity,
    MiniProgramMiddleware,
)
from asgi_wechat_oauth.testing import EmulatedUser, Fault, double_login
from support import (
    APP_URL,
    CALLBACK,
    WECHAT_URL,
    CountingBackend,
    RawResponse,
    code_key,
    http_scope,
    wait_until,
)

pytestmark = pytest.mark.anyio


# --- the login ---------------------------------------------------------------------------------


async def test_json_login_puts_the_session_in_scope_and_replays_the_body(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    response = await client.post(LOGIN, json={"code": code, "scene": 1001})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["openid"] == emulator.user.openid
    assert data["unionid"] is None
    assert data["appid"] == emulator.appid
    assert data["has_session_key"] is True
    assert json.loads(data["body"]) == {"code": code, "scene": 1001}
    assert "session_key" not in data["repr"]
    assert emulator.exchange_count(code) == 1
    assert middleware.counters.exchanges == 1


async def test_form_login_and_unionid(emulator, make_mp):
    middleware, client = await make_mp()
    user = EmulatedUser(openid="oMiniProgramUser000000000001", unionid="oUnion00000000000000000001")
    code = emulator.issue_miniprogram_code(user=user)
    response = await client.post(LOGIN, data={"code": code, "from": "page"})
    assert response.status_code == 200, response.text
    assert response.json()["openid"] == user.openid
    assert response.json()["unionid"] == user.unionid
    assert response.json()["body"] == f"code={code}&from=page"


async def test_other_paths_and_methods_pass_through(emulator, make_mp):
    middleware, client = await make_mp()
    assert (await client.get("/other")).text == "GET wechat=False"
    assert (await client.post("/other", json={"code": "x"})).text == "POST wechat=False"
    assert emulator.calls["jscode2session"] == 0


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
async def test_other_methods_are_405_with_allow_post(emulator, make_mp, method):
    middleware, client = await make_mp()
    response = await client.request(method, LOGIN)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    if method == "HEAD":
        assert response.content == b""
    else:
        assert response.json()["error"] == "method_not_allowed"
    assert emulator.calls["jscode2session"] == 0


# --- once per code -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 20])
async def test_concurrent_duplicates_share_one_exchange(
    n, emulator, make_mp, mp_gate, mp_gated_upstream
):
    backend = CountingBackend(MemoryBackend())
    middleware, client = await make_mp(backend=backend, http_client=mp_gated_upstream)
    code = emulator.issue_miniprogram_code()
    results: list[httpx.Response] = []

    async def one() -> None:
        results.append(await client.post(LOGIN, json={"code": code}))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
        await wait_until(lambda: mp_gate.arrived == 1 and middleware.counters.waiting == n - 1)
        mp_gate.open()

    assert [r.status_code for r in results] == [200] * n
    assert {r.json()["openid"] for r in results} == {emulator.user.openid}
    assert emulator.exchange_count(code) == 1
    assert middleware.counters.deduplicated == n - 1


async def test_late_duplicate_is_served_the_stored_session(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    first = await client.post(LOGIN, json={"code": code})
    second = await client.post(LOGIN, data={"code": code})  # a retry, even as a form
    assert first.status_code == second.status_code == 200
    assert second.json()["openid"] == emulator.user.openid
    assert emulator.exchange_count(code) == 1
    assert middleware.counters.cache_hits == 1


async def test_retried_login_with_the_first_request_aborted(emulator, make_mp):
    emulator.latency = 0.05
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    response = await double_login(client, code, abort_after=0.01, gap=0.019)
    assert response.status_code == 200, response.text
    assert response.json()["openid"] == emulator.user.openid
    assert emulator.exchange_count(code) == 1


async def test_two_complete_overlapping_requests_share_one_exchange(emulator, make_mp):
    emulator.latency = 0.05
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    response = await double_login(client, code, abort_after=10.0, gap=0.01)  # two pages
    assert response.status_code == 200
    assert emulator.exchange_count(code) == 1


async def test_cancelled_only_request_still_completes_the_exchange(emulator, make_mp):
    emulator.latency = 0.05
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: client.post(LOGIN, json={"code": code}))
        await wait_until(lambda: emulator.calls["jscode2session"] >= 1)  # mid-exchange
        tg.cancel_scope.cancel()
    await wait_until(lambda: middleware.backend.stored == 1)
    response = await client.post(LOGIN, json={"code": code})
    assert response.status_code == 200
    assert emulator.exchange_count(code) == 1


@pytest.mark.parametrize(("prior_uses", "errcode"), [(1, 40163), (2, 40029)])
async def test_code_traded_by_another_worker_is_recovered(
    emulator, upstream, make_mp, mp_gate, mp_gated_upstream, prior_uses, errcode
):
    """As in the web flow's test: while our exchange is held on its way to WeChat, "another
    worker" trades the code and stores its session in the shared backend; WeChat then tells
    us the code is used, and the middleware must answer the other worker's session."""
    backend = MemoryBackend()
    middleware, client = await make_mp(backend=backend, http_client=mp_gated_upstream)
    code = emulator.issue_miniprogram_code()
    other_worker = MiniProgramClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )
    results: list[httpx.Response] = []

    async def login() -> None:
        results.append(await client.post(LOGIN, json={"code": code}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(login)
        await wait_until(lambda: mp_gate.arrived == 1)
        theirs = await other_worker.code2session(code)
        for _ in range(prior_uses - 1):
            with pytest.raises(CodeRejected):
                await other_worker.code2session(code)
        await backend.complete(flight_key("mp", emulator.appid, code), "other", theirs, ttl=60)
        mp_gate.open()

    (response,) = results
    assert response.status_code == 200, response.text
    assert response.json()["openid"] == emulator.user.openid
    assert emulator.exchange_count(code) == prior_uses + 1
    assert middleware.counters.recovered == 1
    assert middleware.counters.errors == {}


async def test_used_code_with_nothing_to_recover_is_code_used(emulator, upstream, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    other = MiniProgramClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )
    await other.code2session(code)
    response = await client.post(LOGIN, json={"code": code})
    assert (response.status_code, response.json()["error"]) == (400, "code_used")
    never_issued = await client.post(LOGIN, json={"code": "neverissued0000000000"})
    assert (never_issued.status_code, never_issued.json()["error"]) == (400, "code_invalid")


async def test_expired_code_is_code_expired(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    emulator.expire_code(code)
    response = await client.post(LOGIN, json={"code": code})
    assert (response.status_code, response.json()["error"]) == (400, "code_expired")


# --- bad input: 400 before WeChat --------------------------------------------------------------

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
VALID = "0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d"

BAD_BODIES = [
    pytest.param(JSON, b"{}", "missing_code", id="json-no-code"),
    pytest.param(JSON, b'{"code": ""}', "missing_code", id="json-empty"),
    pytest.param(JSON, b'{"code": null}', "missing_code", id="json-null"),
    pytest.param(JSON, b'{"code": 123}', "malformed_code", id="json-number"),
    pytest.param(JSON, b'{"code": ["a"]}', "malformed_code", id="json-list"),
    pytest.param(JSON, b'{"code": "a b"}', "malformed_code", id="json-space"),
    pytest.param(JSON, b'{"code": "\\ud800"}', "malformed_code", id="json-lone-surrogate"),
    pytest.param(JSON, b'{"code": "' + b"a" * 129 + b'"}', "malformed_code", id="json-129"),
    pytest.param(
        JSON, f'{{"code": "{VALID}", "code": "x"}}'.encode(), "duplicate_parameter", id="json-dup"
    ),
    pytest.param(JSON, b"", "invalid_body", id="json-empty-body"),
    pytest.param(JSON, b"code=abc", "invalid_body", id="json-not-json"),
    pytest.param(JSON, b'["code"]', "invalid_body", id="json-array"),
    pytest.param(JSON, b'"code"', "invalid_body", id="json-string"),
    pytest.param(JSON, b'{"code": "\xff"}', "invalid_body", id="json-not-utf8"),
    pytest.param(JSON, b"[" * 3000 + b"]" * 1000, "invalid_body", id="json-too-deep"),
    pytest.param(FORM, b"", "missing_code", id="form-empty"),
    pytest.param(FORM, b"code=", "missing_code", id="form-empty-code"),
    pytest.param(FORM, b"code=abc!", "malformed_code", id="form-bang"),
    pytest.param(FORM, f"code={VALID}&code={VALID}".encode(), "duplicate_parameter", id="form-2"),
    pytest.param(FORM, b"code=%ff", "invalid_body", id="form-bad-utf8"),
    pytest.param(FORM, "code=你好".encode(), "invalid_body", id="form-non-ascii"),
    pytest.param(FORM, b"&x=1" * 65, "invalid_body", id="form-65-fields"),
    pytest.param("text/plain", f'{{"code": "{VALID}"}}'.encode(), "invalid_body", id="text"),
    pytest.param(None, f'{{"code": "{VALID}"}}'.encode(), "invalid_body", id="no-type"),
    pytest.param("multipart/form-data; boundary=x", b"--x--", "invalid_body", id="multipart"),
]


@pytest.mark.parametrize(("content_type", "body", "reason"), BAD_BODIES)
async def test_bad_body_is_refused_before_wechat(emulator, make_mp, content_type, body, reason):
    middleware, client = await make_mp()
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post(LOGIN, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert set(response.json()) == {"error", "message"}
    assert response.json()["error"] == reason
    assert emulator.calls["jscode2session"] == 0
    assert middleware.counters.errors == {reason: 1}


async def test_json_content_type_with_charset_is_json(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    body = json.dumps({"code": code}).encode()
    headers = {"content-type": "Application/JSON; charset=utf-8"}
    response = await client.post(LOGIN, content=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_body_over_4_kib_is_413_before_wechat(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    padding = "x" * 4096
    response = await client.post(LOGIN, json={"code": code, "padding": padding})
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"

    # No Content-Length, the body in 1 KiB messages: refused while reading, at the fifth.
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"{" + b" " * 1023, "more_body": True}

    scope = http_scope(LOGIN, method="POST", headers=[(b"content-type", JSON.encode())])
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(dict(message))

    await middleware(scope, receive, send)
    streamed = RawResponse(messages)
    assert received == 5
    assert streamed.status == 413
    assert json.loads(streamed.body)["error"] == "body_too_large"
    assert emulator.calls["jscode2session"] == 0
    assert (await client.post(LOGIN, json={"code": code})).status_code == 200  # code unspent


async def test_body_of_exactly_4_kib_is_read(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    body = json.dumps({"code": code, "p": ""}).encode()
    body = body[:-2] + b"y" * (4096 - len(body)) + b'"}'
    assert len(body) == 4096
    response = await client.post(LOGIN, content=body, headers={"content-type": JSON})
    assert response.status_code == 200, response.text


# --- WeChat's answers --------------------------------------------------------------------------


async def test_rate_limited_is_429_with_retry_after_and_not_stored(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    emulator.inject_fault(Fault.RATE_LIMITED, endpoint="jscode2session")
    response = await client.post(LOGIN, json={"code": code})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "60"
    assert response.json()["error"] == "rate_limited"
    retry = await client.post(LOGIN, json={"code": code})  # the code was not spent
    assert retry.status_code == 200
    assert emulator.exchange_count(code) == 2


async def test_risky_user_is_403_and_stored(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    emulator.inject_fault(Fault.RISKY_USER, endpoint="jscode2session")
    for _ in range(2):
        response = await client.post(LOGIN, json={"code": code})
        assert response.status_code == 403
        assert response.json()["error"] == "risky_user"
    assert emulator.exchange_count(code) == 1  # the duplicate got the stored answer


async def test_busy_once_is_retried(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    emulator.inject_fault(Fault.BUSY, endpoint="jscode2session")
    response = await client.post(LOGIN, json={"code": code})
    assert response.status_code == 200
    assert emulator.calls["jscode2session"] == 2


async def test_busy_twice_is_502(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    emulator.inject_fault(Fault.BUSY, count=2, endpoint="jscode2session")
    response = await client.post(LOGIN, json={"code": code})
    assert (response.status_code, response.json()["error"]) == (502, "upstream_busy")
    assert emulator.calls["jscode2session"] == 2
    assert (await client.post(LOGIN, json={"code": code})).status_code == 200  # not stored


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.HTTP_500, "upstream_unavailable"),
        (Fault.HTTP_502, "upstream_unavailable"),
        (Fault.MALFORMED_JSON, "upstream_bad_response"),
        (Fault.DROP, "upstream_unavailable"),
        (Fault.TRUNCATED, "upstream_unavailable"),
    ],
)
async def test_upstream_faults_are_502(emulator, make_mp, fault, reason):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    emulator.inject_fault(fault, endpoint="jscode2session")
    response = await client.post(LOGIN, json={"code": code})
    assert (response.status_code, response.json()["error"]) == (502, reason)


@pytest.mark.parametrize(
    ("appid", "secret", "errcode"),
    [("wxsomeoneelse00001", None, 40013), (None, "not-the-secret", 40125)],
)
async def test_bad_credentials_are_500_and_loud(emulator, make_mp, caplog, appid, secret, errcode):
    caplog.set_level(logging.ERROR, logger="asgi_wechat_oauth")
    middleware, client = await make_mp(
        appid=appid or emulator.appid, secret=secret or emulator.secret
    )
    code = emulator.issue_miniprogram_code()
    response = await client.post(LOGIN, json={"code": code})
    assert response.status_code == 500
    assert response.json()["error"] == "configuration_error"
    assert str(errcode) in response.json()["message"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "configuration_error" in errors[0].getMessage()
    assert emulator.secret not in response.text and "not-the-secret" not in caplog.text


async def test_exchange_timeout_is_504(emulator, make_mp):
    emulator.latency = 5.0
    middleware, client = await make_mp(exchange_timeout=0.2)
    code = emulator.issue_miniprogram_code()
    response = await client.post(LOGIN, json={"code": code})
    assert (response.status_code, response.json()["error"]) == (504, "upstream_timeout")


def answering(raw: bytes) -> Any:
    """A stand-in for WeChat that answers every call with ``raw``: the malformed answers the
    real WeChat (and so the emulator) does not give on purpose."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": raw})

    return app


OVERSIZED = b'{"openid": "o1", "session_key": "a2V5", "pad": "' + b"x" * 70_000 + b'"}'


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"session_key": "a2V5"}, id="no-openid"),
        pytest.param({"openid": "o1"}, id="no-session-key"),
        pytest.param({"openid": None, "session_key": "a2V5"}, id="null-openid"),
        pytest.param({"openid": "o1", "session_key": None}, id="null-session-key"),
        pytest.param({"openid": "", "session_key": "a2V5"}, id="empty-openid"),
        pytest.param({"openid": "o1", "session_key": ""}, id="empty-session-key"),
        pytest.param({"openid": 12, "session_key": "a2V5"}, id="number-openid"),
        pytest.param({"openid": "o 1", "session_key": "a2V5"}, id="space-openid"),
        pytest.param({"openid": "\ud800", "session_key": "a2V5"}, id="surrogate-openid"),
        pytest.param({"openid": "o1", "session_key": "a2V5", "unionid": 7}, id="number-unionid"),
        pytest.param([1, 2], id="not-an-object"),
        pytest.param(OVERSIZED, id="over-64-kib"),
    ],
)
async def test_unusable_answer_is_502_bad_response(make_mp, answer):
    raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=answering(raw))) as bad:
        middleware, client = await make_mp(http_client=bad)
        response = await client.post(LOGIN, json={"code": VALID})
    assert (response.status_code, response.json()["error"]) == (502, "upstream_bad_response")
    assert middleware.backend.stored == 0


# --- secrets -----------------------------------------------------------------------------------


async def test_session_key_in_no_repr_log_or_default_answer(emulator, make_mp, caplog):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    response = await client.post(LOGIN, json={"code": code})
    assert response.status_code == 200
    (session_key,) = emulator._session_keys
    stored = middleware.backend.peek(flight_key("mp", emulator.appid, code)).outcome
    assert stored.session_key == session_key  # the app gets it in scope["wechat"]
    for text in (repr(stored), str(stored), repr(middleware), repr(middleware.client)):
        assert session_key not in text and emulator.secret not in text and code not in text
    assert session_key not in response.text
    assert session_key not in caplog.text and code not in caplog.text


def test_session_round_trips_and_validates():
    session = MiniProgramIdentity("oOpenId", "c2Vzc2lvbmtleQ==", unionid="oUnion", appid="wx1")
    assert MiniProgramIdentity.from_dict(json.loads(json.dumps(session.to_dict()))) == session
    with pytest.raises(ValueError):
        MiniProgramIdentity("", "key")
    with pytest.raises(ValueError):
        dataclasses.replace(session, session_key=None)
    assert MiniProgramIdentity.from_wechat({"openid": "o", "session_key": "k", "unionid": ""}) == (
        MiniProgramIdentity("o", "k")
    )


# --- one backend, two products -----------------------------------------------------------------


def test_web_keys_are_unchanged_and_products_are_apart():
    assert flight_key("", "wx1", "abc") == code_key("wx1", "abc")
    assert flight_key("mp", "wx1", "abc") != flight_key("", "wx1", "abc")
    assert flight_key("mp", "wx1", "abc") != flight_key("mp", "wx2", "abc")


async def check_products_kept_apart(emulator, upstream, backend) -> set[str]:
    """Both middlewares on ``backend`` and one appid (the emulator's): each flow works, and a
    string used as a code in both never gets the other flow's result (a web identity under a
    mini-program key would be someone else's login, or a 500). Returns the four keys; the
    caller closes the backend (the middlewares own nothing else here)."""
    options = {
        "appid": emulator.appid,
        "secret": emulator.secret,
        "api_base_url": WECHAT_URL,
        "http_client": upstream,
        "backend": backend,
    }
    web = WeChatOAuthMiddleware(mp_app(), **options)
    both = MiniProgramMiddleware(web, **options)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=both), base_url=APP_URL) as c:
        mp_code, web_code = emulator.issue_miniprogram_code(), emulator.issue_code()
        assert (await c.post(LOGIN, json={"code": mp_code})).status_code == 200
        assert (await c.get(f"{CALLBACK}?code={web_code}&state=s")).status_code == 200
        # A stored result of one flow is not the other's: each asks WeChat, which refuses.
        as_web = await c.get(f"{CALLBACK}?code={mp_code}&state=s")
        as_mp = await c.post(LOGIN, json={"code": web_code})
    assert (as_web.status_code, as_web.json()["error"]) == (400, "code_invalid")
    assert (as_mp.status_code, as_mp.json()["error"]) == (400, "code_invalid")
    assert emulator.calls == {"jscode2session": 2, "access_token": 2}
    return {flight_key(ns, emulator.appid, c) for ns in ("", "mp") for c in (mp_code, web_code)}


async def test_shared_memory_backend_keeps_web_and_miniprogram_codes_apart(emulator, upstream):
    backend = MemoryBackend()
    keys = await check_products_kept_apart(emulator, upstream, backend)
    stored = [backend.peek(key) for key in keys]  # results and errors, none of them a flight
    assert all(claim is not None and claim.outcome is not None for claim in stored)


async def test_counters_reach_prometheus_through_a_shared_counters_object(emulator, make_mp):
    from prometheus_client import CollectorRegistry, generate_latest

    from asgi_wechat_oauth import Counters
    from asgi_wechat_oauth.prometheus import WeChatOAuthCollector

    counters = Counters()
    registry = CollectorRegistry()
    registry.register(WeChatOAuthCollector(counters, prefix="wechat_miniprogram"))
    middleware, client = await make_mp(counters=counters)
    code = emulator.issue_miniprogram_code()
    await client.post(LOGIN, json={"code": code})
    await client.post(LOGIN, json={"code": code})
    await client.post(LOGIN, json={})
    text = generate_latest(registry).decode()
    assert "wechat_miniprogram_exchanges_total 1.0" in text
    assert "wechat_miniprogram_cache_hits_total 1.0" in text
    assert 'wechat_miniprogram_errors_total{reason="missing_code"} 1.0' in text


# --- the client alone and the constructor ------------------------------------------------------


async def test_client_alone(emulator, upstream):
    client = MiniProgramClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )
    code = emulator.issue_miniprogram_code()
    session = await client.code2session(code)
    assert (session.openid, session.appid) == (emulator.user.openid, emulator.appid)
    assert session.session_key in emulator._session_keys
    with pytest.raises(CodeRejected) as used:
        await client.code2session(code)
    assert (used.value.reason, used.value.errcode) == ("code_used", 40163)
    assert code not in str(used.value) and emulator.secret not in repr(client)


async def test_client_owns_and_closes_its_http_client():
    async with MiniProgramClient("wx1", "secret") as client:
        assert not client.http_client.is_closed
        owned = client.http_client
    assert owned.is_closed


@pytest.mark.parametrize(
    "options",
    [
        {"appid": ""},
        {"secret": ""},
        {"login_path": "login"},
        {"result_ttl": -1},
        {"exchange_timeout": 0},
    ],
)
def test_constructor_rejects_bad_options(options):
    with pytest.raises(ValueError):
        MiniProgramMiddleware(mp_app(), **{"appid": "wx1", "secret": "s", **options})


async def test_login_path_under_a_root_path(emulator, make_mp):
    middleware, client = await make_mp()
    code = emulator.issue_miniprogram_code()
    scope_app = httpx.ASGITransport(app=middleware, root_path="/api")
    async with httpx.AsyncClient(transport=scope_app, base_url=APP_URL) as mounted:
        response = await mounted.post(f"/api{LOGIN}", json={"code": code})
    assert response.status_code == 200, response.text


# --- the emulator's jscode2session -------------------------------------------------------------


async def test_emulator_codes_are_one_time_and_per_product(emulator, upstream):
    def params(code: str, **extra: str) -> dict[str, str]:
        return {
            "appid": emulator.appid,
            "secret": emulator.secret,
            "js_code": code,
            "grant_type": "authorization_code",
            **extra,
        }

    async def errcode(**query: str) -> int | None:
        response = await upstream.get("/sns/jscode2session", params=query)
        return response.json().get("errcode")

    code = emulator.issue_miniprogram_code()
    assert await errcode(**params(code)) is None
    assert [await errcode(**params(code)) for _ in range(2)] == [40163, 40029]
    assert emulator.exchange_count(code) == 3
    assert await errcode(**params(emulator.issue_code())) == 40029  # a web code
    foreign = emulator.issue_miniprogram_code(appid="wxanothermini0001")
    assert await errcode(**params(foreign)) == 40029
    assert await errcode(**params(emulator.issue_miniprogram_code(), appid="wxnope")) == 40013
    assert await errcode(**params(emulator.issue_miniprogram_code(), secret="nope")) == 40125
    assert await errcode(**params("")) == 41008
    web_at_mp = await upstream.get(
        "/sns/oauth2/access_token",
        params={**params(""), "code": emulator.issue_miniprogram_code()},
    )
    assert web_at_mp.json()["errcode"] == 40029  # a mini-program code is no web code
    issued = await upstream.post("/_emulator/miniprogram_code")
    assert await errcode(**params(issued.json()["code"])) is None
    assert emulator.calls["jscode2session"] == 9
