"""Desktop login through the official account, in real Chromium: two browser contexts, a
desktop and a phone with WeChat's User-Agent, against the Starlette example under uvicorn and
the emulator under another uvicorn (its consent page playing the WeChat browser's double
callback). The desktop's page shows the QR code and polls; the phone opens the link, logs in,
confirms; the desktop ends on the site, logged in. Screenshots of both devices' pages, in
Chinese and English, go to the test's tmp dir and are checked to be real pictures.

Skips when Chromium or Playwright is missing (and fails in CI, where .ci/run installs them).
"""

from __future__ import annotations

import secrets
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from _chromium import CHROMIUM_ARGS, playwright_and_chromium
from _servers import emulator_process, emulator_stats, free_port, process, uvicorn_args
from asgi_wechat_oauth.testing import WeChatEmulator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEFAULTS = WeChatEmulator()
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: WeChat's browser on Android, as the official account's login needs it.
WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 MicroMessenger/8.0.47.2560(0x28002F35) "
    "NetType/WIFI Language/zh_CN"
)


def png_size(path: Path) -> tuple[int, int]:
    """A PNG's width and height (its IHDR), after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_a_real_picture(path: Path, *, min_width: int) -> None:
    width, height = png_size(path)
    assert width >= min_width and height >= 300, (path, width, height)
    # A page with text and a QR code compresses to tens of KB; a blank one to a few hundred bytes.
    assert path.stat().st_size > 8_000, path


def test_a_desktop_logs_in_through_a_phone_in_two_real_browsers(tmp_path: Path, capsys: Any):
    sync_api, executable = playwright_and_chromium()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    port = free_port()
    with emulator_process(latency=0.3) as wechat:
        httpx.post(
            f"{wechat}/_emulator/settings", params={"double_navigation": "1"}
        ).raise_for_status()
        env = {
            "WECHAT_APPID": DEFAULTS.appid,
            "WECHAT_SECRET": DEFAULTS.secret,
            "WECHAT_REDIS_URL": "",
            "WECHAT_API_BASE_URL": wechat,
            "WECHAT_AUTHORIZE_BASE_URL": wechat,
            "WECHAT_LOGIN_PATH": "/wechat/login",
            "WECHAT_SESSION_SECRET": secrets.token_urlsafe(32),
        }
        example = uvicorn_args("examples.starlette_app:app", port)
        with process(example, port, env) as app, sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                seen = _log_in(browser, app.url, shots)
                stats = emulator_stats(wechat)
                english = _cancel_in_english(browser, app.url, shots)
            finally:
                browser.close()
    with capsys.disabled():
        print(f"\nhandoff screenshots: {shots}")

    # The desktop ended on the site, logged in as the phone's user, through its own callback.
    assert seen["home"].startswith("Hello,")
    assert seen["openid"] == DEFAULTS.user.openid
    assert urlsplit(seen["desktop_url"]).path == "/"
    assert "/wechat/callback" in seen["desktop_visited"]
    assert stats["total_exchanges"] == 1  # the phone's double callback: one exchange
    assert seen["outside"] == []  # the desktop's page fetched nothing from elsewhere
    assert seen["polls"] >= 1
    # The phone was told the site, the browser and when, in Chinese.
    assert "127.0.0.1" in seen["details"] and "Linux 上的 Chrome 浏览器" in seen["details"]
    assert seen["done"] == "电脑已登录"
    assert seen["desktop_heading"] == "微信扫码登录"
    # In English, a cancel on the phone: the desktop offers a new QR code.
    assert english["confirm_heading"] == "Log in on a computer?"
    assert english["cancelled"] == "Cancelled"
    assert english["status"] == "This QR code has expired."
    assert english["fresh_poll"] != english["poll"]
    for name in ("desktop-zh", "desktop-en", "desktop-expired-en", "desktop-logged-in"):
        assert_a_real_picture(shots / f"{name}.png", min_width=1000)
    for name in ("phone-confirm-zh", "phone-done-zh", "phone-confirm-en", "phone-cancelled-en"):
        assert_a_real_picture(shots / f"{name}.png", min_width=300)


def _log_in(browser: Any, app_url: str, shots: Path) -> dict[str, Any]:
    """The whole login in Chinese: the desktop's page, the phone's scan and confirmation, the
    desktop's poll and redirect."""
    desktop_context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    phone_context = browser.new_context(
        viewport=PHONE, user_agent=WECHAT_UA, locale="zh-CN", is_mobile=True, has_touch=True
    )
    try:
        desktop = desktop_context.new_page()
        desktop.set_default_timeout(20_000)
        outside: list[str] = []
        visited: list[str] = []
        polls: list[str] = []

        def watch(request: Any) -> None:
            if not request.url.startswith(app_url):
                outside.append(request.url)
            visited.append(urlsplit(request.url).path)
            if "handoff_poll=" in request.url:
                polls.append(request.url)

        desktop.on("request", watch)
        desktop.goto(f"{app_url}/")
        desktop.click("#login")
        desktop.wait_for_selector("#qr svg")
        desktop.screenshot(path=str(shots / "desktop-zh.png"), full_page=True)
        heading = desktop.inner_text("h1")
        link = desktop.get_attribute("#wechat-login-link", "href")
        assert link is not None and link.startswith(f"{app_url}/wechat/login?handoff=")

        phone = phone_context.new_page()
        phone.set_default_timeout(20_000)
        phone.goto(link)
        phone.wait_for_selector("#confirm")
        phone.screenshot(path=str(shots / "phone-confirm-zh.png"), full_page=True)
        details = phone.inner_text("#details")
        phone.click("#confirm")
        phone.wait_for_selector("#title")
        phone.screenshot(path=str(shots / "phone-done-zh.png"), full_page=True)
        done = phone.inner_text("#title")

        desktop.wait_for_selector("text=Hello,")
        desktop.screenshot(path=str(shots / "desktop-logged-in.png"), full_page=True)
        return {
            "home": desktop.inner_text("h1"),
            "openid": desktop.inner_text("code"),
            "desktop_url": desktop.url,
            "desktop_visited": visited,
            "desktop_heading": heading,
            "outside": [u for u in outside if not u.startswith("data:")],
            "polls": len(polls),
            "details": details,
            "done": done,
        }
    finally:
        desktop_context.close()
        phone_context.close()


def _cancel_in_english(browser: Any, app_url: str, shots: Path) -> dict[str, str | None]:
    """In English: the phone cancels, and the desktop's page offers a new QR code."""
    desktop_context = browser.new_context(viewport=DESKTOP, locale="en-US")
    phone_context = browser.new_context(
        viewport=PHONE, user_agent=WECHAT_UA, locale="en-US", is_mobile=True, has_touch=True
    )
    try:
        desktop = desktop_context.new_page()
        desktop.set_default_timeout(20_000)
        desktop.goto(f"{app_url}/")
        desktop.click("#login")
        desktop.wait_for_selector("#qr svg")
        desktop.screenshot(path=str(shots / "desktop-en.png"), full_page=True)
        poll = desktop.get_attribute("#handoff", "data-poll-url")
        link = desktop.get_attribute("#wechat-login-link", "href")
        assert link is not None

        phone = phone_context.new_page()
        phone.set_default_timeout(20_000)
        phone.goto(link)
        phone.wait_for_selector("#cancel")
        phone.screenshot(path=str(shots / "phone-confirm-en.png"), full_page=True)
        confirm_heading = phone.inner_text("h1")
        phone.click("#cancel")
        phone.wait_for_selector("#title")
        phone.screenshot(path=str(shots / "phone-cancelled-en.png"), full_page=True)

        desktop.wait_for_selector("#again", state="visible")
        desktop.screenshot(path=str(shots / "desktop-expired-en.png"), full_page=True)
        status = desktop.inner_text("#status")
        desktop.click("#again")
        desktop.wait_for_selector("#qr svg")
        return {
            "confirm_heading": confirm_heading,
            "cancelled": phone.inner_text("#title"),
            "status": status,
            "poll": poll,
            "fresh_poll": desktop.get_attribute("#handoff", "data-poll-url"),
        }
    finally:
        desktop_context.close()
        phone_context.close()
