"""Bad callbacks are refused before WeChat is called; WeChat's answers map to clear statuses;
``on_error`` can replace the error page; the constructor refuses bad options."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import RedirectResponse

from asgi_wechat_oauth import WeChatOAuthClient, WeChatOAuthMiddleware, login_url
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.errors import WeChatOAuthError
from asgi_wechat_oauth.testing import Fault
from support import APP_URL, CALLBACK, WECHAT_URL, Gate, call_asgi, http_scope

pytestmark = pytest.mark.anyio

VALID = "abcDEF0123456789_-"

BAD_QUERIES = [
    pytest.param("", "missing_code", id="no-query"),
    pytest.param("state=abc", "missing_code", id="no-code"),
    pytest.param("code=", "missing_code", id="empty-code"),
    pytest.param("code", "missing_code", id="bare-code-name"),
    pytest.param("code=" + "a" * 129, "malformed_code", id="code-129-chars"),
    pytest.param("code=%00", "malformed_code", id="code-nul"),
    pytest.param("code=abc%00", "malformed_code", id="code-trailing-nul"),
    pytest.param("code=abc!", "malformed_code", id="code-bang"),
    pytest.param("code=abc+def", "malformed_code", id="code-plus-space"),
    pytest.param("code=abc%2Fdef", "malformed_code", id="code-slash"),
    pytest.param("code=%E4%BD%A0%E5%A5%BD", "malformed_code", id="code-unicode"),
    pytest.param("code=abc%0A", "malformed_code", id="code-newline"),
    pytest.param(f"code={VALID}&code={VALID}", "duplicate_parameter", id="repeated-code"),
    pytest.param(f"code={VALID}&state=a&state=b", "duplicate_parameter", id="repeated-state"),
    pytest.param(f"code={VALID}&state=" + "s" * 129, "malformed_state", id="state-129"),
    pytest.param(f"code={VALID}&state=a%20b", "malformed_state", id="state-space"),
    pytest.param(f"code={VALID}&state=a%00", "malformed_state", id="state-nul"),
    pytest.param(f"code={VALID}&state=%E4%BD%A0", "malformed_state", id="state-unicode"),
    pytest.param(f"code={VALID}&state=%ff", "invalid_query", id="state-bad-utf8"),
    pytest.param("code=%ff", "invalid_query", id="code-bad-utf8"),
    pytest.param(f"code={VALID}" + "&x=1" * 64, "invalid_query", id="65-fields"),
]


@pytest.mark.parametrize(("query", "reason"), BAD_QUERIES)
async def test_bad_callback_is_refused_before_wechat(emulator, make_app, query, reason):
    middleware, client = await make_app()
    response = await client.get(f"{CALLBACK}?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == reason
    assert isinstance(body["message"], str) and body["message"]
    assert emulator.total_exchanges == 0
    assert middleware.counters.errors == {reason: 1}


@pytest.mark.parametrize(
    "query_string",
    [
        pytest.param(b"code=abc&state=\xe4\xbd\xa0", id="raw-utf8-bytes"),
        pytest.param(b"code=\xff\xfe", id="raw-invalid-bytes"),
    ],
)
async def test_raw_non_ascii_query_is_refused(emulator, make_app, query_string):
    middleware, _ = await make_app()
    response = await call_asgi(middleware, http_scope(query_string=query_string))
    assert response.status == 400
    assert response.headers["cache-control"] == "no-store"
    assert response.body == b'{"error": "invalid_query", "message": ' + (
        b'"The callback\'s query string could not be read."}'
    )
    assert emulator.total_exchanges == 0


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("code=" + "a" * 128, id="code-128-chars"),
        pytest.param(f"code={VALID}&state=" + "s" * 128, id="state-128-chars"),
        pytest.param(f"code={VALID}" + "&x=1" * 63, id="64-fields"),
        pytest.param(f"code={VALID}&state=", id="empty-state"),
        pytest.param(f"code={VALID}&uin=MTIz&key=abc&pass_ticket=x%2By", id="wechat-extras"),
    ],
)
async def test_limits_are_inclusive_and_reach_wechat(emulator, make_app, query):
    # These unknown-but-well-formed codes reach WeChat, which answers 40029: proof that the
    # request passed validation.
    middleware, client = await make_app()
    response = await client.get(f"{CALLBACK}?{query}")
    assert response.status_code == 400
    assert response.json()["error"] == "code_invalid"
    assert emulator.total_exchanges == 1


async def test_state_with_wechat_extras_reaches_the_app(emulator, make_app):
    middleware, client = await make_app()
    code = emulator.issue_code()
    response = await client.get(
        f"{CALLBACK}?code={code}&state=Ab9-_.~&uin=MTIz&key=k&pass_ticket=p"
    )
    assert response.status_code == 200
    assert response.json()["state"] == "Ab9-_.~"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_get_405(emulator, make_app, method):
    middleware, client = await make_app()
    code = emulator.issue_code()
    response = await client.request(method, f"{CALLBACK}?code={code}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "method_not_allowed"
    assert emulator.total_exchanges == 0


async def test_head_callback_logs_in(emulator, make_app):
    middleware, client = await make_app()
    code = emulator.issue_code()
    response = await client.head(f"{CALLBACK}?code={code}")
    assert response.status_code == 200
    assert emulator.exchange_count(code) == 1
    assert (await client.get(f"{CALLBACK}?code={code}")).status_code == 200  # same login


async def test_head_error_has_headers_and_no_body(emulator, make_app):
    # Called by hand: httpx.ASGITransport drops HEAD bodies itself, hiding what the app sent.
    middleware, _ = await make_app()
    response = await call_asgi(middleware, http_scope(query_string=b"code=bad!", method="HEAD"))
    assert response.status == 400
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.body == b""


async def test_get_error_body_matches_content_length(make_app):
    middleware, _ = await make_app()
    response = await call_asgi(middleware, http_scope(query_string=b"code=bad!"))
    assert int(response.headers["content-length"]) == len(response.body) > 0


# --- WeChat's answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "count", "status", "reason"),
    [
        (Fault.BUSY, 2, 502, "upstream_busy"),
        (Fault.HTTP_500, 1, 502, "upstream_unavailable"),
        (Fault.HTTP_502, 1, 502, "upstream_unavailable"),
        (Fault.MALFORMED_JSON, 1, 502, "upstream_bad_response"),
        (Fault.TRUNCATED, 1, 502, "upstream_unavailable"),
        (Fault.DROP, 1, 502, "upstream_unavailable"),
    ],
)
async def test_upstream_faults_map_to_5xx(emulator, make_app, fault, count, status, reason):
    middleware, client = await make_app()
    emulator.inject_fault(fault, count=count)
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code()}")
    assert response.status_code == status
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == reason
    assert middleware.counters.errors == {reason: 1}


async def test_one_busy_answer_is_retried_once(emulator, make_app):
    middleware, client = await make_app()
    emulator.inject_fault(Fault.BUSY)
    code = emulator.issue_code()
    response = await client.get(f"{CALLBACK}?code={code}")
    assert response.status_code == 200
    assert emulator.exchange_count(code) == 2  # the busy answer and the retry
    assert middleware.counters.exchanges == 1


async def test_unknown_code_is_400_code_invalid(emulator, make_app):
    middleware, client = await make_app()
    response = await client.get(f"{CALLBACK}?code=neverissued")
    assert response.status_code == 400
    assert response.json()["error"] == "code_invalid"


async def test_reused_code_is_400_code_used(emulator, upstream, make_app):
    other = WeChatOAuthClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )
    middleware, client = await make_app()
    code = emulator.issue_code()
    await other.exchange_code(code)
    response = await client.get(f"{CALLBACK}?code={code}")
    assert response.status_code == 400
    assert response.json()["error"] == "code_used"


async def test_expired_code_is_400_code_expired(emulator, make_app):
    middleware, client = await make_app()
    code = emulator.issue_code()
    emulator.expire_code(code)
    response = await client.get(f"{CALLBACK}?code={code}")
    assert response.status_code == 400
    assert response.json()["error"] == "code_expired"


async def test_slow_wechat_is_504_upstream_timeout(emulator, make_app):
    emulator.latency = 5.0
    middleware, client = await make_app(exchange_timeout=0.05)
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code()}")
    assert response.status_code == 504
    assert response.json()["error"] == "upstream_timeout"
    assert middleware.backend.in_flight == 0


async def test_slow_userinfo_does_not_lose_a_traded_code(emulator, make_app, upstream):
    """The code was traded (WeChat has spent it); a profile that never comes must degrade to
    ``userinfo=None`` as other userinfo failures do, not fail the login: the code cannot be
    traded again, so failing here loses the login for good."""
    userinfo_gate = Gate(emulator, path="/sns/userinfo")  # holds sns/userinfo, never opened
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=userinfo_gate), base_url=WECHAT_URL
    ) as http:
        middleware, client = await make_app(http_client=http, exchange_timeout=0.2)
        code = emulator.issue_code("snsapi_userinfo")
        response = await client.get(f"{CALLBACK}?code={code}")
        userinfo_gate.open()
    assert emulator.exchange_count(code) == 1
    assert response.status_code == 200, response.text
    assert response.json()["openid"] == emulator.user.openid
    assert response.json()["nickname"] is None


@pytest.mark.parametrize("option", ["secret", "appid"])
async def test_wrong_credentials_are_500_and_logged_loudly(emulator, make_app, caplog, option):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    middleware, client = await make_app(**{option: "wrong" + option})
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code()}")
    assert response.status_code == 500
    assert response.json()["error"] == "configuration_error"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "configuration_error" in errors[0].getMessage()
    if option == "secret":
        assert "wrongsecret" not in caplog.text  # in no logger's records, httpx's included
    else:  # the appid is public (it is in every authorize URL); the package still keeps it out
        assert not [r for r in caplog.records if r.name.startswith("asgi_wechat_oauth")
                    and "wrongappid" in r.getMessage()]  # fmt: skip


async def test_configuration_error_is_not_cached(emulator, make_app):
    middleware, client = await make_app(secret="wrong-secret")
    code = emulator.issue_code()
    for _ in range(2):
        assert (await client.get(f"{CALLBACK}?code={code}")).status_code == 500
    assert emulator.exchange_count(code) == 2
    assert middleware.counters.cache_hits == 0


# --- on_error -----------------------------------------------------------------------------------


async def test_on_error_can_replace_the_response(emulator, make_app):
    seen: list[tuple[str, WeChatOAuthError]] = []

    def on_error(scope, error):
        seen.append((scope["path"], error))
        return RedirectResponse(f"/login?error={error.reason}", status_code=303)

    middleware, client = await make_app(on_error=on_error)
    response = await client.get(f"{CALLBACK}?code=neverissued")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?error=code_invalid"
    ((path, error),) = seen
    assert path == CALLBACK
    assert error.reason == "code_invalid"
    assert error.errcode == 40029


async def test_on_error_can_link_to_the_login(emulator, make_app):
    # The hook (and the app it returns) see the login path, as every request the app gets does.
    def on_error(scope, error):
        return RedirectResponse(login_url(scope, next="/"), status_code=303)

    middleware, client = await make_app(on_error=on_error, login_path="/wechat/login")
    response = await client.get(CALLBACK)  # no code: a 400 the hook answers instead
    assert response.status_code == 303
    assert response.headers["location"] == "/wechat/login?next=/"


async def test_on_error_returning_none_keeps_the_default(emulator, make_app):
    seen: list[str] = []

    def on_error(scope, error):
        seen.append(error.reason)
        return None

    middleware, client = await make_app(on_error=on_error)
    emulator.inject_fault(Fault.HTTP_500)
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code()}")
    assert response.status_code == 502
    assert response.json()["error"] == "upstream_unavailable"
    assert seen == ["upstream_unavailable"]


async def test_on_error_is_not_called_on_success(emulator, make_app):
    seen: list[object] = []
    middleware, client = await make_app(on_error=lambda scope, error: seen.append(error))
    assert (await client.get(f"{CALLBACK}?code={emulator.issue_code()}")).status_code == 200
    assert seen == []


# --- constructor --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"appid": ""}, id="empty-appid"),
        pytest.param({"secret": ""}, id="empty-secret"),
        pytest.param({"callback_path": "wechat/callback"}, id="relative-path"),
        pytest.param({"callback_path": ""}, id="empty-path"),
        pytest.param({"result_ttl": -1}, id="negative-ttl"),
        pytest.param({"exchange_timeout": 0}, id="zero-timeout"),
        pytest.param({"exchange_timeout": -1.0}, id="negative-timeout"),
    ],
)
def test_constructor_refuses_bad_options(options):
    kwargs = {"appid": "wxappid", "secret": "secret", **options}
    with pytest.raises(ValueError):
        WeChatOAuthMiddleware(Starlette(), **kwargs)


def test_constructor_accepts_zero_result_ttl():
    middleware = WeChatOAuthMiddleware(Starlette(), appid="wx", secret="s", result_ttl=0)
    assert middleware.callback_path == "/wechat/callback"


def test_constructor_options_are_keyword_only():
    with pytest.raises(TypeError):
        WeChatOAuthMiddleware(Starlette(), "wxappid", "secret")  # type: ignore[misc]


async def test_works_through_starlette_add_middleware(emulator, upstream, downstream):
    downstream.add_middleware(
        WeChatOAuthMiddleware,
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=WECHAT_URL,
        http_client=upstream,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=downstream), base_url=APP_URL
    ) as client:
        code = emulator.issue_code()
        response = await client.get(f"{CALLBACK}?code={code}&state=st")
        assert response.status_code == 200
        assert response.json()["state"] == "st"
        bad = await client.get(f"{CALLBACK}?code=bad!")
        assert bad.status_code == 400
    assert emulator.exchange_count(code) == 1


def test_backend_and_client_refuse_bad_options():
    with pytest.raises(ValueError):
        MemoryBackend(max_entries=0)
    with pytest.raises(ValueError):
        WeChatOAuthClient("", "secret")
    with pytest.raises(ValueError):
        WeChatOAuthClient("wx", "")
