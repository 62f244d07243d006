"""``asgi_wechat_oauth.prometheus``: every product's counters in a ``prometheus_client``
registry, read from the counters, a middleware (web, WeCom, mini-program), a token keeper, or
the app that holds them; a ``product`` label when one collector exposes several."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from _apps import running
from _miniprogram_app import LOGIN as MP_LOGIN
from asgi_wechat_oauth import Counters, WeChatOAuthMiddleware
from asgi_wechat_oauth.miniprogram import MiniProgramMiddleware
from asgi_wechat_oauth.prometheus import WeChatOAuthCollector
from asgi_wechat_oauth.testing import (
    WeComEmulator,
    double_callback,
    miniprogram_login,
    wecom_login,
)
from asgi_wechat_oauth.tokens import AccessTokenKeeper, StableTokenFetcher
from asgi_wechat_oauth.wecom import WeComOAuthMiddleware
from support import APP_URL, CALLBACK, WECHAT_URL

NAMES = {
    "wechat_oauth_exchanges",
    "wechat_oauth_deduplicated",
    "wechat_oauth_cache_hits",
    "wechat_oauth_recovered",
    "wechat_oauth_errors",
}


def scrape(collector: WeChatOAuthCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Register ``collector`` in a fresh registry and parse what Prometheus would read."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_become_prometheus_counters():
    counters = Counters(exchanges=7, deduplicated=3, cache_hits=2, recovered=1)
    counters.errors.update({"code_used": 2, "upstream_timeout": 1})
    samples = scrape(WeChatOAuthCollector(counters))
    assert samples[("wechat_oauth_exchanges_total", ())] == 7
    assert samples[("wechat_oauth_deduplicated_total", ())] == 3
    assert samples[("wechat_oauth_cache_hits_total", ())] == 2
    assert samples[("wechat_oauth_recovered_total", ())] == 1
    assert samples[("wechat_oauth_errors_total", (("reason", "code_used"),))] == 2
    assert samples[("wechat_oauth_errors_total", (("reason", "upstream_timeout"),))] == 1


def test_metadata_is_typed_and_documented():
    families = {f.name: f for f in WeChatOAuthCollector(Counters()).collect()}
    assert set(families) >= NAMES
    for family in families.values():
        assert family.type == ("gauge" if family.name == "wechat_oauth_waiting" else "counter")
        assert family.documentation


def test_waiting_is_a_gauge_of_callbacks_parked_now():
    counters = Counters()
    collector = WeChatOAuthCollector(counters)
    counters.waiting = 3
    assert scrape(collector)[("wechat_oauth_waiting", ())] == 3
    counters.waiting = 0
    assert scrape(collector)[("wechat_oauth_waiting", ())] == 0


def test_a_scrape_sees_the_counters_as_they_are_now():
    counters = Counters()
    collector = WeChatOAuthCollector(counters)
    assert scrape(collector)[("wechat_oauth_exchanges_total", ())] == 0
    counters.exchanges += 1
    counters.errors["code_expired"] += 1
    samples = scrape(collector)
    assert samples[("wechat_oauth_exchanges_total", ())] == 1
    assert samples[("wechat_oauth_errors_total", (("reason", "code_expired"),))] == 1


def test_registering_twice_in_one_registry_is_refused():
    registry = CollectorRegistry()
    registry.register(WeChatOAuthCollector(Counters()))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(WeChatOAuthCollector(Counters()))
    registry.register(WeChatOAuthCollector(Counters(), prefix="shop_wechat"))  # distinct names


def test_prefix_must_be_a_metric_name():
    assert ("shop_wechat_exchanges_total", ()) in scrape(
        WeChatOAuthCollector(Counters(), prefix="shop_wechat")
    )
    for bad in ("", "9lives", "wechat-oauth", "wechat oauth"):
        with pytest.raises(ValueError):
            WeChatOAuthCollector(Counters(), prefix=bad)


@pytest.mark.anyio
async def test_real_logins_through_the_middleware(make_app, emulator):
    middleware, client = await make_app()
    collector = WeChatOAuthCollector(middleware)
    emulator.latency = 0.05
    code = emulator.issue_code()
    await double_callback(client, f"{CALLBACK}?code={code}&state=s")
    expired = emulator.issue_code()
    emulator.expire_code(expired)
    await client.get(CALLBACK, params={"code": expired, "state": "s"})
    await client.get(CALLBACK, params={"code": expired, "state": "s"})  # the stored refusal
    samples = scrape(collector)
    assert samples[("wechat_oauth_exchanges_total", ())] == 2
    shared = samples[("wechat_oauth_deduplicated_total", ())]
    assert shared + samples[("wechat_oauth_cache_hits_total", ())] == 2
    assert samples[("wechat_oauth_errors_total", (("reason", "code_expired"),))] == 2
    assert emulator.total_exchanges == 2


@pytest.mark.anyio
async def test_finds_the_middleware_starlette_builds_on_startup(emulator, upstream):
    async def hello(request):
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route(CALLBACK, hello)])
    app.add_middleware(
        WeChatOAuthMiddleware,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=WECHAT_URL,
        http_client=upstream,
    )
    collector = WeChatOAuthCollector(app)
    assert scrape(collector)[("wechat_oauth_exchanges_total", ())] == 0  # not started: zeros
    async with running(app):
        middleware = app.middleware_stack
        while not isinstance(middleware, WeChatOAuthMiddleware):
            middleware = middleware.app
        middleware.counters.exchanges = 5
        assert scrape(collector)[("wechat_oauth_exchanges_total", ())] == 5


def test_finds_the_middleware_around_quarts_asgi_app():
    app = Quart(__name__)
    middleware = WeChatOAuthMiddleware(app.asgi_app, appid="wx1", secret="s" * 16)
    app.asgi_app = middleware  # type: ignore[method-assign]
    middleware.counters.errors["invalid_state"] = 4
    samples = scrape(WeChatOAuthCollector(app))
    assert samples[("wechat_oauth_errors_total", (("reason", "invalid_state"),))] == 4


def test_an_app_without_the_middleware_is_reported_once_and_exposes_nothing(caplog):
    app = Starlette()
    app.middleware_stack = app.build_middleware_stack()  # what Starlette does on startup
    collector = WeChatOAuthCollector(app)
    with caplog.at_level(logging.WARNING, logger="asgi_wechat_oauth"):
        assert scrape(collector) == {}
        assert scrape(collector) == {}
    warnings = [r for r in caplog.records if "metrics_unavailable" in r.getMessage()]
    assert len(warnings) == 1


def test_describe_names_every_counter_field():
    described = {f.name for f in WeChatOAuthCollector(Counters()).describe()}
    assert described == {f"wechat_oauth_{name}" for name in Counters().as_dict()}


def test_missing_prometheus_client_gives_an_import_error_naming_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "asgi_wechat_oauth.prometheus")
    for name in [m for m in sys.modules if m.startswith("prometheus_client")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'asgi-wechat-oauth\[prometheus\]'"):
        importlib.import_module("asgi_wechat_oauth.prometheus")


@pytest.mark.anyio
async def test_counters_passed_to_add_middleware_feed_the_collector(emulator, upstream):
    async def callback(request):
        return PlainTextResponse(request.scope["wechat"].openid)

    counters = Counters()
    app = Starlette(routes=[Route(CALLBACK, callback)])
    app.add_middleware(
        WeChatOAuthMiddleware,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=WECHAT_URL,
        http_client=upstream,
        counters=counters,
    )
    collector = WeChatOAuthCollector(counters)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app.test"
    ) as client:
        response = await client.get(CALLBACK, params={"code": emulator.issue_code()})
    assert response.status_code == 200
    assert scrape(collector)[("wechat_oauth_exchanges_total", ())] == 1


# --- every product ------------------------------------------------------------------------


@pytest.fixture
def wecom() -> WeComEmulator:
    return WeComEmulator()


@pytest.fixture
async def wecom_app(wecom: WeComEmulator) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """A WeCom middleware in front of an app, and a browser that reaches it and the emulator."""

    async def callback(request):
        return PlainTextResponse(request.scope["wecom"].userid)

    upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=wecom))
    middleware = WeComOAuthMiddleware(
        Starlette(routes=[Route("/wecom/callback", callback)]),
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
            APP_URL: httpx.ASGITransport(app=middleware),
            wecom.url: httpx.ASGITransport(app=wecom),
        },
        base_url=APP_URL,
    )
    yield middleware, browser
    await browser.aclose()
    await middleware.aclose()
    await upstream.aclose()


@pytest.mark.anyio
async def test_mini_program_logins_are_collected(emulator, make_mp):
    middleware, client = await make_mp()
    collector = WeChatOAuthCollector(middleware, prefix="wechat_miniprogram")
    emulator.latency = 0.05
    response = await miniprogram_login(client, emulator)  # sent twice, one exchange
    assert response.status_code == 200, response.text
    used = await miniprogram_login(client, emulator, code="never-issued", double=False)
    assert used.status_code == 400
    samples = scrape(collector)
    assert samples[("wechat_miniprogram_exchanges_total", ())] == 2
    shared = samples[("wechat_miniprogram_deduplicated_total", ())]
    assert shared + samples[("wechat_miniprogram_cache_hits_total", ())] == 1
    reason = (("reason", used.json()["error"]),)
    assert samples[("wechat_miniprogram_errors_total", reason)] == 1


@pytest.mark.anyio
async def test_wecom_logins_and_the_corp_token_are_collected_apart(wecom, wecom_app):
    middleware, browser = wecom_app
    collector = WeChatOAuthCollector(middleware)
    for _ in range(2):
        response = await wecom_login(browser, wecom)
        assert response.status_code == 200, response.text
    samples = scrape(collector)
    assert samples[("wechat_oauth_exchanges_total", (("product", "wecom"),))] == 2
    # Both logins used one corp token, fetched once.
    assert samples[("wechat_oauth_exchanges_total", (("product", "tokens"),))] == 1
    assert wecom.calls["gettoken"] == 1


@pytest.mark.anyio
async def test_an_app_with_several_products_labels_each(emulator, upstream):
    """The web flow and a mini-program in one app (the example's setup): one collector, one
    registry, a ``product`` label on every sample; zeros before the app starts."""

    async def web(request):
        return PlainTextResponse(request.scope["wechat"].openid)

    async def mp(request):
        return PlainTextResponse(request.scope["wechat"].openid)

    app = Starlette(routes=[Route(CALLBACK, web), Route(MP_LOGIN, mp, methods=["POST"])])
    options = {
        "appid": emulator.appid,
        "secret": emulator.secret,
        "api_base_url": WECHAT_URL,
        "http_client": upstream,
    }
    app.add_middleware(MiniProgramMiddleware, **options)
    app.add_middleware(WeChatOAuthMiddleware, **options)
    collector = WeChatOAuthCollector(app)
    before = scrape(collector)
    assert before[("wechat_oauth_exchanges_total", (("product", "web"),))] == 0
    assert before[("wechat_oauth_exchanges_total", (("product", "miniprogram"),))] == 0
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=APP_URL) as client,
    ):
        web_login = await client.get(CALLBACK, params={"code": emulator.issue_code()})
        assert web_login.status_code == 200, web_login.text
        for _ in range(2):
            response = await miniprogram_login(client, emulator, double=False)
            assert response.status_code == 200, response.text
        refused = await client.get(CALLBACK, params={"code": "never-issued"})
        assert refused.json()["error"] == "code_invalid"
        samples = scrape(collector)
    # The web flow traded two codes (one refused), the mini-program two.
    assert samples[("wechat_oauth_exchanges_total", (("product", "web"),))] == 2
    assert samples[("wechat_oauth_exchanges_total", (("product", "miniprogram"),))] == 2
    errors = (("product", "web"), ("reason", "code_invalid"))
    assert samples[("wechat_oauth_errors_total", errors)] == 1
    assert not any(name.endswith("errors_total") and "miniprogram" in str(labels)
                   for name, labels in samples)  # fmt: skip


@pytest.mark.anyio
async def test_a_token_keeper_is_collected(emulator, upstream, make_app):
    keeper = AccessTokenKeeper(
        StableTokenFetcher(
            emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
        )
    )
    try:
        alone = WeChatOAuthCollector(keeper, prefix="wechat_token")
        for _ in range(3):
            await keeper.get()
        assert scrape(alone)[("wechat_token_exchanges_total", ())] == 1
        assert emulator.calls["stable_token"] == 1

        # With the app's middleware in one collector: labelled apart.
        middleware, client = await make_app()
        await client.get(CALLBACK, params={"code": emulator.issue_code()})
        samples = scrape(WeChatOAuthCollector([middleware, keeper]))
        assert samples[("wechat_oauth_exchanges_total", (("product", "tokens"),))] == 1
        assert samples[("wechat_oauth_exchanges_total", (("product", "web"),))] == 1
    finally:
        await keeper.aclose()


@pytest.mark.anyio
async def test_two_middlewares_of_one_product_add_up(emulator, upstream, downstream):
    """Two official accounts on two callback paths: one product, counted together."""
    inner = WeChatOAuthMiddleware(
        downstream,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=WECHAT_URL,
        http_client=upstream,
    )
    outer = WeChatOAuthMiddleware(
        inner,
        appid=emulator.website_appid,
        secret=emulator.website_secret,
        callback_path="/other/callback",
        api_base_url=WECHAT_URL,
        http_client=upstream,
    )
    inner.counters.exchanges, outer.counters.exchanges = 2, 3
    assert scrape(WeChatOAuthCollector(outer))[("wechat_oauth_exchanges_total", ())] == 5


def test_a_bare_counters_in_a_list_is_refused():
    with pytest.raises(ValueError, match="has no product"):
        WeChatOAuthCollector([Counters(), Counters()])
