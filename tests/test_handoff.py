"""Desktop login through the official account: the desktop's QR page, the phone's login and
confirmation, the poll, the redemption (issue 30, part 1), over real HTTP to the emulator.

Two httpx clients play the two devices, each with its own cookies, against one middleware
(asyncio and trio, the memory backend); tests/test_handoff_redis.py plays them against two
middlewares sharing a real redis-server.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from asgi_wechat_oauth import WeChatOAuthConfig
from asgi_wechat_oauth._core.state import StateSigner
from asgi_wechat_oauth.backends import _memory
from asgi_wechat_oauth.errors import InvalidConfig
from asgi_wechat_oauth.testing import EmulatedUser, WeChatEmulator, handoff_login
from asgi_wechat_oauth.testing._browser import DESKTOP_USER_AGENT, WECHAT_USER_AGENT
from asgi_wechat_oauth.testing._handoff import HandoffPages
from support import APP_URL, CALLBACK, call_asgi, http_scope

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"
HTML = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"
DESKTOP = {"user-agent": DESKTOP_USER_AGENT, "accept": HTML}
PHONE = {"user-agent": WECHAT_USER_AGENT, "accept": HTML, "accept-language": "zh-CN,zh;q=0.9"}
JSON = {"accept": "application/json"}

Devices = Callable[..., Awaitable[tuple[Any, httpx.AsyncClient, httpx.AsyncClient]]]


@pytest.fixture
def devices(make_app: Any) -> Devices:
    """``await devices(**options)`` → (middleware, desktop, phone): two browsers of their own
    (cookie jars) in front of one middleware with a login endpoint."""

    async def make(**options: Any) -> tuple[Any, httpx.AsyncClient, httpx.AsyncClient]:
        middleware, desktop = await make_app(
            login_path=LOGIN, authorize_base_url="http://wechat.test", **options
        )
        phone = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=APP_URL)
        return middleware, desktop, phone

    return make


def attribute(page: str, pattern: str) -> str:
    match = re.search(pattern, page)
    assert match is not None, page[:500]
    return html.unescape(match.group(1))


async def desktop_page(desktop: httpx.AsyncClient, **params: str) -> tuple[str, str]:
    """The desktop's page: its login link and poll URL."""
    page = await desktop.get(LOGIN, params=params, headers=DESKTOP)
    assert page.status_code == 200, page.text
    link = attribute(page.text, r'id="wechat-login-link" href="([^"]+)"')
    return link, attribute(page.text, r'data-poll-url="([^"]+)"')


async def phone_scans(
    phone: httpx.AsyncClient, emulator: WeChatEmulator, link: str
) -> httpx.Response:
    """The phone opens the link in WeChat, consents, and is sent back: the confirmation."""
    to_wechat = await phone.get(link, headers=PHONE)
    assert to_wechat.status_code == 302, to_wechat.text
    async with emulator.http_client() as provider:
        consent = await provider.get(to_wechat.headers["location"].split("#")[0])
    return await phone.get(consent.headers["location"], headers=PHONE)


def form_of(confirm: httpx.Response) -> tuple[str, str]:
    action = attribute(confirm.text, r'<form method="post" action="([^"]+)"')
    return action, attribute(confirm.text, r'name="csrf" value="([^"]+)"')


# --- the whole login ---------------------------------------------------------------------------


async def test_the_desktop_logs_in_through_the_phone(devices, emulator):
    _, desktop, phone = await devices()
    shown: list[HandoffPages] = []
    answer = await handoff_login(desktop, phone, emulator, next="/after?x=1", pages=shown)
    assert answer.status_code == 200, answer.text
    me = answer.json()  # the app's own callback handler, with scope["wechat"]
    assert me["openid"] == emulator.user.openid
    assert me["next"] == "/after?x=1"  # the desktop's next, not the phone's
    assert answer.request.url.path == CALLBACK
    assert sum(emulator.exchanges.values()) == 1  # the phone's double callback: one exchange
    pages = shown[0]
    assert "app.test" in pages.confirm.text and "Chrome" in pages.confirm.text
    assert pages.done.status_code == 200 and 'id="title"' in pages.done.text


async def test_the_pytest_helper_plays_it_without_the_double_callback_too(devices, emulator):
    _, desktop, phone = await devices()
    answer = await handoff_login(desktop, phone, emulator, double=False)
    assert answer.json()["openid"] == emulator.user.openid
    assert answer.json()["next"] is None


async def test_the_phone_sees_the_identity_go_to_no_app(devices, emulator):
    """The phone's callback records the identity and asks; the app is not called there."""
    _, desktop, phone = await devices()
    link, _ = await desktop_page(desktop)
    confirm = await phone_scans(phone, emulator, link)
    assert confirm.status_code == 200
    assert confirm.headers["content-type"].startswith("text/html")
    assert '<form method="post"' in confirm.text
    assert emulator.user.openid not in confirm.text  # the app's handler would show it


# --- the desktop's page ------------------------------------------------------------------------


async def test_the_desktop_page_holds_the_link_the_poll_and_no_outside_url(devices):
    _, desktop, _ = await devices()
    page = await desktop.get(LOGIN, params={"next": "/x"}, headers=DESKTOP)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    link = attribute(page.text, r'id="wechat-login-link" href="([^"]+)"')
    poll = attribute(page.text, r'data-poll-url="([^"]+)"')
    assert link.startswith(f"{APP_URL}{LOGIN}?handoff=")
    handoff = parse_qs(urlsplit(link).query)["handoff"][0]
    assert re.fullmatch(r"[0-9a-f]{32}", handoff)
    assert "next" not in link  # the desktop's next stays in the backend
    assert poll == f"{LOGIN}?handoff_poll={handoff}"
    assert '<div class="qr" id="qr"><svg' in page.text and "<script>" in page.text
    # Nothing from elsewhere: no script, style, image or frame with a source.
    assert not re.search(r"<(script|img|iframe|link)[^>]+(src|href)=", page.text)
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("wechat_oauth_handoff=")
    assert "HttpOnly" in cookie and "Path=/" in cookie and "SameSite=Lax" in cookie


async def test_over_https_the_desktop_cookie_is_a_host_cookie(devices):
    _, desktop, _ = await devices(redirect_uri="https://app.test/wechat/callback")
    page = await desktop.get(LOGIN, headers=DESKTOP)
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("__Host-wechat_oauth_handoff=") and "Secure" in cookie


async def test_the_page_is_in_chinese_or_english(devices):
    _, desktop, _ = await devices()
    zh = await desktop.get(LOGIN, headers={**DESKTOP, "accept-language": "zh-CN,zh;q=0.9"})
    en = await desktop.get(LOGIN, headers={**DESKTOP, "accept-language": "en-US"})
    assert "微信扫码登录" in zh.text and '<html lang="zh-CN">' in zh.text
    assert "Log in with WeChat" in en.text and '<html lang="en">' in en.text


async def test_polls_answer_202_until_confirmed_then_the_redirect(devices, emulator):
    _, desktop, phone = await devices()
    link, poll = await desktop_page(desktop)
    waiting = await desktop.get(poll, headers=JSON)
    assert waiting.status_code == 202 and waiting.json() == {"status": "waiting"}
    calls = sum(emulator.calls.values())
    confirm = await phone_scans(phone, emulator, link)
    # Scanned, not confirmed: nothing is handed over yet.
    assert (await desktop.get(poll, headers=JSON)).status_code == 202
    handoff = parse_qs(urlsplit(link).query)["handoff"][0]
    early = await desktop.get(CALLBACK, params={"handoff": handoff}, headers=JSON)
    assert early.status_code == 410 and early.json()["error"] == "handoff_expired"
    action, csrf = form_of(confirm)
    await phone.post(action, data={"csrf": csrf, "answer": "confirm"}, headers=PHONE)
    calls = sum(emulator.calls.values())
    done = await desktop.get(poll, headers=JSON)
    assert done.status_code == 200
    assert done.json() == {"status": "confirmed", "redirect": f"{CALLBACK}?handoff={handoff}"}
    assert sum(emulator.calls.values()) == calls  # polls never call WeChat


async def test_a_second_tab_keeps_the_browser_cookie_so_both_work(devices, emulator):
    _, desktop, phone = await devices()
    first_link, first_poll = await desktop_page(desktop)
    _, second_poll = await desktop_page(desktop)
    assert (await desktop.get(second_poll, headers=JSON)).status_code == 202
    confirm = await phone_scans(phone, emulator, first_link)
    action, csrf = form_of(confirm)
    await phone.post(action, data={"csrf": csrf, "answer": "confirm"}, headers=PHONE)
    assert (await desktop.get(first_poll, headers=JSON)).status_code == 200


# --- once, in the browser that started it, within its lifetime --------------------------------


async def confirmed(devices: Devices, emulator: WeChatEmulator, **options: Any) -> tuple:
    middleware, desktop, phone = await devices(**options)
    link, poll = await desktop_page(desktop, next="/home")
    confirm = await phone_scans(phone, emulator, link)
    action, csrf = form_of(confirm)
    answer = await phone.post(action, data={"csrf": csrf, "answer": "confirm"}, headers=PHONE)
    assert answer.status_code == 200, answer.text
    redirect = (await desktop.get(poll, headers=JSON)).json()["redirect"]
    return middleware, desktop, phone, poll, redirect


async def test_the_handoff_works_once(devices, emulator):
    _, desktop, _, _, redirect = await confirmed(devices, emulator)
    first = await desktop.get(redirect, headers=DESKTOP)
    assert first.json()["openid"] == emulator.user.openid
    again = await desktop.get(redirect, headers=JSON)
    assert again.status_code == 410 and again.json()["error"] == "handoff_used"


async def test_two_redemptions_at_once_hand_over_one_login(devices, emulator):
    import anyio

    _, desktop, _, _, redirect = await confirmed(devices, emulator)
    answers: list[httpx.Response] = []

    async def redeem() -> None:
        answers.append(await desktop.get(redirect, headers=DESKTOP))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(redeem)
    assert sorted(a.status_code for a in answers) == [200, 410, 410, 410, 410]


async def test_only_the_browser_that_started_it_is_handed_the_login(devices, emulator):
    middleware, desktop, phone, poll, redirect = await confirmed(devices, emulator)
    stranger = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=APP_URL)
    async with stranger:
        polled = await stranger.get(poll, headers=JSON)
        assert polled.status_code == 403 and polled.json()["error"] == "handoff_not_yours"
        stolen = await stranger.get(redirect, headers=JSON)
        assert stolen.status_code == 403 and stolen.json()["error"] == "handoff_not_yours"
        # The phone itself (which saw the link) is a stranger to the desktop's cookie too.
        assert (await phone.get(redirect, headers=JSON)).status_code == 403
    # The refusals burnt nothing: the desktop still gets in.
    assert (await desktop.get(redirect, headers=DESKTOP)).json()["openid"] == emulator.user.openid


async def test_a_forged_desktop_cookie_is_refused(devices, emulator):
    _, desktop, _, poll, redirect = await confirmed(devices, emulator)
    desktop.cookies.set("wechat_oauth_handoff", "A" * 43, domain="app.test")
    assert (await desktop.get(redirect, headers=JSON)).status_code == 403


class _Later:
    """``time`` for the memory backend, ``ahead`` seconds in the future."""

    def __init__(self, ahead: float) -> None:
        import time

        self._time, self.ahead = time, ahead

    def monotonic(self) -> float:
        return self._time.monotonic() + self.ahead


async def test_an_expired_handoff_offers_a_fresh_qr_code(devices, emulator, monkeypatch):
    _, desktop, phone = await devices(handoff_ttl=30)
    page = await desktop.get(LOGIN, params={"next": "/n"}, headers=DESKTOP)
    link = attribute(page.text, r'id="wechat-login-link" href="([^"]+)"')
    poll = attribute(page.text, r'data-poll-url="([^"]+)"')
    assert 'data-ttl="30"' in page.text
    again = attribute(page.text, r'<a id="again" href="([^"]+)" hidden>')
    assert again == f"{LOGIN}?next=%2Fn"  # the same login page: a new handoff, a new QR code
    monkeypatch.setattr(_memory, "time", _Later(31))
    gone = await desktop.get(poll, headers=JSON)
    assert gone.status_code == 410 and gone.json()["error"] == "handoff_expired"
    # The phone is told before any trip to WeChat.
    late = await phone.get(link, headers={**PHONE, "accept-language": "en"})
    assert late.status_code == 410 and "This QR code has expired" in late.text
    assert sum(emulator.calls.values()) == 0
    fresh = await desktop.get(again, headers=DESKTOP)
    assert attribute(fresh.text, r'data-poll-url="([^"]+)"') != poll


async def test_a_confirmation_after_expiry_hands_nothing_over(devices, emulator, monkeypatch):
    _, desktop, phone = await devices(handoff_ttl=30)
    link, poll = await desktop_page(desktop)
    confirm = await phone_scans(phone, emulator, link)
    action, csrf = form_of(confirm)
    monkeypatch.setattr(_memory, "time", _Later(31))
    late = await phone.post(action, data={"csrf": csrf, "answer": "confirm"}, headers=PHONE)
    assert late.status_code == 410
    assert (await desktop.get(poll, headers=JSON)).status_code == 410


# --- the phone's confirmation ------------------------------------------------------------------


async def test_the_confirmation_names_the_site_the_browser_and_when(devices, emulator):
    _, desktop, phone = await devices()
    page = await desktop.get(
        LOGIN,
        headers={
            "accept": HTML,
            "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0",
        },
    )
    link = attribute(page.text, r'id="wechat-login-link" href="([^"]+)"')
    zh = await phone_scans(phone, emulator, link)
    assert "app.test" in zh.text and "Windows 上的 Edge 浏览器" in zh.text and "刚刚" in zh.text
    assert "确认登录" in zh.text and "取消" in zh.text
    # A refresh of the callback (a stored result) shows the same page, in English if asked.
    en = await phone.get(zh.request.url, headers={**PHONE, "accept-language": "en"})
    assert "Edge on Windows" in en.text and "just now" in en.text
    assert "If someone sent you this QR code, cancel" in en.text


async def test_the_confirmation_needs_the_phones_cookie_and_its_token(devices, emulator):
    middleware, desktop, phone = await devices()
    link, poll = await desktop_page(desktop)
    action, csrf = form_of(await phone_scans(phone, emulator, link))
    forged = await phone.post(action, data={"csrf": "0" * 32, "answer": "confirm"}, headers=JSON)
    assert forged.status_code == 403 and forged.json()["error"] == "handoff_not_yours"
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=APP_URL)
    async with other:  # the token without the phone's cookie: a cross-site POST, say
        posted = await other.post(action, data={"csrf": csrf, "answer": "confirm"}, headers=JSON)
        assert posted.status_code == 403
    assert (await desktop.get(poll, headers=JSON)).status_code == 202  # still nothing


async def test_a_confirmation_must_be_a_small_form(devices, emulator):
    _, desktop, phone = await devices()
    link, _ = await desktop_page(desktop)
    action, csrf = form_of(await phone_scans(phone, emulator, link))
    as_json = await phone.post(action, json={"csrf": csrf, "answer": "confirm"}, headers=JSON)
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_body"
    huge = await phone.post(action, data={"csrf": csrf, "x": "y" * 2000}, headers=JSON)
    assert huge.status_code == 413
    odd = await phone.post(action, data={"csrf": csrf, "answer": "maybe"}, headers=JSON)
    assert odd.status_code == 400


async def test_a_post_to_the_callback_without_a_handoff_is_still_405(devices):
    _, desktop, _ = await devices()
    answer = await desktop.post(CALLBACK, data={"code": "x"}, headers=JSON)
    assert answer.status_code == 405


async def test_the_phone_may_cancel(devices, emulator):
    _, desktop, phone = await devices()
    link, poll = await desktop_page(desktop)
    action, csrf = form_of(await phone_scans(phone, emulator, link))
    cancelled = await phone.post(
        action, data={"csrf": csrf, "answer": "cancel"}, headers={**PHONE, "accept-language": "en"}
    )
    assert cancelled.status_code == 200 and "Cancelled" in cancelled.text
    assert (await desktop.get(poll, headers=JSON)).status_code == 410


async def test_a_second_wechat_user_scanning_ends_the_handoff(devices, emulator):
    middleware, desktop, phone = await devices()
    link, poll = await desktop_page(desktop)
    action, csrf = form_of(await phone_scans(phone, emulator, link))
    emulator.user = EmulatedUser(openid="oSomeoneElse0000000000000001")
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=APP_URL)
    async with other:
        taken = await phone_scans(other, emulator, link)
    assert taken.status_code == 403 and "handoff_taken" in taken.text
    # Contested: nobody is handed the desktop, whose page offers a new QR code.
    assert (await desktop.get(poll, headers=JSON)).status_code == 410
    late = await phone.post(action, data={"csrf": csrf, "answer": "confirm"}, headers=JSON)
    assert late.status_code == 410


async def test_the_link_outside_wechat_says_to_open_it_in_wechat(devices):
    _, desktop, phone = await devices()
    link, _ = await desktop_page(desktop)
    android_chrome = (
        "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 "
        "Mobile Safari/537.36"
    )
    page = await phone.get(link, headers={"user-agent": android_chrome, "accept": HTML})
    assert page.status_code == 200 and html.escape(link) in page.text


async def test_a_malformed_handoff_id_is_a_400_and_no_trip_to_wechat(devices, emulator):
    _, _, phone = await devices()
    bad = await phone.get(LOGIN, params={"handoff": "nothex"}, headers=PHONE)
    assert bad.status_code == 400
    unknown = await phone.get(LOGIN, params={"handoff": "0" * 32}, headers={**PHONE, **JSON})
    assert unknown.status_code == 410 and unknown.json()["error"] == "handoff_expired"
    assert sum(emulator.calls.values()) == 0


async def test_a_phone_sent_through_login_again_stays_on_the_handoff(devices, emulator):
    """An unusable code (here, made up) re-authorizes once: the new login is for the same
    handoff, not a login of the phone itself."""
    _, desktop, phone = await devices()
    link, poll = await desktop_page(desktop)
    to_wechat = await phone.get(link, headers=PHONE)
    state = parse_qs(urlsplit(to_wechat.headers["location"]).query)["state"][0]
    again = await phone.get(CALLBACK, params={"code": "madeUp0001", "state": state}, headers=PHONE)
    assert again.status_code == 302
    handoff = parse_qs(urlsplit(link).query)["handoff"][0]
    assert parse_qs(urlsplit(again.headers["location"]).query)["handoff"] == [handoff]
    confirm = await phone_scans(phone, emulator, again.headers["location"])
    action, csrf = form_of(confirm)
    await phone.post(action, data={"csrf": csrf, "answer": "confirm"}, headers=PHONE)
    assert (await desktop.get(poll, headers=JSON)).status_code == 200


async def test_under_a_root_path_every_link_keeps_the_prefix(make_app, emulator):
    middleware, _ = await make_app(login_path=LOGIN, authorize_base_url="http://wechat.test")
    transport = httpx.ASGITransport(app=middleware, root_path="/app")
    async with (
        httpx.AsyncClient(transport=transport, base_url=APP_URL) as desktop,
        httpx.AsyncClient(transport=transport, base_url=APP_URL) as phone,
    ):
        page = await desktop.get(f"/app{LOGIN}", headers=DESKTOP)
        link = attribute(page.text, r'id="wechat-login-link" href="([^"]+)"')
        poll = attribute(page.text, r'data-poll-url="([^"]+)"')
        assert link.startswith(f"{APP_URL}/app{LOGIN}?handoff=")
        assert poll.startswith(f"/app{LOGIN}?handoff_poll=")
        answer = await handoff_login(desktop, phone, emulator, login_path=f"/app{LOGIN}")
        assert answer.request.url.path == f"/app{CALLBACK}"
        assert answer.json()["openid"] == emulator.user.openid


# --- who gets the handoff, and who keeps the old page -------------------------------------------


async def test_programs_keep_the_json_and_the_redirect(devices):
    _, desktop, _ = await devices()
    answer = await desktop.get(LOGIN, headers={"user-agent": DESKTOP_USER_AGENT, **JSON})
    assert answer.json() == {"open_in_wechat": True, "login_url": f"{APP_URL}{LOGIN}"}
    plain = await desktop.get(LOGIN, headers={"user-agent": "curl/8"})
    assert plain.status_code == 302


async def test_desktop_login_phone_keeps_the_open_in_wechat_page(devices):
    _, desktop, _ = await devices(desktop_login="phone")
    page = await desktop.get(LOGIN, headers=DESKTOP)
    assert "wechat-login-link" not in page.text and "data-poll-url" not in page.text
    assert '<code id="login-link">' in page.text


async def test_a_phone_browser_keeps_the_copy_the_link_page(devices):
    _, desktop, _ = await devices()
    iphone_safari = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
    )
    page = await desktop.get(LOGIN, headers={"user-agent": iphone_safari, "accept": HTML})
    assert "data-poll-url" not in page.text and 'id="copy"' in page.text


def test_the_options_are_checked_where_written():
    base = {"appid": "wx0123456789abcdef", "secret": "s" * 32, "login_path": "/login"}
    with pytest.raises(InvalidConfig, match="desktop_login"):
        WeChatOAuthConfig(**base, desktop_login="tablet")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="handoff_ttl"):
        WeChatOAuthConfig(**base, handoff_ttl=5)
    assert WeChatOAuthConfig(**base).desktop_login == "handoff"


# --- the login counted as a direct login ---------------------------------------------------------


async def test_the_redemption_is_counted_by_the_login_loop_guard(devices, emulator):
    _, desktop, _, _, redirect = await confirmed(devices, emulator)
    answer = await desktop.get(redirect, headers=DESKTOP)
    assert any(c.startswith("wechat_oauth_logins=") for c in answer.headers.get_list("set-cookie"))


# --- the signed state -----------------------------------------------------------------------


def test_the_state_says_which_handoff_and_cannot_lose_it():
    signer = StateSigner(b"k" * 32, max_age=600)
    state, cookie = signer.issue(None, handoff="ab" * 16)
    assert len(state) <= 128
    assert signer.verify(state, cookie).handoff == "ab" * 16
    plain, plain_cookie = signer.issue(None)
    assert signer.verify(plain, plain_cookie).handoff is None


async def test_a_non_ascii_csrf_token_is_a_403_not_a_500(devices, emulator):
    """``hmac.compare_digest`` raises TypeError for a str holding non-ASCII characters: a
    hostile form (any cookie, ``csrf=%C3%A9``) must be refused, not crash the request."""
    middleware, desktop, _ = await devices()
    link, poll = await desktop_page(desktop)
    handoff = parse_qs(urlsplit(link).query)["handoff"][0]
    hostile = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=APP_URL)
    async with hostile:
        answer = await hostile.post(
            f"{CALLBACK}?handoff={handoff}",
            content=b"csrf=%C3%A9&answer=confirm",
            headers={
                **JSON,
                "content-type": "application/x-www-form-urlencoded",
                "cookie": "wechat_oauth_nonce=anything",
            },
        )
    assert answer.status_code == 403 and answer.json()["error"] == "handoff_not_yours"
    assert (await desktop.get(poll, headers=JSON)).status_code == 202


async def test_anonymous_desktop_pages_do_not_push_out_a_real_logins_result(devices, emulator):
    """A late duplicate (a refresh of the callback URL) is answered from the stored result;
    a flood of desktop pages, which anyone can ask for, must not push that result out."""
    from asgi_wechat_oauth.backends import MemoryBackend

    _, desktop, phone = await devices(backend=MemoryBackend(max_entries=20))
    to_wechat = await phone.get(LOGIN, headers=PHONE)
    async with emulator.http_client() as provider:
        consent = await provider.get(to_wechat.headers["location"].split("#")[0])
    callback = consent.headers["location"]
    first = await phone.get(callback, headers=JSON)
    assert first.status_code == 200 and first.json()["openid"] == emulator.user.openid
    for _ in range(25):  # anyone's desktop page: no login, no cookie, no WeChat
        assert (await desktop.get(LOGIN, headers=DESKTOP)).status_code == 200
    again = await phone.get(callback, headers=JSON)
    assert again.status_code == 200, again.text
    assert sum(emulator.exchanges.values()) == 1


async def test_a_tossed_desktop_cookie_is_expired_by_the_desktop_page(devices, emulator):
    """Over http a sibling subdomain can toss a ``wechat_oauth_handoff`` cookie for the parent
    domain (at any path reaching the login or the callback): with two copies neither is
    trusted, so every poll or redemption of that browser is refused. The desktop page must
    expire the tossed copies, as the login endpoint does for its own cookie, or the browser
    can never log in this way again."""
    _, desktop, _ = await devices()
    tossed = "wechat_oauth_handoff=" + "A" * 43
    page = await desktop.get(
        "http://www.app.test/wechat/login",
        headers={**DESKTOP, "cookie": f"{tossed}; wechat_oauth_handoff={'B' * 43}"},
    )
    assert page.status_code == 200
    expiries = [
        value
        for value in page.headers.get_list("set-cookie")
        if "Domain=app.test" in value and "Max-Age=0" in value
    ]
    paths = {value.split("Path=")[1].split(";")[0] for value in expiries}
    assert {"/", "/wechat/login", CALLBACK} <= paths, page.headers.get_list("set-cookie")


async def test_a_next_in_raw_utf8_gets_the_desktop_page(devices, emulator):
    """Browsers send a non-ASCII ``next`` as raw UTF-8 bytes too; the login reads it (the
    earlier QR page did), and the handoff's own look at the query must not refuse it."""
    middleware, _, _ = await devices()
    headers = [(b"host", b"app.test"), *((k.encode(), v.encode()) for k, v in DESKTOP.items())]
    scope = http_scope(LOGIN, "next=/caf\u00e9".encode(), headers=headers)
    page = await call_asgi(middleware, scope)
    assert page.status == 200, page.body[:300]
    assert b'id="wechat-login-link"' in page.body
