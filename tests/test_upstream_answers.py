"""Hostile or broken answers from WeChat's API: every field is validated before it becomes an
identity (502 ``upstream_bad_response`` from the middleware, ``WeChatOAuthError`` from the
client, never a raw exception or the openid ``"None"``), and once the token is obtained nothing
that goes wrong with ``sns/userinfo`` loses the login.

``Answering`` plays WeChat: the emulator answers, except on the paths the test takes over.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from asgi_wechat_oauth import AccessToken, UserInfo, WeChatOAuthClient
from asgi_wechat_oauth.errors import UpstreamError
from asgi_wechat_oauth.testing import Fault, WeChatEmulator
from support import CALLBACK, WECHAT_URL

pytestmark = pytest.mark.anyio

HANG = "hang"


class Answering:
    """The emulator, with the answers of some paths replaced: bytes (HTTP 200, ``text/plain``),
    an exception to raise (a transport fault as ``ASGITransport`` surfaces it), or ``HANG``.
    The emulator still sees the request first, so the code is really spent."""

    def __init__(self, emulator: WeChatEmulator, answers: dict[str, Any]) -> None:
        self.emulator = emulator
        self.answers = answers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        answer = self.answers.get(scope["path"]) if scope["type"] == "http" else None
        if answer is None:
            await self.emulator(scope, receive, send)
            return

        async def discard(message: Any) -> None:  # the emulator's own answer is replaced
            pass

        await self.emulator(scope, receive, discard)
        if answer == HANG:
            await anyio.sleep_forever()
        if isinstance(answer, BaseException):
            raise answer
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
async def answering(emulator) -> AsyncIterator[tuple[dict[str, Any], httpx.AsyncClient]]:
    """``(answers, http_client)``: put a path's answer in ``answers``."""
    answers: dict[str, Any] = {}
    transport = httpx.ASGITransport(app=Answering(emulator, answers))
    async with httpx.AsyncClient(transport=transport, base_url=WECHAT_URL) as http:
        yield answers, http


GOOD_TOKEN = {
    "access_token": "ACCESS_forged_0001",
    "expires_in": 7200,
    "refresh_token": "REFRESH_forged_0001",
    "openid": "oForgedOpenId",
    "scope": "snsapi_base",
}


def _token_answer(**changes: Any) -> bytes:
    answer = {**GOOD_TOKEN, **changes}
    return json.dumps({k: v for k, v in answer.items() if v is not _ABSENT}).encode()


_ABSENT = object()

BAD_TOKEN_ANSWERS = {
    "openid null": _token_answer(openid=None),
    "openid missing": _token_answer(openid=_ABSENT),
    "openid empty": _token_answer(openid=""),
    "openid a number": _token_answer(openid=12345),
    "openid a list": _token_answer(openid=["o"]),
    "openid with spaces": _token_answer(openid="o o"),
    "openid with a control": _token_answer(openid="o\n"),
    "access_token null": _token_answer(access_token=None),
    "access_token missing": _token_answer(access_token=_ABSENT),
    "access_token empty": _token_answer(access_token=""),
    "access_token an object": _token_answer(access_token={"a": 1}),
    "refresh_token null": _token_answer(refresh_token=None),
    "refresh_token missing": _token_answer(refresh_token=_ABSENT),
    "expires_in 1e400": _token_answer(expires_in="X").replace(b'"X"', b"1e400"),
    "expires_in negative": _token_answer(expires_in=-1),
    "expires_in huge": _token_answer(expires_in=10**30),
    "expires_in NaN": _token_answer(expires_in="X").replace(b'"X"', b"NaN"),
    "expires_in Infinity": _token_answer(expires_in="X").replace(b'"X"', b"-Infinity"),
    "expires_in true": _token_answer(expires_in=True),
    "expires_in a string": _token_answer(expires_in="7200"),
    "is_snapshotuser true": _token_answer(is_snapshotuser=True),
    "is_snapshotuser 2": _token_answer(is_snapshotuser=2),
    "is_snapshotuser '1'": _token_answer(is_snapshotuser="1"),
    "unionid a number": _token_answer(unionid=7),
    "scope a number": _token_answer(scope=5),
    "expires_in of 5000 digits": _token_answer(expires_in="X").replace(b'"X"', b"9" * 5000),
    "nested 50,000 deep": b"[" * 50_000 + b"]" * 50_000,  # RecursionError in json.loads
    "not an object": b'["openid"]',
    "errcode true": b'{"errcode": true, "errmsg": "?"}',
    "errcode a string": b'{"errcode": "0", "openid": "o", "access_token": "a"}',
}


@pytest.mark.parametrize("answer", BAD_TOKEN_ANSWERS.values(), ids=BAD_TOKEN_ANSWERS.keys())
async def test_bad_token_answer_is_upstream_bad_response(emulator, make_app, answering, answer):
    answers, http = answering
    answers["/sns/oauth2/access_token"] = answer
    middleware, client = await make_app(http_client=http)
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code()}&state=s1")
    assert response.status_code == 502, response.text
    assert response.json()["error"] == "upstream_bad_response"


@pytest.mark.parametrize("answer", BAD_TOKEN_ANSWERS.values(), ids=BAD_TOKEN_ANSWERS.keys())
async def test_client_raises_wechat_errors_for_bad_answers(emulator, answering, answer):
    answers, http = answering
    answers["/sns/oauth2/access_token"] = answer
    answers["/sns/oauth2/refresh_token"] = answer
    wechat = WeChatOAuthClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=http
    )
    with pytest.raises(UpstreamError) as exchanged:
        await wechat.exchange_code(emulator.issue_code())
    with pytest.raises(UpstreamError) as refreshed:
        await wechat.refresh_access_token("REFRESH_stored")
    for raised in (exchanged.value, refreshed.value):
        assert (raised.reason, raised.status_code) == ("upstream_bad_response", 502)
        # The parser's exception, which may hold the answer (tokens), is not chained.
        assert raised.__context__ is None or raised.__suppress_context__


def test_optional_token_fields_tolerate_absence_and_never_become_none():
    minimal = {"openid": "o1", "access_token": "a1", "refresh_token": "r1"}
    token = AccessToken.from_wechat(minimal)
    assert (token.scope, token.expires_in, token.unionid, token.is_snapshotuser) == (
        "",
        7200,
        None,
        False,
    )
    nulls = AccessToken.from_wechat(
        {**minimal, "scope": None, "expires_in": None, "unionid": None, "is_snapshotuser": None}
    )
    assert nulls == token
    assert "'None'" not in repr(nulls)
    assert AccessToken.from_wechat({**minimal, "expires_in": 7200.0}).expires_in == 7200
    assert AccessToken.from_wechat({**minimal, "is_snapshotuser": 1}).is_snapshotuser


def test_profile_fields_fall_back_and_never_become_none():
    info = UserInfo.from_wechat(
        {
            "openid": "o1",
            "nickname": None,
            "sex": 1e400,
            "province": 3,
            "city": None,
            "headimgurl": ["x"],
            "privilege": ["a", None, 2, "b"],
            "unionid": None,
        }
    )
    assert info == UserInfo(openid="o1", privilege=("a", "b"))
    assert "'None'" not in repr(info)
    with pytest.raises(ValueError):
        UserInfo.from_wechat({"openid": None})
    with pytest.raises(ValueError):
        UserInfo.from_wechat({"openid": "o1", "unionid": 12})


# --- sns/userinfo after the token: the login always succeeds ------------------------------------


class Boom(Exception):
    """A fault nobody planned for, raised where the HTTP call is made."""


USERINFO_FAILURES: dict[str, Any] = {
    "errcode 40029": b'{"errcode": 40029, "errmsg": "invalid code"}',
    "errcode 40163": b'{"errcode": 40163, "errmsg": "code been used"}',
    "errcode 41002": b'{"errcode": 41002, "errmsg": "appid missing"}',
    "errcode 40001": b'{"errcode": 40001, "errmsg": "invalid credential"}',
    "openid null": b'{"openid": null, "nickname": "x"}',
    "openid a number": b'{"openid": 5}',
    "another user's openid": b'{"openid": "oSomeoneElse", "nickname": "x"}',
    "not JSON": b"<html>oops</html>",
    "transport error": ConnectionResetError("reset by peer"),
    "unexpected exception": Boom("surprise"),
    "timeout": HANG,
}


@pytest.mark.parametrize("answer", USERINFO_FAILURES.values(), ids=USERINFO_FAILURES.keys())
async def test_userinfo_failure_after_the_token_keeps_the_login(
    emulator, make_app, answering, caplog, answer
):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    answers, http = answering
    answers["/sns/userinfo"] = answer
    middleware, client = await make_app(http_client=http, exchange_timeout=1.0)
    url = f"{CALLBACK}?code={emulator.issue_code('snsapi_userinfo')}&state=s1"
    response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.json()["openid"] == emulator.user.openid
    assert response.json()["nickname"] is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split()[0] for r in warnings] == ["wechat_oauth.userinfo_unavailable"]
    # The login is the code's stored outcome: a late duplicate gets it, WeChat saw one exchange.
    again = await client.get(url)
    assert again.status_code == 200
    assert again.json()["openid"] == emulator.user.openid
    assert emulator.total_exchanges == 1


async def test_userinfo_http_error_keeps_the_login(emulator, make_app):
    emulator.inject_fault(Fault.HTTP_500, endpoint="userinfo")
    middleware, client = await make_app()
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code('snsapi_userinfo')}")
    assert response.status_code == 200
    assert response.json()["nickname"] is None
