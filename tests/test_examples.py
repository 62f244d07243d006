"""The Starlette and FastAPI examples, end to end against the emulator: the login link, WeChat's
consent, the callback (once and the WeChat browser's twice), the session, the page that greets
the user. Quart's example is in test_quart_example.py (asyncio only)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _apps import LOGIN, NICKNAME, browser, code_of, consent, load_example, running
from asgi_wechat_oauth.testing import double_callback
from support import CALLBACK, WECHAT_URL

pytestmark = pytest.mark.anyio

STARLETTE = load_example("starlette_app")
FASTAPI = load_example("fastapi_app")
#: Each example's login link, as its home page renders it.
LOGIN_LINKS = {"starlette": f"{LOGIN}?next=/&scope=snsapi_userinfo", "fastapi": f"{LOGIN}?next=/"}

MakeExample = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_example(emulator, upstream) -> AsyncIterator[MakeExample]:
    """``await make_example(module, **middleware_options)`` → a browser on the example's app,
    whose lifespan runs until the test ends. The middleware talks to the emulator."""
    async with AsyncExitStack() as stack:

        async def factory(module: Any, **options: Any) -> httpx.AsyncClient:
            app = module.create_app(
                session_secret="s" * 32,
                appid=emulator.appid,
                secret=emulator.secret,
                api_base_url=WECHAT_URL,
                authorize_base_url=WECHAT_URL,
                http_client=upstream,
                **options,
            )
            await stack.enter_async_context(running(app))
            client = browser(app, emulator)
            stack.push_async_callback(client.aclose)
            return client

        yield factory


@pytest.fixture(params=["starlette", "fastapi"])
async def example(request, make_example) -> tuple[str, httpx.AsyncClient]:
    """Each example with its login flow on (Starlette's needs ``login_path``, set here as
    ``WECHAT_LOGIN_PATH`` would)."""
    if request.param == "starlette":
        return "starlette", await make_example(STARLETTE, login_path=LOGIN)
    return "fastapi", await make_example(FASTAPI)


async def test_logged_out_home_page_links_to_the_login(example):
    name, client = example
    page = await client.get("/")
    assert page.status_code == 200
    assert "Welcome" in page.text
    assert f'href="{LOGIN_LINKS[name]}"'.replace("&", "&amp;") in page.text


async def test_login_link_ends_on_the_home_page_greeting_the_user(example, emulator):
    name, client = example
    page = await client.get(LOGIN_LINKS[name])
    assert page.status_code == 200, page.text
    # Redirected to next: the code is out of the address bar. (The fragment of the authorize
    # URL, #wechat_redirect, rides along the 302s as fragments do in browsers.)
    assert (page.url.host, page.url.path, page.url.query) == ("app.test", "/", b"")
    assert f"Hello, {NICKNAME}" in page.text
    assert [r.status_code for r in page.history] == [302, 302, 303]
    assert emulator.total_exchanges == 1
    again = await client.get("/")  # the session holds the login
    assert f"Hello, {NICKNAME}" in again.text


async def test_wechat_browser_double_callback_is_one_exchange_and_a_greeting(example, emulator):
    name, client = example
    emulator.latency = 0.05  # callback #2 arrives while #1's exchange is in flight
    callback = await consent(client, LOGIN_LINKS[name])
    page = await double_callback(client, callback)
    assert page.status_code == 200, page.text
    assert f"Hello, {NICKNAME}" in page.text
    assert emulator.exchange_count(code_of(callback)) == 1


async def test_logout_forgets_the_user(example):
    name, client = example
    await client.get(LOGIN_LINKS[name])
    page = await client.post("/logout")
    assert "Welcome" in page.text


async def test_a_refused_callback_is_answered_by_the_middleware_not_the_route(example, emulator):
    name, client = example
    callback = await consent(client, LOGIN_LINKS[name])
    forged = callback.replace("state=", "state=X")
    response = await client.get(forged)
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_state"
    assert emulator.total_exchanges == 0  # refused before WeChat was asked
    assert "Welcome" in (await client.get("/")).text  # the route never stored a session


# --- Starlette: the bare callback and the metrics ---------------------------------------------


async def test_starlette_example_without_login_answers_the_identity_as_json(make_example, emulator):
    client = await make_example(STARLETTE)
    code = emulator.issue_code("snsapi_userinfo")
    response = await client.get(CALLBACK, params={"code": code, "state": "direct"})
    assert response.status_code == 200
    body = response.json()
    assert body["openid"] == emulator.user.openid
    assert body["nickname"] == NICKNAME
    assert body["pid"] == os.getpid()
    assert "Welcome" in (await client.get("/")).text


async def test_starlette_example_exposes_the_counters_to_prometheus(make_example, emulator):
    client = await make_example(STARLETTE, login_path=LOGIN)
    emulator.latency = 0.05
    await double_callback(client, await consent(client, LOGIN_LINKS["starlette"]))
    await client.get(CALLBACK, params={"code": "unknown", "state": "x"})  # no cookie: refused

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("wechat_oauth_exchanges_total", ())] == 1
    shared = samples[("wechat_oauth_deduplicated_total", ())]
    assert shared + samples[("wechat_oauth_cache_hits_total", ())] == 1
    assert samples[("wechat_oauth_errors_total", (("reason", "invalid_state"),))] == 1


def test_starlette_example_reads_its_options_from_the_environment(monkeypatch):
    monkeypatch.setenv("WECHAT_APPID", "wxfromenv")
    monkeypatch.setenv("WECHAT_SECRET", "secret-from-env")
    monkeypatch.setenv("WECHAT_API_BASE_URL", "http://127.0.0.1:8900")
    monkeypatch.setenv("WECHAT_AUTHORIZE_BASE_URL", "http://127.0.0.1:8901")
    monkeypatch.setenv("WECHAT_EXCHANGE_TIMEOUT", "3.5")
    monkeypatch.setenv("WECHAT_SESSION_SECRET", "the example's own variable")
    monkeypatch.delenv("WECHAT_REDIS_URL", raising=False)
    monkeypatch.delenv("WECHAT_LOGIN_PATH", raising=False)
    config = STARLETTE.config_from_env()
    assert (config.appid, config.secret) == ("wxfromenv", "secret-from-env")
    assert (config.api_base_url, config.authorize_base_url) == (
        "http://127.0.0.1:8900",
        "http://127.0.0.1:8901",
    )
    assert (config.exchange_timeout, config.backend, config.login_path) == (3.5, None, None)
    monkeypatch.setenv("WECHAT_LOGIN_PATH", "/auth/wechat")
    assert STARLETTE.config_from_env().login_path == "/auth/wechat"
    monkeypatch.setenv("WECHAT_LOGIN_PAHT", "/typo")
    with pytest.raises(ValueError, match="WECHAT_LOGIN_PAHT"):
        STARLETTE.config_from_env()


# --- FastAPI: the session after the login ------------------------------------------------------


async def test_fastapi_example_me_needs_the_session(make_example):
    client = await make_example(FASTAPI)
    response = await client.get("/me")
    assert response.status_code == 401
    assert "/wechat/login?next=/me" in response.json()["detail"]
    response = await client.get(f"{LOGIN}?next=/me")  # log in, come back to /me
    assert response.status_code == 200
    assert response.json()["nickname"] == NICKNAME
    assert response.url.path == "/me"
