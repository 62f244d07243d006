"""``asgi_wechat_oauth.fastapi``: the identity as a FastAPI dependency on the callback route, a
clear 401 everywhere else, and nothing of it in the OpenAPI schema."""

from __future__ import annotations

import importlib
import sys

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from asgi_wechat_oauth import WeChatIdentity
from asgi_wechat_oauth.fastapi import WeChatLoginRequired, WeChatUser, wechat_identity
from asgi_wechat_oauth.testing import double_callback
from support import APP_URL, CALLBACK

pytestmark = pytest.mark.anyio


def build_api() -> tuple[FastAPI, list[WeChatIdentity]]:
    """An API whose callback and profile routes both ask for ``WeChatUser``; the identities the
    callback route received are recorded."""
    api = FastAPI()
    seen: list[WeChatIdentity] = []

    @api.get(CALLBACK)
    async def callback(user: WeChatUser) -> dict[str, object]:
        seen.append(user)
        nickname = user.userinfo.nickname if user.userinfo else None
        return {"openid": user.openid, "nickname": nickname, "state": user.state}

    @api.get("/profile")
    async def profile(user: WeChatUser) -> dict[str, str]:
        return {"openid": user.openid}  # never reached: no identity outside the callback

    return api, seen


async def test_callback_route_gets_the_identity_from_the_dependency(make_app, emulator):
    api, seen = build_api()
    _, client = await make_app(app=api)
    code = emulator.issue_code("snsapi_userinfo")
    response = await client.get(CALLBACK, params={"code": code, "state": "s1"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "openid": emulator.user.openid,
        "nickname": emulator.user.nickname,
        "state": "s1",
    }
    assert isinstance(seen[0], WeChatIdentity)
    assert emulator.exchange_count(code) == 1


async def test_double_callback_reaches_the_route_with_one_exchange(make_app, emulator):
    api, seen = build_api()
    _, client = await make_app(app=api)
    emulator.latency = 0.05
    code = emulator.issue_code("snsapi_userinfo")
    response = await double_callback(client, f"{CALLBACK}?code={code}&state=s")
    assert response.status_code == 200
    assert response.json()["openid"] == emulator.user.openid
    assert emulator.exchange_count(code) == 1
    assert {identity.openid for identity in seen} == {emulator.user.openid}


async def test_dependency_elsewhere_is_a_clear_401(make_app):
    api, _ = build_api()
    _, client = await make_app(app=api)
    response = await client.get("/profile")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("WeChat")
    detail = response.json()["detail"]
    assert detail["error"] == "wechat_login_required"
    assert "callback route" in detail["message"] and "callback_path" in detail["message"]


async def test_without_the_middleware_the_callback_route_is_401_not_500():
    api, seen = build_api()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url=APP_URL
    ) as client:
        response = await client.get(CALLBACK, params={"code": "abc", "state": "s"})
    assert response.status_code == 401
    assert response.json()["detail"]["error"] == "wechat_login_required"
    assert seen == []


async def test_failed_callbacks_are_answered_by_the_middleware_before_the_route(make_app, emulator):
    api, seen = build_api()
    _, client = await make_app(app=api)
    missing = await client.get(CALLBACK, params={"state": "s"})
    assert (missing.status_code, missing.json()["error"]) == (400, "missing_code")
    used = await client.get(CALLBACK, params={"code": "never-issued", "state": "s"})
    assert (used.status_code, used.json()["error"]) == (400, "code_invalid")
    assert seen == []


async def test_the_app_can_turn_the_401_into_a_redirect_to_the_login(make_app):
    api, _ = build_api()

    @api.exception_handler(WeChatLoginRequired)
    async def login_first(request, exc) -> RedirectResponse:
        return RedirectResponse(f"/wechat/login?next={request.url.path}", status_code=303)

    _, client = await make_app(app=api)
    response = await client.get("/profile")
    assert response.status_code == 303
    assert response.headers["location"] == "/wechat/login?next=/profile"


async def test_openapi_schema_shows_no_parameter_for_the_dependency(make_app):
    api, _ = build_api()
    _, client = await make_app(app=api)
    schema = (await client.get("/openapi.json")).json()
    assert "parameters" not in schema["paths"][CALLBACK]["get"]
    assert "parameters" not in schema["paths"]["/profile"]["get"]


def test_the_alias_is_an_annotated_dependency():
    metadata = WeChatUser.__metadata__  # type: ignore[attr-defined]
    assert WeChatUser.__origin__ is WeChatIdentity  # type: ignore[attr-defined]
    assert metadata[0].dependency is wechat_identity


def test_missing_fastapi_gives_an_import_error_naming_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "asgi_wechat_oauth.fastapi")
    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an uninstalled package looks like
    with pytest.raises(ImportError, match=r"pip install 'asgi-wechat-oauth\[fastapi\]'"):
        importlib.import_module("asgi_wechat_oauth.fastapi")
