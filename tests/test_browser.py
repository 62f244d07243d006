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

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from _servers import ROOT, emulator_process, emulator_stats, free_port, process, uvicorn_args
from asgi_wechat_oauth.testing import WeChatEmulator
from support import APP_URL

NICKNAME = WeChatEmulator().user.nickname
SCREENSHOT = ROOT / "artifacts" / "browser-login.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
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
    """Playwright's sync API and Debian's Chromium (or ``$CHROMIUM``): skip when either is
    missing, before any server starts; in CI (``$CI`` set) a missing Chromium fails instead."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed (extra: test)"
    )
    configured = os.environ.get("CHROMIUM")
    candidates = [configured] if configured else ["chromium", "chromium-browser"]
    found = next((path for path in map(shutil.which, candidates) if path), None)
    if found is None:
        message = (
            f"Chromium not found ({' or '.join(candidates)}): install it "
            "(`apt-get install chromium`, as .ci/run does) or set CHROMIUM to a Chromium or "
            "Chrome binary to run the real-browser test"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return sync_api, found


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
            page = browser.new_page()
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
