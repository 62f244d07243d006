"""``asgi_wechat_oauth.prometheus``: the middleware's counters in a ``prometheus_client``
registry, read from the counters, the middleware, or the app that holds it."""

from __future__ import annotations

import importlib
import logging
import sys

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from _apps import running
from asgi_wechat_oauth import Counters, WeChatOAuthMiddleware
from asgi_wechat_oauth.prometheus import WeChatOAuthCollector
from asgi_wechat_oauth.testing import double_callback
from support import CALLBACK, WECHAT_URL

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
