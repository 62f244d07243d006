"""Cookie tossing: a sibling subdomain sets a cookie for the parent domain under one of our
names. A tossed copy never wins: not the attacker's nonce with the attacker's code and state
(login CSRF), not a junk nonce (a lock-out), not a forged login counter (a 429). Over https
every cookie is a ``__Host-`` one, which no other host can set.

The Cookie headers here are written by hand, in either order a browser may send them (longer
path first; for equal paths, older first: a copy tossed after the victim's own comes after it,
and one tossed at ``Path=/`` always does), so that no order lets a tossed copy win.
tests/test_browser_cookies.py plays the same attacks in real Chromium.
"""

from __future__ import annotations

import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware
from asgi_wechat_oauth.testing import WeComMember
from asgi_wechat_oauth.wecom import WeComOAuthMiddleware
from support import CALLBACK, WECHAT_URL

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"
SITE = "http://app.example.test"
SECURE_SITE = "https://app.example.test"
NONCE = "wechat_oauth_nonce"
LOOPS = "wechat_oauth_logins"


@pytest.fixture
async def site(make_app):
    """``await site(base_url, **options)`` → (middleware, client of ``base_url``)."""
    clients: list[httpx.AsyncClient] = []

    async def make(base_url: str = SITE, **options):
        middleware, _ = await make_app(login_path=LOGIN, authorize_base_url=WECHAT_URL, **options)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=base_url)
        clients.append(client)
        return middleware, client

    yield make
    for client in clients:
        await client.aclose()


def set_cookies(response: httpx.Response) -> list[SimpleCookie]:
    found = []
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        found.append(cookie)
    return found


async def start_login(client: httpx.AsyncClient, name: str = NONCE) -> tuple[str, str]:
    """Ask the login endpoint for a login, as a browser would: ``(state, nonce)``."""
    response = await client.get(LOGIN)
    assert response.status_code == 302, response.text
    state = dict(parse_qsl(urlsplit(response.headers["location"]).query))["state"]
    (cookie,) = (c for c in set_cookies(response) if name in c)
    return state, cookie[name].value


async def callback(client, code, state, cookie_header, *, html=False):
    headers = {"cookie": cookie_header}
    if html:
        headers["accept"] = "text/html"
    return await client.get(CALLBACK, params={"code": code, "state": state}, headers=headers)


# --- the login nonce ---------------------------------------------------------------------------


@pytest.mark.parametrize("attacker_first", [True, False])
async def test_tossed_attacker_nonce_never_logs_the_victim_into_the_attackers_account(
    site, emulator, attacker_first
):
    _, victim = await site()
    _, attacker = await site()
    _, victim_nonce = await start_login(victim)  # the victim holds a login of their own
    attacker_state, attacker_nonce = await start_login(attacker)
    attacker_code = emulator.issue_code(openid="o-attacker")
    pairs = [f"{NONCE}={attacker_nonce}", f"{NONCE}={victim_nonce}"]
    if not attacker_first:
        pairs.reverse()
    response = await callback(victim, attacker_code, attacker_state, "; ".join(pairs))
    assert response.status_code == 403 and response.json()["error"] == "invalid_state"
    assert "o-attacker" not in response.text
    assert emulator.exchange_count(attacker_code) == 0


async def test_a_junk_tossed_nonce_does_not_stop_the_victims_own_login(site, emulator):
    _, victim = await site()
    state, nonce = await start_login(victim)
    code = emulator.issue_code()
    tossed = f"{NONCE}={nonce}; {NONCE}=junk"  # tossed after the login started: sent last
    first = await callback(victim, code, state, tossed, html=True)
    # Neither copy is trusted: the browser goes through login once more, and the answer
    # expires the tossed copy wherever a parent domain could have put it.
    assert first.status_code == 302
    assert urlsplit(first.headers["location"]).path == LOGIN
    expired = {
        (c[NONCE]["domain"], c[NONCE]["path"])
        for c in set_cookies(first)
        if NONCE in c and c[NONCE]["max-age"] == "0"
    }
    assert ("example.test", CALLBACK) in expired
    assert ("example.test", "/") in expired
    assert emulator.exchange_count(code) == 0  # nothing was traded on an untrusted cookie
    # The browser dropped the tossed copy; the login that follows works.
    state, nonce = await start_login(victim)
    code = emulator.issue_code()
    second = await callback(victim, code, state, f"{NONCE}={nonce}")
    assert second.status_code == 200 and second.json()["openid"] == emulator.user.openid
    assert emulator.exchange_count(code) == 1


async def test_one_copy_of_each_cookie_logs_in_as_before(site, emulator):
    _, victim = await site()
    state, nonce = await start_login(victim)
    code = emulator.issue_code()
    other = "session=abc; theme=dark"
    response = await callback(victim, code, state, f"{other}; {NONCE}={nonce}")
    assert response.status_code == 200 and response.json()["openid"] == emulator.user.openid


# --- https: __Host- cookies --------------------------------------------------------------------


async def test_https_login_sets_a_host_prefixed_cookie(site):
    _, client = await site(SECURE_SITE)
    response = await client.get(LOGIN)
    (header,) = response.headers.get_list("set-cookie")
    assert header.startswith(f"__Host-{NONCE}=")
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert {"path", "secure", "httponly", "samesite"} <= attributes
    assert "domain" not in attributes
    assert "Path=/;" in header


async def test_https_ignores_a_tossed_plain_cookie(site, emulator):
    _, victim = await site(SECURE_SITE)
    _, attacker = await site(SECURE_SITE)
    state, nonce = await start_login(victim, f"__Host-{NONCE}")
    attacker_state, attacker_nonce = await start_login(attacker, f"__Host-{NONCE}")
    attacker_code = emulator.issue_code(openid="o-attacker")
    # A sibling can toss only the plain name (browsers refuse a __Host- cookie with a Domain):
    # it is not read at all, so the attacker's login fails and the victim's own works.
    cookies = f"{NONCE}={attacker_nonce}; __Host-{NONCE}={nonce}"
    refused = await callback(victim, attacker_code, attacker_state, cookies)
    assert refused.status_code == 403 and emulator.exchange_count(attacker_code) == 0
    code = emulator.issue_code()
    response = await callback(victim, code, state, cookies)
    assert response.status_code == 200 and response.json()["openid"] == emulator.user.openid


@pytest.mark.parametrize("name", ["__Host-my_nonce", "my_nonce"])
async def test_nonce_cookie_accepts_a_host_prefixed_name(site, emulator, name):
    _, secure = await site(SECURE_SITE, nonce_cookie=name)
    state, nonce = await start_login(secure, "__Host-my_nonce")
    code = emulator.issue_code()
    response = await callback(secure, code, state, f"__Host-my_nonce={nonce}")
    assert response.status_code == 200
    _, plain = await site(SITE, nonce_cookie=name)
    state, nonce = await start_login(plain, "my_nonce")
    code = emulator.issue_code()
    assert (await callback(plain, code, state, f"my_nonce={nonce}")).status_code == 200


@pytest.mark.parametrize("name", ["a b", "__Host-", "__Host-a-b", "", "__Secure-x"])
def test_nonce_cookie_refuses_names_that_are_not_plain(downstream, name):
    with pytest.raises(ValueError, match="nonce_cookie must be a plain ASCII name"):
        WeChatOAuthConfig(appid="wx1", secret="s", login_path=LOGIN, nonce_cookie=name)
    with pytest.raises(ValueError, match="nonce_cookie must be a plain ASCII name"):
        WeComOAuthMiddleware(
            downstream, corpid="ww1", agentid="1", secret="s", login_path=LOGIN, nonce_cookie=name
        )


async def test_forwarded_https_names_the_cookie_host_prefixed_when_trusted(site, emulator):
    _, client = await site(SITE, trust_forwarded=True)
    response = await client.get(LOGIN, headers={"x-forwarded-proto": "https"})
    assert response.headers["set-cookie"].startswith(f"__Host-{NONCE}=")
    state = dict(parse_qsl(urlsplit(response.headers["location"]).query))["state"]
    nonce = set_cookies(response)[0][f"__Host-{NONCE}"].value
    code = emulator.issue_code()
    answer = await client.get(
        CALLBACK,
        params={"code": code, "state": state},
        headers={"x-forwarded-proto": "https", "cookie": f"__Host-{NONCE}={nonce}"},
    )
    assert answer.status_code == 200


# --- the login counter -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "forged",
    [
        f"99.{int(time.time())}.deadbeef",  # the unsigned form of before
        f"99.{int(time.time())}.deadbeef.{'0' * 32}",  # signed with a made-up MAC
    ],
)
async def test_a_forged_login_counter_is_ignored(site, forged):
    _, client = await site()
    response = await client.get(LOGIN, headers={"cookie": f"{LOOPS}={forged}"})
    assert response.status_code == 302  # not 429 login_loop


async def test_a_tossed_copy_of_a_genuine_counter_is_not_trusted(site, emulator):
    middleware, client = await site(login_loop_limit=2)
    counter = ""
    for _ in range(2):  # two real logins by another browser: a counter at the limit
        state, nonce = await start_login(client)
        code = emulator.issue_code()
        cookie = f"{NONCE}={nonce}" + (f"; {LOOPS}={counter}" if counter else "")
        response = await callback(client, code, state, cookie)
        assert response.status_code == 200
        counter = next(c for c in set_cookies(response) if LOOPS in c)[LOOPS].value
    assert (await client.get(LOGIN, headers={"cookie": f"{LOOPS}={counter}"})).status_code == 429
    # Tossed into a browser that has a counter of its own: neither copy is trusted.
    own = counter.replace(counter.split(".")[0], "1", 1)  # (its MAC no longer matches either)
    response = await client.get(LOGIN, headers={"cookie": f"{LOOPS}={own}; {LOOPS}={counter}"})
    assert response.status_code == 302
    assert any(c[LOOPS]["max-age"] == "0" for c in set_cookies(response) if LOOPS in c)


async def test_the_counter_is_signed_and_counts_real_logins(site, emulator):
    middleware, client = await site(login_loop_limit=3)
    counter = ""
    for expected in (1, 2, 3):
        state, nonce = await start_login(client)
        code = emulator.issue_code()
        cookie = f"{NONCE}={nonce}" + (f"; {LOOPS}={counter}" if counter else "")
        response = await callback(client, code, state, cookie)
        counter = next(c for c in set_cookies(response) if LOOPS in c)[LOOPS].value
        assert counter.startswith(f"{expected}.") and len(counter.split(".")) == 4
    response = await client.get(LOGIN, headers={"cookie": f"{LOOPS}={counter}"})
    assert response.status_code == 429 and response.json()["error"] == "login_loop"


# --- WeCom sets the same cookies ---------------------------------------------------------------


@pytest.fixture
async def wecom_site(wecom_emulator):
    made = []

    async def make(base_url: str = SITE):
        middleware = WeComOAuthMiddleware(
            _echo,
            corpid=wecom_emulator.corpid,
            agentid=wecom_emulator.agentid,
            secret=wecom_emulator.secret,
            login_path=LOGIN,
            callback_path=CALLBACK,
            api_base_url=wecom_emulator.url,
            http_client=wecom_emulator.http_client(),
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=base_url)
        made.append((middleware, client))
        return middleware, client

    yield make
    for middleware, client in made:
        await client.aclose()
        await middleware.aclose()


async def _echo(scope, receive, send):
    body = scope["wecom"].userid.encode() if "wecom" in scope else b"-"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_wecom_refuses_a_tossed_attacker_nonce(wecom_site, wecom_emulator):
    _, victim = await wecom_site()
    _, attacker = await wecom_site()
    _, victim_nonce = await start_login(victim, "wecom_oauth_nonce")
    attacker_state, attacker_nonce = await start_login(attacker, "wecom_oauth_nonce")
    code = wecom_emulator.issue_code(user=WeComMember(userid="attacker"))
    cookies = f"wecom_oauth_nonce={victim_nonce}; wecom_oauth_nonce={attacker_nonce}"
    response = await callback(victim, code, attacker_state, cookies)
    assert response.status_code == 403 and b"attacker" not in response.content


async def test_wecom_over_https_sets_a_host_prefixed_cookie(wecom_site):
    _, client = await wecom_site(SECURE_SITE)
    response = await client.get(LOGIN)
    assert response.headers["set-cookie"].startswith("__Host-wecom_oauth_nonce=")
    assert "Secure" in response.headers["set-cookie"]


def test_middleware_option_is_the_base_name(downstream):
    middleware = WeChatOAuthMiddleware(
        downstream, appid="wx1", secret="s", login_path=LOGIN, nonce_cookie="__Host-n"
    )
    assert middleware.nonce_cookie == "__Host-n"
