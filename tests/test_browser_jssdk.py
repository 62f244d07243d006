"""Headless Chromium on a page that calls ``wx.config`` with what ``jssdk_path`` answered.

The site (tests/_jssdk_site.py) runs under uvicorn; the emulator is served in this process,
so the test reads the ticket it handed out and checks the signature ``wx.config`` received
against it, for the URL the browser itself reports (``location.href`` without ``#…``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from _chromium import CHROMIUM_ARGS, playwright_and_chromium
from _servers import free_port, process, uvicorn_args
from asgi_wechat_oauth.testing import EmulatorServer, WeChatEmulator


@pytest.fixture
def site() -> Iterator[tuple[str, WeChatEmulator]]:
    emulator = WeChatEmulator()
    with EmulatorServer(emulator) as server:
        port = free_port()
        env = {
            "WECHAT_APPID": emulator.appid,
            "WECHAT_SECRET": emulator.secret,
            "WECHAT_API_BASE_URL": server.url,
            "WECHAT_JSSDK_PATH": "/wechat/jssdk",
            "WECHAT_REDIS_URL": "",
        }
        args = uvicorn_args("_jssdk_site:app", port, "--app-dir", "tests")
        with process(args, port, env) as app:
            yield app.url, emulator


@pytest.mark.browser
@pytest.mark.slow
def test_a_page_configures_wx_with_a_signature_of_its_own_url(site):
    sync_api, executable = playwright_and_chromium()
    app_url, emulator = site
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            requests: list[Any] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{app_url}/articles/7?from=timeline&title=中文#comments")
            page.wait_for_selector("text=configured")
            received = page.evaluate("window.wxConfigReceived")
            signed_url = page.evaluate("location.href.split('#')[0]")
        finally:
            browser.close()

    # The browser's own serialisation of the URL: percent-encoded, fragment dropped.
    assert signed_url == f"{app_url}/articles/7?from=timeline&title=%E4%B8%AD%E6%96%87"
    assert set(received) == {"debug", "appId", "timestamp", "nonceStr", "signature", "jsApiList"}
    assert received["appId"] == emulator.appid
    ticket = emulator.jsapi_ticket
    assert ticket is not None and emulator.calls["getticket"] == 1
    text = (
        f"jsapi_ticket={ticket}&noncestr={received['nonceStr']}"
        f"&timestamp={received['timestamp']}&url={signed_url}"
    )
    assert received["signature"] == hashlib.sha1(text.encode()).hexdigest()  # noqa: S324
    # The page loaded nothing from elsewhere: the page itself and the site's endpoint.
    assert all(url.startswith(app_url) for url in requests), requests
    assert len(requests) == 2
