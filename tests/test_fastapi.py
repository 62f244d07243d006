"""``asgi_wechat_oauth.fastapi``: each product's identity as a FastAPI dependency (web, WeCom,
mini-program) on its own route, a clear 401 everywhere else, and nothing of it in the OpenAPI
schema. End to end against the emulators."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, get_origin

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from _miniprogram_app import LOGIN as MP_LOGIN
from asgi_wechat_oauth import WeChatIdentity
from asgi_wechat_oauth.fastapi import (
    LoginRequired,
    MiniProgramUser,
    WeChatLoginRequired,
    WeChatUser,
    WeComUser,
    miniprogram_identity,
    wechat_identity,
    wecom_identity,
)
from asgi_wechat_oauth.miniprogram import MiniProgramIdentity, MiniProgramMiddleware
from asgi_wechat_oauth.testing import (
    WeComEmulator,
    double_callback,
    double_login,
    miniprogram_login,
    wecom_login,
)
from asgi_wechat_oauth.wecom import WeComIdentity, WeComOAuthMiddleware
from support import APP_URL, CALLBACK, WECHAT_URL

WECOM_CALLBACK = "/wecom/callback"

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


# --- WeCom and the mini-program -------------------------------------------------------------


@pytest.fixture
def wecom() -> WeComEmulator:
    return WeComEmulator(latency=0.03)  # the double callback overlaps the exchange


def build_wecom_api() -> tuple[FastAPI, list[WeComIdentity]]:
    api = FastAPI()
    seen: list[WeComIdentity] = []

    @api.get(WECOM_CALLBACK)
    async def callback(user: WeComUser) -> dict[str, object]:
        seen.append(user)
        return {"userid": user.userid, "member": user.is_member, "next": user.next}

    @api.get("/desk")
    async def desk(user: WeComUser) -> dict[str, str | None]:
        return {"userid": user.userid}  # never reached: no identity outside the callback

    return api, seen


@pytest.fixture
async def wecom_browser(wecom: WeComEmulator) -> AsyncIterator[Callable[[FastAPI], Any]]:
    """``wecom_browser(api)``: the WeCom middleware around ``api`` and a browser that reaches
    both it and the emulator."""
    closing: list[Any] = []

    def make(api: FastAPI) -> httpx.AsyncClient:
        upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=wecom))
        api.add_middleware(
            WeComOAuthMiddleware,
            corpid=wecom.corpid,
            agentid=wecom.agentid,
            secret=wecom.secret,
            login_path="/wecom/login",
            api_base_url=wecom.url,
            authorize_base_url=wecom.url,
            qr_login_base_url=wecom.url,
            http_client=upstream,
        )
        browser = httpx.AsyncClient(
            mounts={
                APP_URL: httpx.ASGITransport(app=api),
                wecom.url: httpx.ASGITransport(app=wecom),
            },
            base_url=APP_URL,
        )
        closing.extend([browser, upstream])
        return browser

    yield make
    for client in closing:
        await client.aclose()


async def test_wecom_callback_route_gets_the_identity_from_the_dependency(wecom, wecom_browser):
    api, seen = build_wecom_api()
    browser = wecom_browser(api)
    response = await wecom_login(browser, wecom, next="/desk")  # WeCom's browser, twice
    assert response.status_code == 200, response.text
    assert response.json() == {"userid": wecom.user.userid, "member": True, "next": "/desk"}
    assert {type(user) for user in seen} == {WeComIdentity}
    assert wecom.total_exchanges == 1


async def test_wecom_dependency_elsewhere_is_a_clear_401(wecom, wecom_browser):
    api, _ = build_wecom_api()
    browser = wecom_browser(api)
    response = await browser.get("/desk")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("WeCom")
    detail = response.json()["detail"]
    assert detail["error"] == "wecom_login_required"
    assert "WeComOAuthMiddleware" in detail["message"] and "callback_path" in detail["message"]


class Login(BaseModel):
    """The mini-program's login body, as the route declares it."""

    code: str
    scene: int | None = None


def build_miniprogram_api() -> FastAPI:
    api = FastAPI()

    @api.post(MP_LOGIN)
    async def login(user: MiniProgramUser, body: Login) -> dict[str, object]:
        # The body, replayed by the middleware, is FastAPI's to parse as usual.
        return {"openid": user.openid, "unionid": user.unionid, "scene": body.scene}

    @api.get("/me")
    async def me(user: MiniProgramUser) -> dict[str, str]:
        return {"openid": user.openid}  # never reached: no session outside the login route

    @api.get(CALLBACK)
    async def web_callback(user: MiniProgramUser) -> dict[str, str]:
        return {"openid": user.openid}  # never reached: the web identity is not a session

    return api


async def test_mini_program_login_route_gets_the_session_from_the_dependency(emulator, make_mp):
    _, client = await make_mp(app=build_miniprogram_api())
    emulator.latency = 0.05
    code = emulator.issue_miniprogram_code()
    response = await double_login(client, code)  # the first request cut off, then retried
    assert response.status_code == 200, response.text
    assert response.json() == {"openid": emulator.user.openid, "unionid": None, "scene": None}
    assert emulator.exchange_count(code) == 1
    scene = await client.post(
        MP_LOGIN, json={"code": emulator.issue_miniprogram_code(), "scene": 1001}
    )
    assert scene.json()["scene"] == 1001


async def test_mini_program_dependency_elsewhere_is_a_clear_401(emulator, make_app, upstream):
    api = build_miniprogram_api()
    # The web middleware too: its identity, under the same scope key, is not a session.
    mp = MiniProgramMiddleware(
        api,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=WECHAT_URL,
        http_client=upstream,
    )
    _, client = await make_app(app=mp)
    for response in (
        await client.get("/me"),
        await client.get(CALLBACK, params={"code": emulator.issue_code()}),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == 'WeChat realm="wechat-miniprogram"'
        detail = response.json()["detail"]
        assert detail["error"] == "miniprogram_login_required"
        assert "MiniProgramMiddleware" in detail["message"] and "login_path" in detail["message"]
    await mp.aclose()


async def test_the_web_dependency_refuses_a_mini_program_session(emulator, make_mp):
    api = FastAPI()

    @api.post(MP_LOGIN)
    async def login(user: WeChatUser) -> dict[str, str]:
        return {"openid": user.openid}  # never reached: a session is not a web identity

    _, client = await make_mp(app=api)
    response = await miniprogram_login(client, emulator, double=False)
    assert response.status_code == 401
    assert response.json()["detail"]["error"] == "wechat_login_required"


async def test_one_handler_for_every_product(wecom, wecom_browser):
    api, _ = build_wecom_api()

    @api.get("/shop")
    async def shop(user: MiniProgramUser) -> dict[str, str]:
        return {"openid": user.openid}

    @api.exception_handler(LoginRequired)
    async def login_first(request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"/login?why={exc.detail['error']}", status_code=303)

    browser = wecom_browser(api)
    desk, shop_page = await browser.get("/desk"), await browser.get("/shop")
    assert desk.headers["location"] == "/login?why=wecom_login_required"
    assert shop_page.headers["location"] == "/login?why=miniprogram_login_required"
    assert issubclass(WeChatLoginRequired, LoginRequired)


@pytest.mark.parametrize(
    ("alias", "kind", "dependency"),
    [
        (WeChatUser, WeChatIdentity, wechat_identity),
        (WeComUser, WeComIdentity, wecom_identity),
        (MiniProgramUser, MiniProgramIdentity, miniprogram_identity),
    ],
)
def test_every_alias_is_an_annotated_dependency(alias, kind, dependency):
    assert get_origin(alias) is Annotated
    assert alias.__origin__ is kind
    assert alias.__metadata__[0].dependency is dependency
