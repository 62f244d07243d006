"""No dead ends: re-authorization on unusable codes, stray duplicates, different codes for one
state, snapshot users, and logs that stay quiet about expected events."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx
import pytest

from asgi_wechat_oauth import WeChatOAuthClient, WeChatOAuthMiddleware
from asgi_wechat_oauth.testing import EmulatedUser
from support import APP_URL, CALLBACK, WECHAT_URL

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


# --- 1. re-authorize instead of an error page --------------------------------------------------


async def test_unusable_code_sends_the_browser_through_login_again(flow, consent, emulator):
    middleware, browser = await flow()
    callback = await consent(browser, next_path="/orders/42")
    emulator.expire_code(_query(callback)["code"])  # e.g. the user came back after 5 minutes
    response = await browser.get(callback)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.path == LOGIN
    assert _query(response.headers["location"]) == {
        "scope": "snsapi_base",
        "retry": "1",
        "next": "/orders/42",
    }
    assert middleware.counters.reauthorized == 1
    # Following it logs the user in and keeps where they were going.
    final = await browser.get(response.headers["location"], follow_redirects=True)
    assert final.status_code == 200
    assert final.json()["next"] == "/orders/42"
    assert final.json()["openid"] == emulator.user.openid


async def test_reauthorization_happens_once_then_the_documented_400(flow, consent, emulator):
    middleware, browser = await flow()
    callback = await consent(browser, next_path="/a")
    emulator.expire_code(_query(callback)["code"])
    again = await browser.get(callback)
    assert again.status_code == 302
    # The retry's code is unusable too (spent elsewhere): no second automatic round trip.
    to_wechat = await browser.get(again.headers["location"])
    callback_2 = (await browser.get(to_wechat.headers["location"].split("#")[0])).headers[
        "location"
    ]
    async with WeChatOAuthClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=browser
    ) as other:
        await other.exchange_code(_query(callback_2)["code"])
    final = await browser.get(callback_2)
    assert final.status_code == 400
    assert final.json()["error"] in ("code_used", "code_invalid")
    assert middleware.counters.reauthorized == 1


async def test_refresh_long_after_login_reauthorizes(flow, consent, emulator):
    _, browser = await flow(result_ttl=0.0)
    callback = await consent(browser, next_path="/home")
    assert (await browser.get(callback)).status_code == 200
    refresh = await browser.get(callback)  # the Back button, once the result is gone
    assert refresh.status_code == 302
    assert _query(refresh.headers["location"])["next"] == "/home"


async def test_on_invalid_code_error_answers_400(flow, consent, emulator):
    _, browser = await flow(on_invalid_code="error")
    callback = await consent(browser)
    emulator.expire_code(_query(callback)["code"])
    response = await browser.get(callback)
    assert response.status_code == 400 and response.json()["error"] == "code_expired"


async def test_transient_failures_are_not_reauthorized(flow, consent, emulator):
    _, browser = await flow()
    callback = await consent(browser)
    emulator.inject_fault("http_502", count=2)
    response = await browser.get(callback)
    assert response.status_code == 502  # retrying would spend a fresh code for nothing


def test_reauthorize_needs_a_login_path(downstream):
    with pytest.raises(ValueError):
        WeChatOAuthMiddleware(
            downstream, appid="wx1", secret="s" * 16, on_invalid_code="reauthorize"
        )
    middleware = WeChatOAuthMiddleware(downstream, appid="wx1", secret="s" * 16)
    assert middleware.on_invalid_code == "error"


# --- 2. stray duplicates cannot burn the code --------------------------------------------------


async def test_cookieless_duplicate_first_cannot_spend_the_code(flow, consent, emulator, caplog):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    middleware, browser = await flow()
    callback = await consent(browser)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware), base_url=APP_URL
    ) as tencent_server:  # the same URL, none of the user's cookies
        stray = await tencent_server.get(callback)
    assert stray.status_code == 403
    assert emulator.total_exchanges == 0
    mine = await browser.get(callback)
    assert mine.status_code == 200
    assert emulator.total_exchanges == 1
    # Expected noise: the refused stray duplicate is not a warning.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- 3. different codes, same state ------------------------------------------------------------


async def test_two_codes_for_one_state_both_log_in(flow, consent, emulator):
    _, browser = await flow()
    callback = await consent(browser)
    state = _query(callback)["state"]
    other_code = emulator.issue_code()  # WeChat sent a second redirect with a new code
    first = await browser.get(callback)
    second = await browser.get(CALLBACK, params={"code": other_code, "state": state})
    assert first.status_code == second.status_code == 200
    assert first.json()["openid"] == second.json()["openid"]
    assert emulator.exchange_count(_query(callback)["code"]) == 1
    assert emulator.exchange_count(other_code) == 1


# --- 4. snapshot users -------------------------------------------------------------------------


async def test_snapshot_users_are_flagged_by_default(flow, consent, emulator):
    emulator.user = EmulatedUser(openid="oSnapshot", snapshot=True)
    _, browser = await flow()
    response = await browser.get(await consent(browser, scope="snsapi_userinfo"))
    assert response.status_code == 200
    assert response.json()["is_snapshotuser"] is True


async def test_snapshot_users_can_be_refused(flow, consent, emulator):
    emulator.user = EmulatedUser(openid="oSnapshot", snapshot=True)
    _, browser = await flow(snapshot_users="reject")
    response = await browser.get(await consent(browser, scope="snsapi_userinfo"))
    assert response.status_code == 403
    assert response.json()["error"] == "snapshot_user"
    assert "full" in response.json()["message"]
    emulator.user = EmulatedUser(openid="oReal")
    response = await browser.get(await consent(browser))
    assert response.status_code == 200


def test_snapshot_users_option_is_checked(downstream):
    with pytest.raises(ValueError):
        WeChatOAuthMiddleware(downstream, appid="wx1", secret="s" * 16, snapshot_users="maybe")


# --- 5. quiet logs -----------------------------------------------------------------------------


async def test_expected_events_log_at_debug_and_one_record_per_exchange(
    flow, consent, emulator, caplog
):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    emulator.latency = 0.05
    _, browser = await flow()
    callback = await consent(browser)
    responses: list[httpx.Response] = []

    async def hit() -> None:
        responses.append(await browser.get(callback))

    async with anyio.create_task_group() as tg:  # a deduplicated wait
        tg.start_soon(hit)
        tg.start_soon(hit)
    responses.append(await browser.get(callback))  # a late duplicate
    assert [r.status_code for r in responses] == [200, 200, 200]
    code = _query(callback)["code"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    exchanges = [r for r in caplog.records if r.getMessage().startswith("wechat_oauth.exchange ")]
    assert len(exchanges) == 1 == emulator.total_exchanges
    [record] = exchanges
    assert record.levelno == logging.INFO
    assert record.wechat_outcome == "ok"
    assert isinstance(record.wechat_duration_ms, float)
    assert len(record.wechat_code_hash) == 16
    assert record.wechat_deduplicated is False
    served = [r for r in caplog.records if getattr(r, "wechat_deduplicated", False)]
    assert {r.wechat_outcome for r in served} == {"deduplicated", "cache_hit"}
    assert {r.wechat_code_hash for r in served} == {record.wechat_code_hash}
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("deduplicated" in m for m in debug) and any("cache_hit" in m for m in debug)
    assert all(code not in r.getMessage() for r in caplog.records)


async def test_only_a_failure_the_user_sees_is_a_warning(flow, consent, emulator, caplog):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    _, browser = await flow(on_invalid_code="error")
    callback = await consent(browser)
    emulator.expire_code(_query(callback)["code"])
    assert (await browser.get(callback)).status_code == 400
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split()[0] for r in warnings] == ["wechat_oauth.callback_failed"]
    assert "reason=code_expired" in warnings[0].getMessage()


async def test_configuration_errors_log_at_error(make_app, emulator, caplog):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    _, client = await make_app(secret="not-the-secret")
    assert (await client.get(CALLBACK, params={"code": emulator.issue_code()})).status_code == 500
    assert [r.levelno for r in caplog.records if r.levelno >= logging.WARNING] == [logging.ERROR]
