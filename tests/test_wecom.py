"""WeComOAuthMiddleware end to end against the WeCom emulator: QR login and the authorize page
inside WeCom, one exchange per code (duplicates, late replays, workers sharing Redis), the
corp token shared and refreshed, re-authorization, declined logins, configuration errors and
WeCom being busy. Memory backend on asyncio and trio; Redis on asyncio."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.backends._codec import dump_outcome, load_outcome
from asgi_wechat_oauth.testing import Fault, WeComEmulator, WeComMember, double_callback
from asgi_wechat_oauth.wecom import (
    WeComIdentity,
    WeComOAuthMiddleware,
    WeComUserDetail,
    wecom_authorize_url,
    wecom_qr_login_url,
)

pytestmark = pytest.mark.anyio

APP_URL = "http://app.test"
WECOM_URL = "http://wecom.test"
CALLBACK = "/wecom/callback"
LOGIN = "/wecom/login"
IN_WECOM = "Mozilla/5.0 (Linux; Android 13) MicroMessenger/8.0 wxwork/4.1.22 Language/zh_CN"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"

Make = Callable[..., Awaitable[tuple[WeComOAuthMiddleware, httpx.AsyncClient]]]


@pytest.fixture
def wecom() -> WeComEmulator:
    return WeComEmulator(latency=0.03)  # duplicates overlap the exchange in flight


async def _identity(request: Request) -> JSONResponse:
    me: WeComIdentity = request.scope["wecom"]
    return JSONResponse(
        {
            "userid": me.userid,
            "openid": me.openid,
            "external_userid": me.external_userid,
            "has_ticket": me.user_ticket is not None,
            "mobile": me.detail.mobile if me.detail else None,
            "next": me.next,
        }
    )


async def _other(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"wecom={'wecom' in request.scope}")


@pytest.fixture
async def make(wecom: WeComEmulator) -> AsyncIterator[Make]:
    """``await make(**options)`` → ``(middleware, browser)``: the browser holds cookies and
    reaches the app at ``app.test`` and every WeCom host at ``wecom.test``."""
    made: list[tuple[WeComOAuthMiddleware, httpx.AsyncClient, httpx.AsyncClient]] = []

    async def factory(**options: Any) -> tuple[WeComOAuthMiddleware, httpx.AsyncClient]:
        upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=wecom))
        settings: dict[str, Any] = {
            "corpid": wecom.corpid,
            "agentid": wecom.agentid,
            "secret": wecom.secret,
            "login_path": LOGIN,
            "api_base_url": WECOM_URL,
            "authorize_base_url": WECOM_URL,
            "qr_login_base_url": WECOM_URL,
            "http_client": upstream,
            **options,
        }
        app = Starlette(routes=[Route(CALLBACK, _identity), Route("/other", _other)])
        middleware = WeComOAuthMiddleware(app, **settings)
        browser = httpx.AsyncClient(
            mounts={
                APP_URL: httpx.ASGITransport(app=middleware),
                WECOM_URL: httpx.ASGITransport(app=wecom),
            },
            base_url=APP_URL,
        )
        made.append((middleware, browser, upstream))
        return middleware, browser

    yield factory
    for middleware, browser, upstream in reversed(made):
        await browser.aclose()
        await middleware.aclose()
        await upstream.aclose()


async def walk(browser: httpx.AsyncClient, *, ua: str = DESKTOP, **params: str) -> str:
    """The login link, then WeCom's page (consent): the callback URL, not yet requested."""
    to_wecom = await browser.get(LOGIN, params=params, headers={"user-agent": ua})
    assert to_wecom.status_code == 302, to_wecom.text
    to_callback = await browser.get(to_wecom.headers["location"].split("#")[0])
    assert to_callback.status_code == 302, to_callback.text
    return str(to_callback.headers["location"])


def browser_for(middleware: WeComOAuthMiddleware, wecom: WeComEmulator) -> httpx.AsyncClient:
    """Another browser (its own cookie jar) on the same app."""
    return httpx.AsyncClient(
        mounts={
            APP_URL: httpx.ASGITransport(app=middleware),
            WECOM_URL: httpx.ASGITransport(app=wecom),
        },
        base_url=APP_URL,
    )


def code_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["code"][0]


# --- the two ways in --------------------------------------------------------------------------


async def test_outside_wecom_the_login_is_a_qr_login(make, wecom):
    _, browser = await make()
    to_wecom = await browser.get(LOGIN, params={"next": "/home"}, headers={"user-agent": DESKTOP})
    location = urlsplit(to_wecom.headers["location"])
    query = parse_qs(location.query)
    assert location.path == "/wwlogin/sso/login"
    assert query["login_type"] == ["CorpApp"]
    assert (query["appid"], query["agentid"]) == ([wecom.corpid], [wecom.agentid])
    assert query["redirect_uri"] == [f"{APP_URL}{CALLBACK}"]
    assert "wecom_oauth_nonce=" in to_wecom.headers["set-cookie"]
    callback = await browser.get(
        (await browser.get(to_wecom.headers["location"])).headers["location"]
    )
    assert callback.status_code == 200, callback.text
    assert callback.json() == {
        "userid": "zhangsan",
        "openid": None,
        "external_userid": None,
        "has_ticket": False,
        "mobile": None,
        "next": "/home",
    }
    assert (wecom.calls["qr_login"], wecom.calls["gettoken"], wecom.calls["getuserinfo"]) == (
        1,
        1,
        1,
    )


async def test_inside_wecom_the_authorize_page_with_private_info(make, wecom):
    _, browser = await make(fetch_profile=True, default_scope="snsapi_privateinfo")
    to_wecom = await browser.get(LOGIN, headers={"user-agent": IN_WECOM})
    location = to_wecom.headers["location"]
    assert location.startswith(f"{WECOM_URL}/connect/oauth2/authorize?appid={wecom.corpid}&")
    assert location.endswith(f"&agentid={wecom.agentid}#wechat_redirect")
    assert "scope=snsapi_privateinfo" in location
    callback = await browser.get((await browser.get(location.split("#")[0])).headers["location"])
    assert callback.status_code == 200, callback.text
    assert callback.json()["has_ticket"] is True
    assert callback.json()["mobile"] == wecom.user.mobile
    assert wecom.calls["getuserdetail"] == 1 and wecom.calls["gettoken"] == 1


async def test_a_non_member_gets_an_openid(make, wecom):
    wecom.user = WeComMember(member=False)
    _, browser = await make()
    response = await browser.get(await walk(browser))
    assert response.json()["userid"] is None
    assert response.json()["openid"] == wecom.user.openid
    assert response.json()["external_userid"] == wecom.user.external_userid


async def test_detail_failure_keeps_the_login(make, wecom, caplog):
    wecom.inject_fault(Fault.HTTP_502, endpoint="getuserdetail")
    _, browser = await make(fetch_profile=True)
    response = await browser.get(await walk(browser, ua=IN_WECOM, scope="snsapi_privateinfo"))
    assert response.status_code == 200
    assert response.json()["has_ticket"] is True and response.json()["mobile"] is None
    assert "wecom_oauth.user_detail_unavailable" in caplog.text


async def test_other_paths_pass_through(make):
    _, browser = await make()
    assert (await browser.get("/other")).text == "wecom=False"


# --- one exchange per code --------------------------------------------------------------------


async def test_the_double_callback_trades_the_code_once(make, wecom):
    _, browser = await make()
    url = await walk(browser, ua=IN_WECOM)
    response = await double_callback(browser, url)
    assert response.status_code == 200, response.text
    assert wecom.exchange_count(code_of(url)) == 1


async def test_concurrent_and_late_duplicates_share_one_exchange(make, wecom):
    middleware, browser = await make()
    url = await walk(browser)
    responses: list[httpx.Response] = []

    async def get() -> None:
        responses.append(await browser.get(url))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(get)
    responses.append(await browser.get(url))  # back button, minutes later
    assert {r.status_code for r in responses} == {200}
    assert wecom.exchange_count(code_of(url)) == 1
    assert middleware.counters.exchanges == 1


async def test_many_logins_on_a_cold_start_fetch_one_corp_token(make, wecom):
    middleware, _ = await make()
    browsers = [browser_for(middleware, wecom) for _ in range(20)]
    urls = [await walk(browser) for browser in browsers]
    statuses: list[int] = []

    async def get(browser: httpx.AsyncClient, url: str) -> None:
        statuses.append((await browser.get(url)).status_code)

    async with anyio.create_task_group() as tg:
        for browser, url in zip(browsers, urls, strict=True):
            tg.start_soon(get, browser, url)
    for browser in browsers:
        await browser.aclose()
    assert statuses == [200] * 20
    assert wecom.calls["gettoken"] == 1 and wecom.calls["getuserinfo"] == 20


@pytest.mark.parametrize("spoil", ["revoke", "expire"], ids=["40014", "42001"])
async def test_a_rejected_corp_token_is_refreshed_during_the_login(make, wecom, spoil):
    _, browser = await make()
    assert (await browser.get(await walk(browser))).status_code == 200
    getattr(wecom.tokens, spoil)()
    url = await walk(browser)
    assert (await browser.get(url)).status_code == 200
    assert wecom.calls["gettoken"] == 2


async def test_keys_are_namespaced_per_corp_and_agent(make, wecom):
    backend = MemoryBackend()
    _, browser = await make(backend=backend)
    url = await walk(browser)
    assert (await browser.get(url)).status_code == 200
    material = f"wecom:{wecom.corpid}:{wecom.agentid}:{code_of(url)}".encode()
    assert backend.knows(hashlib.sha256(material).hexdigest())
    # The same code under the web product's key (appid:code) is another entry altogether.
    assert not backend.knows(hashlib.sha256(f"{wecom.corpid}:{code_of(url)}".encode()).hexdigest())


# --- errors -----------------------------------------------------------------------------------


async def test_an_unusable_code_reauthorizes_once_then_fails_with_400(make, wecom):
    _, browser = await make()
    url = await walk(browser, next="/home")
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert (await browser.get(url)).status_code == 200
    # The code is spent; a stale URL with this state (a refresh long after) goes round again.
    again = await browser.get(f"{CALLBACK}?code=spentcode0001&state={state}")
    assert again.status_code == 302
    assert again.headers["location"] == f"{LOGIN}?scope=snsapi_base&retry=1&next=%2Fhome"
    retried_url = await walk(browser, scope="snsapi_base", retry="1", next="/home")
    retried_state = parse_qs(urlsplit(retried_url).query)["state"][0]
    failed = await browser.get(f"{CALLBACK}?code=spentcode0002&state={retried_state}")
    assert failed.status_code == 400
    assert failed.json()["error"] == "code_invalid"


async def test_a_declined_qr_login_is_a_clear_403_without_an_exchange(make, wecom):
    wecom.decline_qr_login = True
    _, browser = await make()
    to_wecom = await browser.get(LOGIN)
    back = (await browser.get(to_wecom.headers["location"])).headers["location"]
    assert "code=" not in back and "state=" in back
    response = await browser.get(back)
    assert response.status_code == 403
    assert response.json()["error"] == "login_declined"
    assert wecom.calls["getuserinfo"] == 0 and wecom.calls["gettoken"] == 0


@pytest.mark.parametrize(
    ("errcode", "meaning"),
    [
        (60020, "trusted IPs"),
        (40056, "agentid"),
        (50001, "trusted domain"),
        (40013, "corpid"),
    ],
)
async def test_configuration_errcodes_are_500_logged_at_error(
    make, wecom, caplog, errcode, meaning
):
    wecom.inject_errcode(errcode, endpoint="getuserinfo")
    _, browser = await make()
    response = await browser.get(await walk(browser))
    assert response.status_code == 500
    assert response.json()["error"] == "configuration_error"
    assert meaning in response.json()["message"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"errcode={errcode}" in m and meaning in m for m in errors)


async def test_a_wrong_secret_is_a_configuration_error(make, wecom):
    _, browser = await make(secret="not-the-agent-secret")
    response = await browser.get(await walk(browser))
    assert response.status_code == 500
    assert "corpsecret" in response.json()["message"]
    assert wecom.calls["getuserinfo"] == 0


async def test_busy_is_retried_once(make, wecom):
    wecom.inject_fault(Fault.BUSY, endpoint="getuserinfo")
    _, browser = await make()
    url = await walk(browser)
    assert (await browser.get(url)).status_code == 200
    assert wecom.exchange_count(code_of(url)) == 2


async def test_busy_twice_is_a_502(make, wecom):
    wecom.inject_fault(Fault.BUSY, count=2, endpoint="getuserinfo")
    _, browser = await make()
    response = await browser.get(await walk(browser))
    assert response.status_code == 502 and response.json()["error"] == "upstream_busy"


async def test_bad_requests_never_reach_wecom(make, wecom):
    _, browser = await make()
    url = await walk(browser)
    assert (await browser.post(url)).status_code == 405
    assert (await browser.get(f"{CALLBACK}?code=abc")).json()["error"] == "invalid_state"
    assert (await browser.get(f"{CALLBACK}?code=a%20b&state=x")).status_code == 400
    assert (await browser.get(f"{LOGIN}?scope=snsapi_userinfo")).json()["error"] == "invalid_scope"
    assert wecom.calls["getuserinfo"] == 0


async def test_a_code_with_another_browsers_state_is_refused(make, wecom):
    _, alice = await make()
    url = await walk(alice)
    _, mallory = await make()
    response = await mallory.get(url)  # no nonce cookie for this state
    assert response.status_code == 403
    assert wecom.exchange_count(code_of(url)) == 0


# --- the identity -----------------------------------------------------------------------------


def test_identity_is_frozen_validated_and_safe_to_print():
    detail = WeComUserDetail("zhangsan", mobile="13800000000", email="z@example.com")
    identity = WeComIdentity(
        "ww1", "1000002", userid="zhangsan", user_ticket="T" * 20, detail=detail
    )
    text = repr(identity)
    assert "T" * 20 not in text and "13800000000" not in text and "z@example.com" not in text
    with pytest.raises(AttributeError):
        identity.userid = "lisi"  # type: ignore[misc]
    assert load_outcome(dump_outcome(identity)) == identity
    for bad in (
        {"userid": "a", "openid": "b"},
        {},
        {"userid": 42},
        {"userid": "None\n"},
        {"userid": "x" * 200},
        {"openid": "\ud800"},
    ):
        with pytest.raises(ValueError):
            WeComIdentity.from_wecom(bad, corpid="ww1", agentid="1")


def test_login_urls_have_the_documented_shape():
    assert wecom_authorize_url("ww1", "1000002", "https://a.example/cb?x=1", state="S") == (
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=ww1"
        "&redirect_uri=https%3A%2F%2Fa.example%2Fcb%3Fx%3D1&response_type=code"
        "&scope=snsapi_base&state=S&agentid=1000002#wechat_redirect"
    )
    assert wecom_qr_login_url("ww1", "1000002", "https://a.example/cb", state="S") == (
        "https://login.work.weixin.qq.com/wwlogin/sso/login?login_type=CorpApp&appid=ww1"
        "&agentid=1000002&redirect_uri=https%3A%2F%2Fa.example%2Fcb&state=S"
    )
    with pytest.raises(ValueError):
        wecom_authorize_url("ww1", "1", "https://a.example/", scope="snsapi_userinfo")


def test_options_are_checked():
    app = Starlette()
    base = {"corpid": "ww1", "agentid": "1", "secret": "s" * 16}
    for bad in (
        {"callback_path": "cb"},
        {"default_scope": "snsapi_login"},
        {"on_invalid_code": "reauthorize"},
        {"exchange_timeout": 0},
        {"login_path": "/wecom/callback"},
    ):
        with pytest.raises(ValueError):
            WeComOAuthMiddleware(app, **{**base, **bad})
    with pytest.raises(ValueError):
        WeComOAuthMiddleware(app, corpid="", agentid="1", secret="s")


# --- the emulator -----------------------------------------------------------------------------


async def test_emulator_codes_are_one_time_and_tokens_checked(wecom):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wecom), base_url=WECOM_URL) as c:
        bad = await c.get("/cgi-bin/gettoken", params={"corpid": wecom.corpid, "corpsecret": "x"})
        assert bad.json()["errcode"] == 40001
        token = (
            await c.get(
                "/cgi-bin/gettoken", params={"corpid": wecom.corpid, "corpsecret": wecom.secret}
            )
        ).json()["access_token"]
        code = wecom.issue_code()
        params = {"access_token": token, "code": code}
        first = await c.get("/cgi-bin/auth/getuserinfo", params=params)
        second = await c.get("/cgi-bin/auth/getuserinfo", params=params)
        assert first.json()["userid"] == "zhangsan" and second.json()["errcode"] == 40029
        wecom.tokens.expire()
        expired = await c.get("/cgi-bin/auth/getuserinfo", params=params)
        assert expired.json()["errcode"] == 42001
        wecom.tokens.revoke()
        revoked = await c.get("/cgi-bin/auth/getuserinfo", params=params)
        assert revoked.json()["errcode"] == 40014
        stats = (await c.get("/_emulator/stats")).json()
        # The two calls refused for their token never reached the code: not exchanges of it.
        assert stats["exchanges"][code] == 2 and stats["calls"]["gettoken"] == 2
        bad_page = await c.get("/wwlogin/sso/login", params={"login_type": "ServiceApp"})
        assert bad_page.status_code == 400


# --- Redis: workers sharing one server --------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_redis_workers_trade_each_code_once_with_one_corp_token(make, wecom, redis_server):
    from asgi_wechat_oauth.backends.redis import RedisBackend

    prefix = f"wecom-{uuid.uuid4().hex[:8]}"
    secret = b"s" * 32
    workers = [
        await make(backend=RedisBackend(redis_server.url, prefix=prefix), state_secret=secret)
        for _ in range(3)
    ]
    browsers = [browser_for(workers[0][0], wecom) for _ in range(6)]
    urls = [await walk(browser) for browser in browsers]
    statuses: list[int] = []

    async def get(worker: httpx.AsyncClient, url: str, cookies: httpx.Cookies) -> None:
        # The browser's callback (and its duplicates) reach any worker behind the balancer.
        nonce = cookies["wecom_oauth_nonce"]
        response = await worker.get(url, headers={"cookie": f"wecom_oauth_nonce={nonce}"})
        statuses.append(response.status_code)

    async with anyio.create_task_group() as tg:
        for browser, url in zip(browsers, urls, strict=True):
            for _, worker in workers:
                tg.start_soon(get, worker, url, browser.cookies)
    for browser in browsers:
        await browser.aclose()
    assert statuses == [200] * 18
    assert [wecom.exchange_count(code_of(url)) for url in urls] == [1] * 6
    assert wecom.calls["gettoken"] == 1


async def test_on_error_replaces_the_answer(make, wecom):
    def page(scope, error):
        return PlainTextResponse(f"sorry: {error.reason}", status_code=error.status_code)

    wecom.decline_qr_login = True
    _, browser = await make(on_error=page)
    to_wecom = await browser.get(LOGIN)
    response = await browser.get(
        (await browser.get(to_wecom.headers["location"])).headers["location"]
    )
    assert (response.status_code, response.text) == (403, "sorry: login_declined")


async def test_a_token_keeper_of_the_apps_own_is_used_and_left_open(make, wecom):
    from asgi_wechat_oauth.tokens import AccessTokenKeeper, WeComTokenFetcher

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wecom)) as upstream:
        fetcher = WeComTokenFetcher(
            wecom.corpid, wecom.secret, api_base_url=WECOM_URL, http_client=upstream
        )
        keeper = AccessTokenKeeper(fetcher)
        token = await keeper.get()
        middleware, browser = await make(token_keeper=keeper)
        assert middleware.token_keeper is keeper
        assert (await browser.get(await walk(browser))).status_code == 200
        await middleware.aclose()
        assert await keeper.get() == token  # still usable: the app owns it
        assert wecom.calls["gettoken"] == 1
        await keeper.aclose()


async def test_browsers_get_a_page_that_says_wecom(make, wecom):
    html = {"accept": "text/html,application/xhtml+xml", "accept-language": "zh-CN,zh;q=0.9"}
    wecom.decline_qr_login = True
    _, browser = await make()
    to_wecom = await browser.get(LOGIN, headers=html)
    back = (await browser.get(to_wecom.headers["location"])).headers["location"]
    declined = await browser.get(back, headers=html)
    assert declined.status_code == 403
    assert declined.headers["content-type"].startswith("text/html")
    # The button starts the same login again (its scope, and its next when it had one).
    assert "没有完成授权" in declined.text
    assert 'href="/wecom/login?scope=snsapi_base"' in declined.text
    wecom.decline_qr_login = False
    wecom.inject_fault(Fault.BUSY, count=2, endpoint="getuserinfo")
    busy = await browser.get(await walk(browser), headers=html)
    assert busy.status_code == 502 and "企业微信繁忙" in busy.text


async def test_a_declined_qr_login_logs_in_again_to_the_same_next(make, wecom):
    """The page after a login declined in WeCom starts the same login again (issue 28): its
    button keeps the scope and ``next``; nothing is traded."""
    wecom.decline_qr_login = True
    _, browser = await make()
    back = await walk(browser, next="/orders/42")
    declined = await browser.get(back, headers={"accept": "text/html", "user-agent": DESKTOP})
    assert declined.status_code == 403 and "login_declined" in declined.text
    assert 'href="/wecom/login?scope=snsapi_base&amp;next=%2Forders%2F42"' in declined.text
    assert wecom.calls["getuserinfo"] == 0


async def test_max_codes_per_state_is_an_option_here_too(make, wecom):
    """The option the web login had, from the options both share: one state and its cookie
    trade at most this many distinct codes; past it, 403 before any call to WeCom."""
    _, browser = await make(max_codes_per_state=1, on_invalid_code="error")
    url = await walk(browser)
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert (await browser.get(url)).status_code == 200
    refused = await browser.get(f"{CALLBACK}?code=madeupcode0001&state={state}")
    assert refused.status_code == 403
    assert refused.json()["error"] == "too_many_codes"
    assert wecom.calls["getuserinfo"] == 1
