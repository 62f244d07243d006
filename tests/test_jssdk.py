"""``jssdk_path``: what ``wx.config`` takes, signed with the account's ``jsapi_ticket``.

Against the emulator's ``cgi-bin/ticket/getticket`` (over ASGITransport): the signature is
checked with the emulator's own ticket, computed here with hashlib; one getticket call for any
number of concurrent requests (and, on a real redis-server, for several middlewares sharing
it); a refused access token refetched once; foreign pages and bad input refused before any
call to WeChat. Memory backend on asyncio and trio; Redis on asyncio.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest

from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.errors import InvalidConfig, UpstreamError
from asgi_wechat_oauth.testing import Fault, WeChatEmulator
from asgi_wechat_oauth.tokens import (
    AccessTokenKeeper,
    JsapiTicketFetcher,
    StableTokenFetcher,
    jssdk_config,
)
from support import APP_URL, WECHAT_URL

pytestmark = pytest.mark.anyio

JSSDK = "/wechat/jssdk"
PAGE = f"{APP_URL}/articles/7?from=timeline&title=%E4%B8%AD%E6%96%87"
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])


def signature(ticket: str, nonce: str, timestamp: int, url: str) -> str:
    """WeChat's JS-SDK signature, written out here independently of the package."""
    text = f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - WeChat's choice


def ask(client: httpx.AsyncClient, url: str, **kwargs: Any) -> Any:
    return client.get(f"{JSSDK}?url={quote(url, safe='')}", **kwargs)


def assert_signed(emulator: WeChatEmulator, answer: httpx.Response, url: str) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    config = answer.json()
    assert list(config) == ["appId", "timestamp", "nonceStr", "signature"]
    assert config["appId"] == emulator.appid
    assert isinstance(config["timestamp"], int) and abs(config["timestamp"] - time.time()) < 5
    ticket = emulator.jsapi_ticket
    assert ticket is not None
    assert config["signature"] == signature(ticket, config["nonceStr"], config["timestamp"], url)
    return dict(config)


@pytest.fixture
async def jssdk(make_app, emulator):
    """``await jssdk(**options)`` → (middleware, client) with ``jssdk_path``; the emulator
    answers slowly enough for concurrent requests to overlap its getticket."""
    emulator.latency = 0.02

    async def make(**options: Any) -> tuple[WeChatOAuthMiddleware, httpx.AsyncClient]:
        return await make_app(jssdk_path=JSSDK, **options)  # type: ignore[no-any-return]

    return make


# --- the signature ------------------------------------------------------------------------------


async def test_the_page_url_is_signed_with_the_accounts_ticket_without_its_fragment(
    jssdk, emulator
):
    _, client = await jssdk()
    answer = await ask(client, PAGE + "#comments")
    config = assert_signed(emulator, answer, PAGE)  # signed without "#comments"
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    again = assert_signed(emulator, await ask(client, PAGE), PAGE)
    assert again["nonceStr"] != config["nonceStr"]
    assert len(config["nonceStr"]) >= 16 and config["nonceStr"].isalnum()
    assert emulator.calls["getticket"] == 1 and emulator.calls["stable_token"] == 1


async def test_any_number_of_concurrent_requests_fetch_the_ticket_once(jssdk, emulator):
    _, client = await jssdk()
    answers: list[httpx.Response] = []

    async def one(i: int) -> None:
        answers.append(await ask(client, f"{APP_URL}/page/{i}"))

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    assert emulator.calls["getticket"] == 1 and emulator.calls["stable_token"] == 1
    for answer in answers:
        path = answer.request.url.params["url"]
        assert_signed(emulator, answer, path)


async def test_middlewares_sharing_a_memory_backend_share_the_ticket(make_app, emulator):
    emulator.latency = 0.02
    backend = MemoryBackend()
    clients = [(await make_app(jssdk_path=JSSDK, backend=backend))[1] for _ in range(4)]
    answers: list[httpx.Response] = []

    async def one(client: httpx.AsyncClient) -> None:
        answers.append(await ask(client, PAGE))

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(one, clients[i % 4])
    assert emulator.calls["getticket"] == 1 and emulator.calls["stable_token"] == 1
    assert {assert_signed(emulator, a, PAGE)["appId"] for a in answers} == {emulator.appid}


async def test_the_ticket_is_refetched_before_it_expires(jssdk, emulator):
    emulator.jsapi_tickets.ttl = 2  # refreshed at half its life (the margin is longer)
    _, client = await jssdk()
    assert_signed(emulator, await ask(client, PAGE), PAGE)
    first = emulator.jsapi_ticket
    emulator.jsapi_tickets.rotate()  # WeChat would hand out this one next
    # Still fresh: signed with the ticket kept, which is still valid at WeChat.
    kept = (await ask(client, PAGE)).json()
    assert kept["signature"] == signature(first, kept["nonceStr"], kept["timestamp"], PAGE)
    await anyio.sleep(1.1)
    assert_signed(emulator, await ask(client, PAGE), PAGE)  # the new one
    assert emulator.calls["getticket"] == 2


# --- a refused access token -----------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.TOKEN_INVALID, Fault.TOKEN_EXPIRED])
async def test_an_access_token_refused_by_getticket_is_refetched_once(jssdk, emulator, fault):
    _, client = await jssdk()
    emulator.inject_fault(fault, endpoint="getticket")
    assert_signed(emulator, await ask(client, PAGE), PAGE)
    assert emulator.calls["getticket"] == 2
    assert emulator.calls["stable_token"] == 2
    assert emulator.server_tokens.force_requests == 1  # the refetch asked for a new token


async def test_a_revoked_access_token_is_replaced_and_the_ticket_fetched(jssdk, emulator):
    middleware, client = await jssdk()
    old = await middleware.jssdk.token_keeper.get()  # kept, then revoked at WeChat
    emulator.server_tokens.revoke()
    assert_signed(emulator, await ask(client, PAGE), PAGE)
    assert await middleware.jssdk.token_keeper.get() != old
    assert emulator.calls["getticket"] == 2 and emulator.calls["stable_token"] == 2


async def test_a_token_refused_twice_is_a_502_and_the_next_request_tries_again(jssdk, emulator):
    _, client = await jssdk()
    emulator.inject_fault(Fault.TOKEN_INVALID, count=2, endpoint="getticket")
    answer = await ask(client, PAGE)
    assert answer.status_code == 502
    assert answer.json()["error"] == "upstream_error"
    assert emulator.calls["getticket"] == 2  # once more, not again and again
    assert_signed(emulator, await ask(client, PAGE), PAGE)  # nothing failed is kept


@pytest.mark.parametrize(
    ("fault", "status", "reason"),
    [
        (Fault.HTTP_502, 502, "upstream_unavailable"),
        (Fault.MALFORMED_JSON, 502, "upstream_bad_response"),
        (Fault.RATE_LIMITED, 502, "rate_limited"),
    ],
)
async def test_a_ticket_that_cannot_be_had_is_an_upstream_error(
    jssdk, emulator, fault, status, reason
):
    _, client = await jssdk()
    emulator.inject_fault(fault, endpoint="getticket")
    answer = await ask(client, PAGE)
    assert (answer.status_code, answer.json()["error"]) == (status, reason)
    assert answer.headers["cache-control"] == "no-store"


async def test_busy_is_retried_once(jssdk, emulator):
    _, client = await jssdk()
    emulator.inject_fault(Fault.BUSY, endpoint="getticket")
    assert_signed(emulator, await ask(client, PAGE), PAGE)
    assert emulator.calls["getticket"] == 2


async def test_busy_twice_is_a_502(jssdk, emulator):
    _, client = await jssdk()
    emulator.inject_fault(Fault.BUSY, count=2, endpoint="getticket")
    answer = await ask(client, PAGE)
    assert (answer.status_code, answer.json()["error"]) == (502, "upstream_busy")
    assert emulator.calls["getticket"] == 2


async def test_a_wrong_secret_is_a_502_configuration_error_never_a_500(jssdk, emulator):
    _, client = await jssdk(secret="not-the-secret-of-this-account")
    answer = await ask(client, PAGE)
    assert (answer.status_code, answer.json()["error"]) == (502, "configuration_error")
    assert emulator.calls["getticket"] == 0


# --- the page URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.test/page",
        "http://app.test.evil.test/page",
        "https://app.test/page",  # another scheme: another origin
        "http://app.test:8080/page",
    ],
)
async def test_a_page_on_another_origin_is_refused_without_calling_wechat(jssdk, emulator, url):
    _, client = await jssdk()
    answer = await ask(client, url)
    assert (answer.status_code, answer.json()["error"]) == (400, "url_not_allowed")
    assert emulator.calls["getticket"] == 0 and emulator.calls["stable_token"] == 0


@pytest.mark.parametrize(
    "url",
    [
        "/articles/7",
        "app.test/articles/7",
        "javascript:alert(1)//http://app.test/",
        "ftp://app.test/file",
        "http://user@app.test/",
        "http://evil.test\\@app.test/",
        "http://app.test/a b",
        "http://app.test/中文",
        "http:///nohost",
        "http://app.test/" + "a" * 5000,
    ],
)
async def test_what_is_not_a_full_page_url_is_refused(jssdk, emulator, url):
    _, client = await jssdk()
    answer = await ask(client, url)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_url")
    assert emulator.calls["getticket"] == 0


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "missing_url"),
        ("url=", "missing_url"),
        ("page=http%3A%2F%2Fapp.test%2F", "missing_url"),
        ("url=http%3A%2F%2Fapp.test%2Fa&url=http%3A%2F%2Fapp.test%2Fb", "duplicate_parameter"),
        ("url=http%3A%2F%2Fapp.test%2F%FF", "invalid_query"),
    ],
)
async def test_a_bad_query_is_a_400_with_its_reason(jssdk, emulator, query, reason):
    _, client = await jssdk()
    answer = await client.get(f"{JSSDK}?{query}")
    assert (answer.status_code, answer.json()["error"]) == (400, reason)
    assert emulator.calls["getticket"] == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "OPTIONS"])
async def test_only_get_is_answered(jssdk, emulator, method):
    _, client = await jssdk()
    answer = await client.request(method, f"{JSSDK}?url={quote(PAGE, safe='')}")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"
    assert emulator.calls["getticket"] == 0


async def test_the_default_port_and_letter_case_are_the_same_origin(jssdk, emulator):
    _, client = await jssdk()
    for url in ("http://app.test:80/p?q=1", "HTTP://App.Test/p"):
        assert_signed(emulator, await ask(client, url), url)  # signed exactly as given


async def test_configured_origins_are_signed_and_may_read_the_answer(jssdk, emulator):
    _, client = await jssdk(jssdk_origins=("https://m.example.com",))
    page = "https://m.example.com/shop?id=3"
    answer = await ask(client, page, headers={"origin": "https://m.example.com"})
    assert_signed(emulator, answer, page)
    assert answer.headers["access-control-allow-origin"] == "https://m.example.com"
    own = await ask(client, PAGE, headers={"origin": "https://evil.test"})
    assert_signed(emulator, own, PAGE)  # the page is ours; a foreign reader gets no CORS
    assert "access-control-allow-origin" not in own.headers
    foreign = await ask(client, "https://example.com/")
    assert foreign.json()["error"] == "url_not_allowed"


async def test_forwarded_scheme_and_host_count_with_trust_forwarded_only(make_app, emulator):
    page = "https://www.example.com/p"
    forwarded = {"x-forwarded-proto": "https", "x-forwarded-host": "www.example.com"}
    _, trusting = await make_app(jssdk_path=JSSDK, trust_forwarded=True)
    assert_signed(emulator, await ask(trusting, page, headers=forwarded), page)
    _, plain = await make_app(jssdk_path=JSSDK)
    refused = await ask(plain, page, headers=forwarded)
    assert refused.json()["error"] == "url_not_allowed"


async def test_redirect_uris_origin_is_the_sites_own(make_app, emulator):
    _, client = await make_app(
        jssdk_path=JSSDK, redirect_uri="https://www.example.com/wechat/callback"
    )
    page = "https://www.example.com/p"
    assert_signed(emulator, await ask(client, page), page)


async def test_other_paths_are_untouched_and_the_path_takes_a_trailing_slash(jssdk, emulator):
    _, client = await jssdk()
    other = await client.get("/other")
    assert other.text == "downstream saw wechat=False"
    answer = await client.get(f"{JSSDK}/?url={quote(PAGE, safe='')}")
    assert_signed(emulator, answer, PAGE)


async def test_without_jssdk_path_the_path_is_the_apps(make_app):
    middleware, client = await make_app()
    assert middleware.jssdk is None
    assert (await client.get(JSSDK)).status_code == 404  # the app's answer


# --- options --------------------------------------------------------------------------------------


def config(**options: Any) -> WeChatOAuthConfig:
    return WeChatOAuthConfig(appid="wxappid", secret="s" * 32, **options)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"jssdk_path": "wechat/jssdk"}, "jssdk_path must be a path"),
        ({"jssdk_path": "/wechat/callback/"}, "jssdk_path must differ"),
        ({"jssdk_path": "/l", "login_path": "/l"}, "jssdk_path must differ"),
        ({"jssdk_origins": ("https://a.example",)}, "jssdk_origins needs jssdk_path"),
        ({"jssdk_path": "/j", "jssdk_origins": "https://a.example"}, "must be a list"),
        ({"jssdk_path": "/j", "jssdk_origins": ("a.example",)}, "must hold origins"),
        ({"jssdk_path": "/j", "jssdk_origins": ("https://a.example/x",)}, "must hold origins"),
        ({"jssdk_path": "/j", "token_keeper": "tok"}, "token_keeper must be an AccessTokenKeeper"),
    ],
)
def test_jssdk_options_are_checked_where_written(options, says):
    with pytest.raises(InvalidConfig, match=says):
        config(**options)


def test_jssdk_options_from_the_environment():
    env = {
        "WECHAT_APPID": "wxappid",
        "WECHAT_SECRET": "s" * 32,
        "WECHAT_JSSDK_PATH": "/wechat/jssdk",
        "WECHAT_JSSDK_ORIGINS": "https://a.example, https://b.example:8443/",
    }
    made = WeChatOAuthConfig.from_env(environ=env)
    assert made.jssdk_path == "/wechat/jssdk"
    assert made.jssdk_origins == ("https://a.example", "https://b.example:8443/")


async def test_your_own_token_keeper_is_used_and_left_open(make_app, emulator, upstream):
    emulator.latency = 0.0
    fetcher = StableTokenFetcher(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )
    keeper = AccessTokenKeeper(fetcher)
    token = await keeper.get()
    middleware, client = await make_app(jssdk_path=JSSDK, token_keeper=keeper)
    assert_signed(emulator, await ask(client, PAGE), PAGE)
    assert emulator.calls["stable_token"] == 1  # the keeper's token, fetched before
    await middleware.jssdk.aclose()
    assert await keeper.get() == token  # still open: yours to close
    await keeper.aclose()


# --- the ticket keeper on its own ------------------------------------------------------------


async def test_the_ticket_and_the_token_never_share_a_key(emulator, upstream):
    backend = MemoryBackend()
    fetcher = StableTokenFetcher(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )
    tokens = AccessTokenKeeper(fetcher, backend=backend)
    ticket_fetcher = JsapiTicketFetcher(tokens, api_base_url=WECHAT_URL, http_client=upstream)
    tickets = AccessTokenKeeper(ticket_fetcher, backend=backend)
    assert ticket_fetcher.key_material != fetcher.key_material
    ticket, token = await tickets.get(), await tokens.get()
    assert ticket == emulator.jsapi_ticket and emulator.server_tokens.check(token) == 0
    assert ticket != token
    assert "JSAPI_TICKET_" not in repr(tickets) and ticket not in repr(ticket_fetcher)
    made = jssdk_config(emulator.appid, ticket, PAGE + "#x")
    assert made["signature"] == signature(ticket, made["nonceStr"], made["timestamp"], PAGE)
    await tickets.aclose()
    await tokens.aclose()
    await backend.aclose()


async def test_a_ticket_answer_without_a_ticket_is_unusable(emulator):
    async def no_ticket(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/cgi-bin/ticket/getticket":
            body = b'{"errcode": 0, "errmsg": "ok", "expires_in": 7200}'
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        await emulator(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=no_ticket)) as http:
        fetcher = StableTokenFetcher(
            emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=http
        )
        tokens = AccessTokenKeeper(fetcher)
        tickets = AccessTokenKeeper(
            JsapiTicketFetcher(tokens, api_base_url=WECHAT_URL, http_client=http)
        )
        with pytest.raises(UpstreamError) as caught:
            await tickets.get()
        assert caught.value.reason == "upstream_bad_response"
        await tickets.aclose()
        await tokens.aclose()


async def test_the_emulator_refuses_tokens_it_did_not_issue(emulator, upstream):
    answer = await upstream.get(
        "/cgi-bin/ticket/getticket", params={"access_token": "made-up", "type": "jsapi"}
    )
    assert answer.json()["errcode"] == 40001
    token, _ = emulator.server_tokens.current()
    wrong_type = await upstream.get(
        "/cgi-bin/ticket/getticket", params={"access_token": token, "type": "wx_card"}
    )
    assert wrong_type.json()["errcode"] == 40097
    emulator.server_tokens.expire()
    expired = await upstream.get(
        "/cgi-bin/ticket/getticket", params={"access_token": token, "type": "jsapi"}
    )
    assert expired.json()["errcode"] == 42001
    assert emulator.jsapi_ticket is None and emulator.calls["getticket"] == 3


# --- Redis: several workers, one ticket -----------------------------------------------------------


@pytest.mark.redis
@ASYNCIO_ONLY
async def test_workers_sharing_redis_fetch_one_ticket(redis_server, make_app, emulator):
    from asgi_wechat_oauth.backends.redis import RedisBackend

    emulator.latency = 0.05
    prefix = f"jssdk-{uuid.uuid4().hex[:8]}"
    backends = [RedisBackend(redis_server.url, prefix=prefix) for _ in range(4)]
    clients = [(await make_app(jssdk_path=JSSDK, backend=b))[1] for b in backends]
    answers: list[httpx.Response] = []

    async def one(client: httpx.AsyncClient, i: int) -> None:
        answers.append(await ask(client, f"{APP_URL}/page/{i}"))

    # (make_app's teardown closes each middleware, and with it its backend.)
    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, clients[i % 4], i)
    assert emulator.calls["getticket"] == 1 and emulator.calls["stable_token"] == 1
    for answer in answers:
        assert_signed(emulator, answer, answer.request.url.params["url"])
    # A fifth worker, started later, reads the stored ticket.
    _, late = await make_app(
        jssdk_path=JSSDK, backend=RedisBackend(redis_server.url, prefix=prefix)
    )
    assert_signed(emulator, await ask(late, PAGE), PAGE)
    assert emulator.calls["getticket"] == 1


async def test_a_forged_host_does_not_get_a_foreign_page_signed(make_app, emulator):
    """Anyone can send ``Host: evil.test`` straight to the server (no browser involved) and
    hand the signature to a page of theirs; the origin check then guards nothing. With
    ``redirect_uri`` the site's public origin is known, and the Host need not be trusted."""
    _, client = await make_app(
        jssdk_path=JSSDK, redirect_uri="https://www.example.com/wechat/callback"
    )
    answer = await ask(client, "http://evil.test/phish", headers={"host": "evil.test"})
    assert (answer.status_code, answer.json()["error"]) == (400, "url_not_allowed")
