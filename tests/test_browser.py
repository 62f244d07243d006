"""A real browser through the WeChat browser's double callback, and the emulator page that plays it.

The emulator's consent page (``double_navigation`` on) does in the browser what the WeChat
in-app browser does: it navigates to the callback, aborts that request, and 19 ms after the
first navigation reissues the authorize request with ``uin``, ``key`` and ``pass_ticket``, which
redirects to the callback again with the same code. Headless Chromium (Debian's ``chromium``,
driven by Playwright with ``executable_path``) runs it against the Starlette example served by
uvicorn, with the emulator served by another uvicorn. The test skips when Chromium or Playwright
is missing (and fails in CI, where ``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from _chromium import CHROMIUM_ARGS, playwright_and_chromium
from _servers import ROOT, emulator_process, emulator_stats, free_port, process, uvicorn_args
from asgi_wechat_oauth._core.state import StateSigner, derive_state_secret
from asgi_wechat_oauth.testing import WeChatEmulator
from support import APP_URL

NICKNAME = WeChatEmulator().user.nickname
SCREENSHOT = ROOT / "artifacts" / "browser-login.png"
CALLBACK_URL = f"{APP_URL}/wechat/callback"
AUTHORIZE = "/connect/oauth2/authorize"


def authorize_params(emulator: WeChatEmulator, **extra: str) -> dict[str, str]:
    return {
        "appid": emulator.appid,
        "redirect_uri": CALLBACK_URL,
        "response_type": "code",
        "scope": "snsapi_userinfo",
        "state": "abc123",
        **extra,
    }


def page_urls(page: str) -> tuple[str, str]:
    """The two URLs the emulated WeChat page navigates to: the callback, then the reissue."""
    first, reissue = re.findall(r'var \w+ = ("[^"]*");', page)
    return first.strip('"'), reissue.strip('"')


# --- the emulator's WeChat browser page, in-process --------------------------------------------


@pytest.mark.anyio
async def test_default_consent_is_a_plain_redirect(emulator, upstream):
    response = await upstream.get(AUTHORIZE, params=authorize_params(emulator))
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"{CALLBACK_URL}?code=")


@pytest.mark.anyio
async def test_double_navigation_page_sends_two_callbacks_with_one_code(emulator, upstream):
    emulator.double_navigation = True
    response = await upstream.get(AUTHORIZE, params=authorize_params(emulator))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "window.stop()" in response.text
    first, reissue = page_urls(response.text)
    assert first.startswith(f"{CALLBACK_URL}?code=") and first.endswith("&state=abc123")

    query = parse_qs(urlsplit(reissue).query)
    assert urlsplit(reissue).path == AUTHORIZE
    assert {"uin", "key", "pass_ticket"} <= set(query)
    assert query["state"] == ["abc123"] and query["appid"] == [emulator.appid]

    second = await upstream.get(reissue)  # the reissued authorize request
    assert second.status_code == 302
    assert second.headers["location"] == first  # the same callback: the same code
    assert emulator.calls["authorize_reissued"] == 1

    # A pass_ticket is good for one reissue; a stale one is a new consent and a new code.
    third = await upstream.get(reissue)
    assert third.status_code == 200 and page_urls(third.text)[0] != first


@pytest.mark.anyio
async def test_qr_login_is_never_double_navigated(emulator, upstream):
    emulator.double_navigation = True
    params = authorize_params(emulator, scope="snsapi_login")
    response = await upstream.get("/connect/qrconnect", params=params)
    assert response.status_code == 302


@pytest.mark.anyio
async def test_page_escapes_what_it_embeds(emulator, upstream):
    emulator.double_navigation = True
    params = authorize_params(emulator, redirect_uri="http://app.test/cb?x=</script><b>")
    response = await upstream.get(AUTHORIZE, params=params)
    assert "</script><b>" not in response.text
    assert "\\u003c/script\\u003e" in response.text


@pytest.mark.anyio
async def test_settings_switch_double_navigation_and_reset_forgets_pending_pages(
    emulator, upstream
):
    on = await upstream.post("/_emulator/settings", params={"double_navigation": "1"})
    assert on.json()["double_navigation"] is True
    assert (await upstream.get("/_emulator/stats")).json()["double_navigation"] is True
    page = await upstream.get(AUTHORIZE, params=authorize_params(emulator))
    _, reissue = page_urls(page.text)
    emulator.reset()
    emulator.double_navigation = False
    assert (await upstream.get(reissue)).headers["location"] != page_urls(page.text)[0]
    bad = await upstream.post("/_emulator/settings", params={"double_navigation": "maybe"})
    assert bad.status_code == 400
    off = await upstream.post("/_emulator/settings", params={"double_navigation": "off"})
    assert off.json()["double_navigation"] is False


# --- headless Chromium against real servers ----------------------------------------------------


@pytest.fixture
def chromium() -> tuple[Any, str]:
    """Playwright's sync API and Chromium (see tests/_chromium.py)."""
    return playwright_and_chromium()


@pytest.fixture
def servers() -> Iterator[tuple[str, str]]:
    """The emulator (as the WeChat browser, answering slowly enough that the duplicate arrives
    mid-exchange) and the Starlette example with its login flow, each under uvicorn."""
    with emulator_process(latency=0.3) as emulator_url:
        httpx.post(
            f"{emulator_url}/_emulator/settings", params={"double_navigation": "1"}
        ).raise_for_status()
        port = free_port()
        defaults = WeChatEmulator()
        env = {
            "WECHAT_APPID": defaults.appid,
            "WECHAT_SECRET": defaults.secret,
            "WECHAT_REDIS_URL": "",  # one worker, the memory backend
            "WECHAT_API_BASE_URL": emulator_url,
            "WECHAT_AUTHORIZE_BASE_URL": emulator_url,
            "WECHAT_LOGIN_PATH": "/wechat/login",
            "WECHAT_SESSION_SECRET": secrets.token_urlsafe(32),
        }
        args = uvicorn_args("examples.starlette_app:app", port)
        with process(args, port, env) as app:
            yield app.url, emulator_url


def metric(app_url: str, name: str) -> float:
    text = httpx.get(f"{app_url}/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} missing from /metrics"
    return float(found.group(1))


@pytest.mark.browser
@pytest.mark.slow
def test_real_browser_logs_in_through_the_wechat_double_callback(chromium, servers, capsys):
    sync_api, executable = chromium
    app_url, emulator_url = servers
    SCREENSHOT.parent.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(user_agent=WECHAT_UA)  # the WeChat browser, as emulated
            page.set_default_timeout(20_000)
            requests = []
            # A lambda: Playwright cannot register a builtin method such as list.append.
            page.on("request", lambda request: requests.append(request))
            try:
                page.goto(f"{app_url}/")
                page.click("#login")
                page.wait_for_selector("text=Hello,")
                heading, final_url = page.inner_text("h1"), page.url
            finally:
                page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    with capsys.disabled():
        print(f"\nscreenshot: {SCREENSHOT}")

    assert heading == f"Hello, {NICKNAME}"
    assert urlsplit(final_url).path == "/"

    # The browser sent the callback twice with one code, the first one cut off, the second
    # after the authorize request was reissued with WeChat's extra parameters.
    callbacks = [r for r in requests if r.url.startswith(f"{app_url}/wechat/callback?")]
    assert len(callbacks) == 2, [r.url for r in requests]
    assert callbacks[0].url == callbacks[1].url
    assert callbacks[0].failure == "net::ERR_ABORTED"
    assert callbacks[1].failure is None
    reissues = [r for r in requests if "pass_ticket=" in r.url]
    assert len(reissues) == 1
    assert {"uin", "key", "pass_ticket"} <= set(parse_qs(urlsplit(reissues[0].url).query))
    code = parse_qs(urlsplit(callbacks[0].url).query)["code"][0]

    # WeChat saw one exchange for that code, and the app received both callbacks: the second
    # waited for (or reused) the first one's exchange.
    stats = emulator_stats(emulator_url)
    assert stats["exchanges"] == {code: 1}
    assert metric(app_url, "wechat_oauth_exchanges_total") == 1
    shared = metric(app_url, "wechat_oauth_deduplicated_total")
    assert shared + metric(app_url, "wechat_oauth_cache_hits_total") == 1


# --- what a WeChat user sees when a login cannot complete --------------------------------------

#: WeChat's in-app browser on Android, Chinese UI (``MicroMessenger/``, ``Language/zh_CN``).
WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 "
    "MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN "
    "ABI/arm64"
)
PHONE = {"width": 390, "height": 844}


@pytest.mark.anyio
async def test_emulator_settings_switch_snapshot_mode(emulator, upstream):
    on = await upstream.post("/_emulator/settings", params={"snapshot": "1"})
    assert on.status_code == 200 and emulator.user.snapshot is True
    await upstream.post("/_emulator/settings", params={"snapshot": "0"})
    assert emulator.user.snapshot is False


@pytest.fixture
def page_servers() -> Iterator[tuple[str, str, WeChatEmulator]]:
    """The emulator (plain redirects) and the Starlette example with its login flow and
    ``snapshot_users="reject"``, each under uvicorn."""
    defaults = WeChatEmulator()
    with emulator_process() as emulator_url:
        port = free_port()
        env = {
            "WECHAT_APPID": defaults.appid,
            "WECHAT_SECRET": defaults.secret,
            "WECHAT_REDIS_URL": "",
            "WECHAT_API_BASE_URL": emulator_url,
            "WECHAT_AUTHORIZE_BASE_URL": emulator_url,
            "WECHAT_LOGIN_PATH": "/wechat/login",
            "WECHAT_SNAPSHOT_USERS": "reject",
            "WECHAT_SESSION_SECRET": secrets.token_urlsafe(32),
        }
        with process(uvicorn_args("examples.starlette_app:app", port), port, env) as app:
            yield app.url, emulator_url, defaults


def _phone(browser: Any, locale: str) -> Any:
    """A page in a phone-sized context with WeChat's User-Agent and ``locale``'s language."""
    context = browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale=locale,
        user_agent=WECHAT_UA,
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def _shown(page: Any, name: str) -> tuple[int, str, str, str, str]:
    """``(status, heading, button text, button target, all text)`` of the page now shown;
    saves a screenshot."""
    path = ROOT / "artifacts" / f"page-{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    status = page.evaluate("performance.getEntriesByType('navigation')[0].responseStatus")
    button = page.locator("#action")
    assert button.is_visible()
    heading, text = page.inner_text("h1"), page.inner_text("body")
    return status, heading, button.inner_text(), button.get_attribute("href"), text


def _open_expired(browser: Any, locale: str, callback: str, cookie: str) -> Any:
    """A phone that still has the login cookie opens the expired callback."""
    page = _phone(browser, locale)
    page.context.add_cookies(
        [{"name": "wechat_oauth_nonce", "value": cookie, "domain": "127.0.0.1",
          "path": "/wechat/callback"}]
    )  # fmt: skip
    page.goto(callback)
    return page


def _log_in(browser: Any, app_url: str, emulator_url: str, **settings: object) -> Any:
    """A Chinese phone taps the example's login link, with the emulator set up to fail."""
    httpx.post(f"{emulator_url}/_emulator/settings", params=settings).raise_for_status()
    page = _phone(browser, "zh-CN")
    page.goto(f"{app_url}/")
    page.click("#login")
    page.wait_for_selector("#action")
    return page


def _expired_login(app_url: str, emulator: WeChatEmulator) -> tuple[str, str]:
    """A callback URL whose state (for ``next=/orders/42``, already retried once) expired an
    hour ago, and the login cookie that goes with it."""
    signer = StateSigner(derive_state_secret(emulator.secret), max_age=600)
    state, cookie = signer.issue("/orders/42", retried=True, issued_at=int(time.time()) - 3600)
    return f"{app_url}/wechat/callback?code=0a1B2c3D4e5F&state={state}", cookie


@pytest.mark.browser
@pytest.mark.slow
def test_real_browser_shows_the_error_pages_in_chinese_and_english(chromium, page_servers):
    sync_api, executable = chromium
    app_url, emulator_url, emulator = page_servers
    callback, cookie = _expired_login(app_url, emulator)
    login_again = "/wechat/login?scope=snsapi_base&next=%2Forders%2F42"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            # An expired login that was already retried once: the page, in Chinese.
            expired = _shown(_open_expired(browser, "zh-CN", callback, cookie), "expired-zh")
            # WeChat busy (errcode -1, and again on the one retry).
            busy = _shown(_log_in(browser, app_url, emulator_url, fault="busy", count=2), "busy-zh")
            # A snapshot-mode user, refused by snapshot_users="reject".
            snapshot = _shown(_log_in(browser, app_url, emulator_url, snapshot=1), "snapshot-zh")
            # The expired login again, for an English-speaking browser.
            english = _shown(_open_expired(browser, "en-US", callback, cookie), "expired-en")
        finally:
            browser.close()

    assert expired[:4] == (403, "登录已失效", "重新登录", login_again)
    # WeChat's browser has no cookie settings and no private mode: no advice about them.
    assert "转发" in expired[4] and "Cookie" not in expired[4] and "invalid_state" in expired[4]
    home_again = "/wechat/login?scope=snsapi_userinfo&next=%2F"  # the example's login link
    assert busy[:4] == (502, "微信繁忙", "重新登录", home_again)
    assert snapshot[:4] == (403, "请使用完整服务", "重新登录", home_again)
    assert english[:4] == (403, "This login has expired", "Log in again", login_again)
    # Busy twice (one retry), then the snapshot user's; nothing for the expired state.
    assert emulator_stats(emulator_url)["total_exchanges"] == 3


# --- a desktop browser: the QR page of the login link, or the website app's QR login ---------

DESKTOP = {"width": 1280, "height": 800}


def _desktop_example(emulator_url: str, defaults: WeChatEmulator, **env: str) -> Any:
    """The Starlette example with its login flow, under uvicorn, against the emulator."""
    port = free_port()
    env = {
        "WECHAT_APPID": defaults.appid,
        "WECHAT_SECRET": defaults.secret,
        "WECHAT_REDIS_URL": "",
        "WECHAT_API_BASE_URL": emulator_url,
        "WECHAT_AUTHORIZE_BASE_URL": emulator_url,
        "WECHAT_LOGIN_PATH": "/wechat/login",
        "WECHAT_SESSION_SECRET": secrets.token_urlsafe(32),
        **env,
    }
    return process(uvicorn_args("examples.starlette_app:app", port), port, env)


@pytest.mark.browser
@pytest.mark.slow
def test_real_desktop_browser_gets_the_qr_page_or_the_website_qr_login(chromium, capsys):
    """Desktop Chromium opens the example's login link: with the official account only, a
    page with a QR code of that link (and the link as text), in Chinese and in English, and a
    way back to the site; with a website app, WeChat's QR login (the emulator's qrconnect) and
    back to the site, logged in."""
    sync_api, executable = chromium
    defaults = WeChatEmulator()
    names = ("qr-page", "qr-page-en", "website")
    shots = {name: ROOT / "artifacts" / f"desktop-{name}.png" for name in names}
    next(iter(shots.values())).parent.mkdir(exist_ok=True)
    outside: list[str] = []
    with (
        emulator_process() as emulator_url,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            # The page that moves the login to the phone (the handoff's: test_browser_handoff.py).
            with _desktop_example(emulator_url, defaults, WECHAT_DESKTOP_LOGIN="phone") as app:
                page = browser.new_page(viewport=DESKTOP, locale="zh-CN")
                page.set_default_timeout(20_000)
                page.on(
                    "request",
                    lambda r: None if r.url.startswith(app.url) else outside.append(r.url),
                )
                page.goto(f"{app.url}/")
                page.click("#login")
                page.wait_for_selector("#qr svg")
                page.screenshot(path=str(shots["qr-page"]), full_page=True)
                qr_page = (page.inner_text("h1"), page.inner_text("#login-link"), page.url)
                qr_box = page.locator("#qr svg").bounding_box()
                page.click("#back")  # the way back to the site
                page.wait_for_selector("#login")
                back_url = page.url
                english = browser.new_page(viewport=DESKTOP, locale="en-US")
                english.goto(f"{app.url}/")
                english.click("#login")
                english.wait_for_selector("#qr svg")
                english.screenshot(path=str(shots["qr-page-en"]), full_page=True)
                qr_page_en = (english.inner_text("h1"), english.inner_text("#back"))
            with _desktop_example(
                emulator_url,
                defaults,
                WECHAT_WEBSITE_APPID=defaults.website_appid,
                WECHAT_WEBSITE_SECRET=defaults.website_secret,
                WECHAT_DEFAULT_SCOPE="snsapi_userinfo",
            ) as app:
                page = browser.new_page(viewport=DESKTOP, locale="zh-CN")
                page.set_default_timeout(20_000)
                visited: list[str] = []
                page.on("request", lambda r: visited.append(r.url))
                page.goto(f"{app.url}/")
                page.click("#login")
                page.wait_for_selector("text=Hello,")
                page.screenshot(path=str(shots["website"]), full_page=True)
                website = (page.inner_text("h1"), page.inner_text("code"), page.url)
        finally:
            browser.close()
        stats = emulator_stats(emulator_url)
    with capsys.disabled():
        print(f"\nscreenshots: {', '.join(map(str, shots.values()))}")

    heading, link, url = qr_page
    assert heading == "请用微信扫码登录"
    assert qr_page_en == ("Scan with WeChat to log in", "Back to the site")
    assert urlsplit(back_url).path == "/"
    # The QR code holds this very login link, absolute, with its next and scope.
    assert urlsplit(link)[:3] == urlsplit(url)[:3]
    assert parse_qs(urlsplit(link).query) == parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == "/wechat/login"
    assert qr_box is not None and qr_box["width"] >= 150  # big enough to scan from a screen
    assert outside == []  # the page fetched nothing, from anywhere

    assert website[0] == f"Hello, {NICKNAME}"
    assert website[1] == defaults.user.website_openid
    assert urlsplit(website[2]).path == "/"
    qrconnect = [u for u in visited if urlsplit(u).path == "/connect/qrconnect"]
    assert len(qrconnect) == 1
    assert parse_qs(urlsplit(qrconnect[0]).query)["appid"] == [defaults.website_appid]
    assert stats["total_exchanges"] == 1


# --- a phone's own browser, outside WeChat: open the link in WeChat -----------------------------

#: Chrome on an Android phone: not WeChat's browser.
ANDROID_CHROME_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)


@pytest.mark.browser
@pytest.mark.slow
def test_real_phone_browser_outside_wechat_is_told_to_open_the_link_in_wechat(chromium, capsys):
    """A phone's own browser opens the example's login link (official account only): no QR
    code to scan on its own screen, but the link and a button that copies it, to open in
    WeChat, in Chinese and in English; and the way back to the site. Nothing is fetched from
    elsewhere."""
    sync_api, executable = chromium
    defaults = WeChatEmulator()
    shots = {name: ROOT / "artifacts" / f"phone-open-in-wechat-{name}.png" for name in ("zh", "en")}
    next(iter(shots.values())).parent.mkdir(exist_ok=True)
    seen: dict[str, tuple[str, str, str, str, bool, str]] = {}
    outside: list[str] = []
    with (
        emulator_process() as emulator_url,
        sync_api.sync_playwright() as playwright,
        _desktop_example(emulator_url, defaults) as app,
    ):
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            for language, locale in (("zh", "zh-CN"), ("en", "en-US")):
                context = browser.new_context(
                    viewport=PHONE,
                    device_scale_factor=2,
                    is_mobile=True,
                    has_touch=True,
                    locale=locale,
                    user_agent=ANDROID_CHROME_UA,
                )
                context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
                page = context.new_page()
                page.set_default_timeout(20_000)
                page.on(
                    "request",
                    lambda r: None if r.url.startswith(app.url) else outside.append(r.url),
                )
                page.goto(f"{app.url}/")
                page.click("#login")
                page.wait_for_selector("#copy")
                page.screenshot(path=str(shots[language]), full_page=True)
                heading, link = page.inner_text("h1"), page.inner_text("#login-link")
                login_page = page.url
                page.click("#copy")
                page.wait_for_function(
                    "(b => b.textContent === b.dataset.copied)(document.getElementById('copy'))"
                )
                copied = page.evaluate("navigator.clipboard.readText()")
                label = page.inner_text("#copy")
                has_qr = page.locator("svg").count() > 0
                page.click("#back")
                page.wait_for_selector("#login")
                seen[language] = (heading, link, copied, label, has_qr, page.url)
                assert urlsplit(login_page).path == "/wechat/login"
                context.close()
        finally:
            browser.close()
        stats = emulator_stats(emulator_url)
    with capsys.disabled():
        print(f"\nscreenshots: {', '.join(map(str, shots.values()))}")

    for language, (title, label) in {
        "zh": ("请在微信里打开", "已复制"),
        "en": ("Open this page in WeChat", "Copied"),
    }.items():
        heading, link, copied, after, has_qr, back = seen[language]
        assert heading == title
        assert not has_qr  # nothing to scan on its own screen
        assert urlsplit(link).path == "/wechat/login" and copied == link
        assert after == label
        assert urlsplit(back).path == "/"
    assert outside == []  # the page fetched nothing from anywhere else
    assert stats["total_exchanges"] == 0  # the login goes on in WeChat
