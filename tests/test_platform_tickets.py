"""The third-party platform's ticket push, end to end on the emulator: the emulator pushes
exactly as WeChat does, the TicketEndpoint verifies, decrypts and stores the ticket in the
backend, the ComponentTokenFetcher fetches component_access_token with it through the
AccessTokenKeeper (one fetch for all callers), and the emulator's component exchange trades
the platform's codes once. Memory backend on asyncio and trio; Redis (a restart, four workers)
on asyncio."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.errors import CredentialsRejected, ServiceUnavailable
from asgi_wechat_oauth.platform import (
    ComponentTokenFetcher,
    MessageCrypto,
    PushEvent,
    TicketEndpoint,
    TicketStore,
)
from asgi_wechat_oauth.testing import WeChatEmulator
from asgi_wechat_oauth.tokens import AccessTokenKeeper

pytestmark = pytest.mark.anyio

PLATFORM = "http://platform.test"
TICKET_PATH = "/wechat/ticket"
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])


class Platform:
    """A platform's ticket endpoint and keeper on one backend, reaching the emulator."""

    def __init__(self, emulator: WeChatEmulator, backend, upstream: httpx.AsyncClient) -> None:
        self.emulator = emulator
        self.backend = backend
        self.tickets = TicketStore(backend, emulator.component_appid)
        self.events: list[PushEvent] = []

        async def on_event(event: PushEvent) -> None:
            self.events.append(event)

        self.endpoint = TicketEndpoint(
            crypto=emulator.crypto, tickets=self.tickets, on_event=on_event
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.endpoint), base_url=PLATFORM
        )
        self.fetcher = ComponentTokenFetcher(
            emulator.component_appid,
            emulator.component_secret,
            self.tickets,
            api_base_url=emulator.url,
            http_client=upstream,
        )
        self.keeper = AccessTokenKeeper(self.fetcher, backend=backend)

    async def push(self, push=None) -> httpx.Response:
        if push is None:
            return await self.emulator.push_ticket(TICKET_PATH, client=self.client)
        return await push.send(TICKET_PATH, client=self.client)

    async def aclose(self) -> None:
        await self.keeper.aclose()
        await self.client.aclose()


@pytest.fixture
async def platform(emulator, upstream) -> AsyncIterator[Platform]:
    made = Platform(emulator, MemoryBackend(), upstream)
    yield made
    await made.aclose()
    await made.backend.aclose()


async def test_a_pushed_ticket_is_stored_and_answered_success(platform, emulator):
    assert await platform.tickets.current() is None
    response = await platform.push()
    assert response.status_code == 200 and response.text == "success"
    assert response.headers["content-type"].startswith("text/plain")
    assert await platform.tickets.current() == emulator.current_ticket
    assert emulator.calls["ticket_push"] == 1
    assert platform.endpoint.counts == {"component_verify_ticket": 1}
    [event] = platform.events
    assert event.info_type == "component_verify_ticket" and event.authorizer_appid is None
    assert emulator.current_ticket not in repr(event)


async def test_a_newer_push_replaces_the_ticket_and_a_late_older_one_does_not(platform, emulator):
    now = int(time.time())
    older = emulator.ticket_push(timestamp=now - 600)
    newer = emulator.ticket_push(timestamp=now)
    assert (await platform.push(newer)).text == "success"
    assert (await platform.push(older)).text == "success"  # acknowledged, not stored
    newest_ticket = emulator.current_ticket
    assert await platform.tickets.current() == newest_ticket
    third = emulator.ticket_push(timestamp=now + 1)
    await platform.push(third)
    assert await platform.tickets.current() == emulator.current_ticket != newest_ticket


async def test_authorization_events_are_acknowledged_and_logged_without_secrets(
    platform, emulator, caplog
):
    caplog.set_level(logging.INFO, logger="asgi_wechat_oauth")
    authorizer = emulator.authorizer_appids[1]
    for info_type in ("authorized", "updateauthorized", "unauthorized", "something_new"):
        response = await emulator.push_event(
            TICKET_PATH, info_type, authorizer_appid=authorizer, client=platform.client
        )
        assert response.status_code == 200 and response.text == "success"
    assert [e.info_type for e in platform.events] == [
        "authorized",
        "updateauthorized",
        "unauthorized",
        "something_new",
    ]
    code = platform.events[0].fields["AuthorizationCode"]
    lines = [r.getMessage() for r in caplog.records]
    assert sum(f"authorizer_appid={authorizer}" in line for line in lines) == 3
    assert any("info_type=something_new" in line for line in lines)
    assert not any(code in line for line in lines)
    assert code not in repr(platform.events[0])
    assert await platform.tickets.current() is None  # events store no ticket


async def test_only_post(platform):
    response = await platform.client.get(TICKET_PATH)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize("missing", ["timestamp", "nonce", "encrypt_type", "msg_signature"])
async def test_a_missing_parameter_is_400(platform, emulator, missing):
    push = emulator.ticket_push()
    params = {k: v for k, v in push.params.items() if k != missing}
    response = await platform.push(dataclasses.replace(push, params=params))
    assert response.status_code == 400 and response.json()["error"] == "invalid_query"
    assert await platform.tickets.current() is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("encrypt_type", "raw"),
        ("timestamp", "12a"),
        ("timestamp", "1" * 13),
        ("nonce", "a b"),
        ("msg_signature", "zz" * 20),
        ("msg_signature", "ab"),
    ],
)
async def test_a_malformed_parameter_is_400(platform, emulator, name, value):
    push = emulator.ticket_push()
    response = await platform.push(dataclasses.replace(push, params={**push.params, name: value}))
    assert response.status_code == 400 and response.json()["error"] == "invalid_query"
    assert await platform.tickets.current() is None


async def test_a_repeated_parameter_is_400(platform, emulator):
    push = emulator.ticket_push()
    query = httpx.QueryParams(push.params).add("msg_signature", push.params["msg_signature"])
    response = await platform.client.post(TICKET_PATH, params=query, content=push.body)
    assert response.status_code == 400 and response.json()["error"] == "duplicate_parameter"


async def test_a_tampered_push_is_refused_and_stores_nothing(platform, emulator):
    push = emulator.ticket_push()
    signature = push.params["msg_signature"]
    forged = "0" * 40 if signature != "0" * 40 else "1" * 40
    cases = [
        dataclasses.replace(push, params={**push.params, "msg_signature": forged}),
        dataclasses.replace(push, params={**push.params, "nonce": "1234"}),
        dataclasses.replace(push, params={**push.params, "timestamp": str(int(time.time()) - 1)}),
        # The ciphertext changed under the original signature.
        dataclasses.replace(
            push, body=push.body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[A")
        ),
    ]
    for tampered in cases:
        response = await platform.push(tampered)
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "push_signature_invalid"
    # Signed with another token: not WeChat's for this platform.
    other = WeChatEmulator(component_token="someoneelsestoken")
    response = await platform.push(other.ticket_push())
    assert response.status_code == 403 and response.json()["error"] == "push_signature_invalid"
    assert await platform.tickets.current() is None
    assert platform.endpoint.counts == {"refused:push_signature_invalid": 5}
    assert (await platform.push(push)).text == "success"  # the original was fine all along


async def test_a_push_for_another_platform_is_refused(platform, emulator):
    # Same token and key (a copied setting), another platform's appid inside the ciphertext.
    other = WeChatEmulator(component_appid="wxanotherplatform1")
    response = await platform.push(other.ticket_push())
    assert response.status_code == 403 and response.json()["error"] == "push_wrong_appid"
    # The outer AppId changed (signed ciphertext intact): refused too.
    push = emulator.ticket_push()
    body = push.body.replace(emulator.component_appid.encode(), b"wxanotherplatform1", 1)
    response = await platform.push(dataclasses.replace(push, body=body))
    assert response.status_code == 403 and response.json()["error"] == "push_wrong_appid"
    assert await platform.tickets.current() is None


async def test_a_stale_push_is_refused(platform, emulator, caplog):
    caplog.set_level(logging.ERROR, logger="asgi_wechat_oauth")
    for skew in (-3601 - 60, 3601 + 60):
        push = emulator.ticket_push(timestamp=int(time.time()) + skew)
        response = await platform.push(push)
        assert response.status_code == 403 and response.json()["error"] == "push_stale"
    assert await platform.tickets.current() is None
    assert any("reason=push_stale" in r.getMessage() for r in caplog.records)
    # Within the window (clocks a few minutes apart) it is fine.
    push = emulator.ticket_push(timestamp=int(time.time()) - 300)
    assert (await platform.push(push)).text == "success"


async def test_hostile_bodies_get_4xx_and_store_nothing(platform, emulator):
    push = emulator.ticket_push()
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
    )
    external = (
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>'
    )
    cases = {
        laughs: (400, "invalid_body"),
        external: (400, "invalid_body"),
        b"<xml><AppId>x</AppId></xml>": (400, "invalid_body"),
        b"<xml><Encrypt></Encrypt></xml>": (400, "invalid_body"),
        push.body[:-10]: (400, "invalid_body"),
        b"\xff\xfe<xml/>": (400, "invalid_body"),
        b"<xml><Encrypt>" + b"A" * 70_000 + b"</Encrypt></xml>": (413, "body_too_large"),
    }
    for body, (status, reason) in cases.items():
        response = await platform.push(dataclasses.replace(push, body=body))
        assert (response.status_code, response.json()["error"]) == (status, reason)
    assert await platform.tickets.current() is None


async def test_a_signed_message_that_is_not_a_push_is_push_unreadable(platform, emulator):
    crypto = emulator.crypto
    stamp, nonce = str(int(time.time())), "123456"
    for message in (
        "<xml><AppId>wxemulatedcomp0001</AppId></xml>",  # no InfoType
        "<xml><InfoType>component_verify_ticket</InfoType></xml>",  # no ticket
        "<xml><InfoType>component_verify_ticket</InfoType>"
        "<ComponentVerifyTicket>has spaces</ComponentVerifyTicket></xml>",
        "not xml",
        "<!DOCTYPE x><xml/>",
    ):
        encrypt = crypto.encrypt(message)
        params = {
            "timestamp": stamp,
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": crypto.signature(stamp, nonce, encrypt),
        }
        body = f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
        response = await platform.client.post(TICKET_PATH, params=params, content=body)
        assert response.status_code == 400, message
        assert response.json()["error"] == "push_unreadable", message
    assert await platform.tickets.current() is None


async def test_the_body_is_read_in_bounded_chunks(platform, emulator):
    # A streamed body without Content-Length that never ends: refused once past the bound,
    # without reading on.
    push = emulator.ticket_push()
    query = str(httpx.QueryParams(push.params)).encode()
    received = 0

    async def receive():
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"x" * 4096, "more_body": True}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": TICKET_PATH,
        "query_string": query,
        "headers": [],
    }
    await platform.endpoint(scope, receive, send)
    assert sent[0]["status"] == 413
    assert received == 64 * 1024 // 4096 + 1


async def test_a_client_that_goes_away_gets_no_answer_and_stores_nothing(platform, emulator):
    push = emulator.ticket_push()
    scope = {
        "type": "http",
        "method": "POST",
        "path": TICKET_PATH,
        "query_string": str(httpx.QueryParams(push.params)).encode(),
        "headers": [],
    }
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await platform.endpoint(scope, receive, send)
    assert sent == [] and await platform.tickets.current() is None


# --- the component token --------------------------------------------------------------------


async def test_before_the_first_push_the_token_is_a_clear_503_without_calling_wechat(
    platform, emulator, caplog
):
    caplog.set_level(logging.WARNING, logger="asgi_wechat_oauth")
    with pytest.raises(ServiceUnavailable) as caught:
        await platform.keeper.get()
    assert caught.value.reason == "platform_ticket_pending"
    assert caught.value.status_code == 503
    assert "every 10 minutes" in caught.value.message
    assert emulator.calls["api_component_token"] == 0
    assert any("platform_ticket_pending" in r.getMessage() for r in caplog.records)


async def test_one_fetch_for_many_callers_once_the_ticket_is_there(platform, emulator):
    emulator.latency = 0.05
    await platform.push()
    tokens: list[str] = []

    async def get() -> None:
        tokens.append(await platform.keeper.get())

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(get)
    assert len(set(tokens)) == 1 and tokens[0].startswith("COMPONENT_TOKEN_")
    assert emulator.calls["api_component_token"] == 1
    assert emulator.component_tokens.check(tokens[0]) == 0


async def test_a_refused_ticket_is_dropped_and_the_next_push_recovers(platform, emulator):
    await platform.push()
    emulator.expire_tickets()
    with pytest.raises(ServiceUnavailable) as caught:
        await platform.keeper.get()
    assert (caught.value.reason, caught.value.errcode) == ("platform_ticket_rejected", 61005)
    assert await platform.tickets.current() is None
    with pytest.raises(ServiceUnavailable) as caught:
        await platform.keeper.get()
    assert caught.value.reason == "platform_ticket_pending"
    assert emulator.calls["api_component_token"] == 1  # no second call with the dead ticket
    await platform.push()
    assert (await platform.keeper.get()).startswith("COMPONENT_TOKEN_")
    # A ticket WeChat never pushed: 61006, dropped the same way.
    await platform.tickets.save("ticket@@@made-up", created_at=int(time.time()) + 5)
    fresh = AccessTokenKeeper(platform.fetcher, backend=MemoryBackend())
    with pytest.raises(ServiceUnavailable) as caught:
        await fresh.get()
    assert caught.value.errcode == 61006
    assert await platform.tickets.current() is None


async def test_a_wrong_secret_is_a_configuration_error(emulator, upstream):
    emulator.component_secret = "not-the-secret"
    platform = Platform(emulator, MemoryBackend(), upstream)
    try:
        await platform.push()
        emulator.component_secret = WeChatEmulator.component_secret
        with pytest.raises(CredentialsRejected) as caught:
            await platform.keeper.get()
        assert (caught.value.reason, caught.value.errcode) == ("configuration_error", 40125)
        assert "not-the-secret" not in caught.value.message
    finally:
        await platform.aclose()


# --- the emulator's component login ---------------------------------------------------------


async def test_the_authorize_page_and_the_component_exchange(platform, emulator, upstream, caplog):
    caplog.set_level(logging.INFO)
    await platform.push()
    token = await platform.keeper.get()
    authorizer = emulator.authorizer_appids[1]
    page = await upstream.get(
        "/connect/oauth2/authorize",
        params={
            "appid": authorizer,
            "redirect_uri": "https://site.test/cb",
            "response_type": "code",
            "scope": "snsapi_userinfo",
            "state": "abc",
            "component_appid": emulator.component_appid,
        },
    )
    assert page.status_code == 302
    callback = httpx.URL(page.headers["location"])
    assert callback.params["appid"] == authorizer and callback.params["state"] == "abc"
    code = callback.params["code"]

    def exchange(code: str, appid: str = authorizer, **changes: str):
        params = {
            "appid": appid,
            "code": code,
            "grant_type": "authorization_code",
            "component_appid": emulator.component_appid,
            "component_access_token": token,
            **changes,
        }
        return upstream.get("/sns/oauth2/component/access_token", params=params)

    # A bad component token never reaches the code.
    refused = (await exchange(code, component_access_token="nope")).json()
    assert refused["errcode"] == 40014 and emulator.exchange_count(code) == 0
    # The other authorizer's site cannot trade it.
    assert (await exchange(code, appid=emulator.authorizer_appids[0])).json()["errcode"] == 40029
    # The official account's own endpoint does not know it.
    plain = await upstream.get(
        "/sns/oauth2/access_token",
        params={
            "appid": emulator.appid,
            "secret": emulator.secret,
            "code": code,
            "grant_type": "authorization_code",
        },
    )
    assert plain.json()["errcode"] == 40029
    code = emulator.issue_component_code(authorizer, "snsapi_userinfo")
    granted = (await exchange(code)).json()
    assert granted["scope"] == "snsapi_userinfo" and granted["openid"].startswith("o")
    assert granted["openid"] != emulator.user.openid  # one openid per account
    assert [(await exchange(code)).json()["errcode"] for _ in range(2)] == [40163, 40029]
    assert emulator.exchange_count(code) == 3
    assert emulator.calls["component_access_token"] == 5
    profile = await upstream.get(
        "/sns/userinfo",
        params={"access_token": granted["access_token"], "openid": granted["openid"]},
    )
    assert profile.json()["nickname"] == emulator.user.nickname
    # httpx's own request log never shows the component token.
    assert "component_access_token=[redacted]" in caplog.text and token not in caplog.text
    # A wrong component_appid on the authorize page is refused there.
    page = await upstream.get(
        "/connect/oauth2/authorize",
        params={
            "appid": authorizer,
            "redirect_uri": "https://site.test/cb",
            "response_type": "code",
            "scope": "snsapi_base",
            "component_appid": "wxnope",
        },
    )
    assert page.status_code == 400


async def test_expired_component_codes_and_tokens(platform, emulator, upstream):
    await platform.push()
    token = await platform.keeper.get()
    code = emulator.issue_component_code()
    emulator.expire_code(code)
    params = {
        "appid": emulator.authorizer_appids[0],
        "code": code,
        "grant_type": "authorization_code",
        "component_appid": emulator.component_appid,
        "component_access_token": token,
    }
    answer = await upstream.get("/sns/oauth2/component/access_token", params=params)
    assert answer.json()["errcode"] == 42003
    emulator.component_tokens.expire()
    params["code"] = emulator.issue_component_code()
    answer = await upstream.get("/sns/oauth2/component/access_token", params=params)
    assert answer.json()["errcode"] == 42001


async def test_reset_forgets_the_platform(emulator):
    emulator.issue_ticket()
    emulator.component_tokens.rotate()
    emulator.reset()
    assert emulator.current_ticket is None and emulator.component_tokens.issued[0]
    assert emulator.component_tokens.check(emulator.component_tokens.issued[0]) == 40014


def test_crypto_and_store_must_agree():
    emulator = WeChatEmulator()
    tickets = TicketStore(MemoryBackend(), "wxsomeoneelse00001")
    with pytest.raises(ValueError):
        TicketEndpoint(crypto=emulator.crypto, tickets=tickets)
    with pytest.raises(ValueError):
        ComponentTokenFetcher(emulator.component_appid, "s", tickets)
    with pytest.raises(TypeError):
        TicketStore(object(), "wx1")  # type: ignore[arg-type]
    crypto = MessageCrypto("t0k", "A" * 43, "wx1")
    assert "t0k" not in repr(
        TicketEndpoint(crypto=crypto, tickets=TicketStore(MemoryBackend(), "wx1"))
    )


# --- Redis: a restart keeps the ticket, four workers fetch once ------------------------------


@pytest.mark.redis
@ASYNCIO_ONLY
async def test_the_ticket_survives_a_restart_on_redis(redis_server, emulator, upstream):
    from asgi_wechat_oauth.backends.redis import RedisBackend

    prefix = f"platform-{uuid.uuid4().hex[:8]}"
    before = RedisBackend(redis_server.url, prefix=prefix)
    platform = Platform(emulator, before, upstream)
    try:
        assert (await platform.push()).text == "success"
    finally:
        await platform.aclose()
        await before.aclose()
    after = RedisBackend(redis_server.url, prefix=prefix)  # a new process: nothing in memory
    restarted = Platform(emulator, after, upstream)
    try:
        assert await restarted.tickets.current() == emulator.current_ticket
        assert (await restarted.keeper.get()).startswith("COMPONENT_TOKEN_")
        # Another prefix (another deployment) has no ticket.
        other = TicketStore(RedisBackend(redis_server.url, prefix=prefix + "x"), "wx1")
        assert await other.current() is None
        await other.backend.aclose()
    finally:
        await restarted.aclose()
        await after.aclose()


@pytest.mark.redis
@ASYNCIO_ONLY
async def test_four_workers_share_the_ticket_and_fetch_one_component_token(
    redis_server, emulator, upstream
):
    from asgi_wechat_oauth.backends.redis import RedisBackend

    emulator.latency = 0.05
    prefix = f"platform-{uuid.uuid4().hex[:8]}"
    workers = [
        Platform(emulator, RedisBackend(redis_server.url, prefix=prefix), upstream)
        for _ in range(4)
    ]
    try:
        for worker in workers:  # nobody has a ticket yet
            with pytest.raises(ServiceUnavailable):
                await worker.keeper.get()
        assert (await workers[2].push()).text == "success"  # WeChat reaches one worker
        tokens: list[str] = []

        async def get(worker: Platform) -> None:
            tokens.append(await worker.keeper.get())

        async with anyio.create_task_group() as tg:
            for i in range(80):
                tg.start_soon(get, workers[i % 4])
        assert len(set(tokens)) == 1
        assert emulator.calls["api_component_token"] == 1
        # A newer push on another worker replaces the ticket for all.
        await workers[0].push()
        assert {await w.tickets.current() for w in workers} == {emulator.current_ticket}
    finally:
        for worker in workers:
            await worker.aclose()
            await worker.backend.aclose()
