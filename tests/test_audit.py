"""Defects found by the second outside-style review (issue 18), each pinned by the request or
upstream answer that exposed it; on asyncio and trio."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from asgi_wechat_oauth import WeChatOAuthClient, WeChatOAuthMiddleware
from asgi_wechat_oauth.errors import WeChatOAuthError
from asgi_wechat_oauth.miniprogram import MiniProgramClient, MiniProgramMiddleware
from asgi_wechat_oauth.tokens import StableTokenFetcher, WeComTokenFetcher
from asgi_wechat_oauth.wecom import WeComOAuthMiddleware
from support import call_asgi, http_scope

pytestmark = pytest.mark.anyio

UPSTREAM = "http://upstream.test"


def answering(answers: dict[str, bytes]) -> httpx.AsyncClient:
    """An HTTP client whose upstream answers each path with fixed bytes (200, JSON), as a
    broken or hostile WeChat might."""

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        body = answers.get(scope["path"], b"{}")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=upstream))


def wecom(**options: Any) -> WeComOAuthMiddleware:
    return WeComOAuthMiddleware(
        _ok, corpid="wwaudit", agentid="1000001", secret="audit-corpsecret", **options
    )


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


# --- the mini-program's Content-Length --------------------------------------------------------


@pytest.mark.parametrize("length", ["\u00b2", "\u00b9\u00b3"])
async def test_a_content_length_of_superscript_digits_is_a_400_not_a_500(length):
    """Header values arrive as latin-1: ``"²".isdigit()`` is true, but ``int("²")`` raises."""
    middleware = MiniProgramMiddleware(_ok, appid="wxaudit", secret="audit-secret")
    scope = http_scope("/wechat/miniprogram/login", method="POST")
    scope["headers"] += [
        (b"content-type", b"application/json"),
        (b"content-length", length.encode("latin-1")),
    ]
    response = await call_asgi(middleware, scope)
    assert response.status == 400
    assert b'"invalid_body"' in response.body
    await middleware.aclose()


# --- token answers with an expiry no clock can hold --------------------------------------------

_HUGE_EXPIRY = b'{"errcode": 0, "access_token": "TOKEN", "expires_in": 1' + b"0" * 400 + b"}"


@pytest.mark.parametrize("fetcher_class", [WeComTokenFetcher, StableTokenFetcher])
async def test_a_token_answer_with_a_huge_integer_expiry_is_a_bad_response(fetcher_class):
    """``expires_in`` of 10**400 is a valid JSON integer; ``time.time() + expires_in`` raised
    ``OverflowError`` out of the fetcher."""
    async with answering(
        {"/cgi-bin/gettoken": _HUGE_EXPIRY, "/cgi-bin/stable_token": _HUGE_EXPIRY}
    ) as http:
        fetcher = fetcher_class("wxaudit", "audit-secret", api_base_url=UPSTREAM, http_client=http)
        with pytest.raises(WeChatOAuthError) as caught:
            await fetcher.fetch(force_refresh=False, margin=300)
    assert caught.value.reason == "upstream_bad_response"
    assert caught.value.status_code == 502


async def test_a_wecom_login_with_a_huge_token_expiry_is_502_without_a_crash(caplog):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    answers = {"/cgi-bin/gettoken": _HUGE_EXPIRY, "/cgi-bin/auth/getuserinfo": b'{"userid": "u"}'}
    async with answering(answers) as http:
        middleware = wecom(
            api_base_url=UPSTREAM,
            http_client=http,
            verify_state=False,
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=middleware), base_url="http://app.test"
        ) as browser:
            response = await browser.get("/wecom/callback", params={"code": "c1", "state": "s"})
        await middleware.aclose()
    assert response.status_code == 502
    assert "upstream_bad_response" in response.text
    assert "exchange_crashed" not in caplog.text


# --- JSON nested deeper than the parser's recursion limit --------------------------------------

#: Under the 64 KiB answer cap, and far deeper than ``json.loads`` can recurse.
_DEEP_JSON = b"[" * 30_000 + b"]" * 30_000

Call = Callable[[httpx.AsyncClient], Awaitable[object]]


async def _jscode2session(http: httpx.AsyncClient) -> object:
    client = MiniProgramClient("wxaudit", "audit-secret", api_base_url=UPSTREAM, http_client=http)
    return await client.code2session("audit-code")


async def _oauth_access_token(http: httpx.AsyncClient) -> object:
    client = WeChatOAuthClient("wxaudit", "audit-secret", api_base_url=UPSTREAM, http_client=http)
    return await client.exchange_code("audit-code")


@pytest.mark.parametrize("call", [_jscode2session, _oauth_access_token])
async def test_an_upstream_answer_nested_too_deep_is_a_bad_response(call: Call):
    """``json.loads`` raises ``RecursionError`` (not ``ValueError``) for deep nesting, which
    escaped the clients raw (and the middlewares logged it as a crashed exchange)."""
    paths = ("/sns/jscode2session", "/sns/oauth2/access_token")
    async with answering(dict.fromkeys(paths, _DEEP_JSON)) as http:
        with pytest.raises(WeChatOAuthError) as caught:
            await call(http)
    assert caught.value.reason == "upstream_bad_response"


# --- an infinite state_max_age ----------------------------------------------------------------


def test_an_infinite_state_max_age_is_refused_at_construction():
    """``state_max_age=inf`` passed validation, then every login answered 500 (the cookie's
    ``Max-Age`` is ``int(state_max_age)``). (The web middleware's own config check is
    tightened on the harden-core branch.)"""
    with pytest.raises(ValueError, match="state_max_age"):
        wecom(
            login_path="/wecom/login",
            state_max_age=math.inf,
        )


@pytest.mark.parametrize("product", ["web", "wecom"])
def test_an_infinite_login_loop_window_is_refused_at_construction(product):
    """``login_loop_window=inf`` passed validation, then every login answered 500 after its
    code was traded (the loop cookie's ``Max-Age`` is ``int(login_loop_window)``)."""
    with pytest.raises(ValueError, match="login_loop_window"):
        if product == "web":
            WeChatOAuthMiddleware(
                _ok, appid="wxaudit", secret="audit-secret", login_loop_window=math.inf
            )
        else:
            wecom(
                login_loop_window=math.inf,
            )


@pytest.mark.parametrize("option", ["result_ttl", "exchange_timeout"])
@pytest.mark.parametrize("product", ["miniprogram", "wecom"])
def test_a_nan_ttl_or_timeout_is_refused_at_construction(product, option):
    """NaN slipped past ``< 0`` / ``<= 0``: ``exchange_timeout=nan`` answered every login
    500, ``result_ttl=nan`` stored nothing, so a retried request traded its code again."""
    with pytest.raises(ValueError, match=option):
        if product == "miniprogram":
            MiniProgramMiddleware(_ok, appid="wxaudit", secret="audit-secret", **{option: math.nan})
        else:
            wecom(
                **{option: math.nan},
            )
