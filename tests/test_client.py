"""WeChatOAuthClient against the emulator: the four calls, error mapping, no secret in errors."""

from __future__ import annotations

import socket

import pytest

from asgi_wechat_oauth import AccessToken, UserInfo, WeChatOAuthClient
from asgi_wechat_oauth.errors import (
    CodeRejected,
    CredentialsRejected,
    UpstreamError,
    UpstreamTimeout,
    WeChatOAuthError,
)
from asgi_wechat_oauth.testing import EmulatedUser, Fault
from support import WECHAT_URL

pytestmark = pytest.mark.anyio


@pytest.fixture
def client(emulator, upstream) -> WeChatOAuthClient:
    return WeChatOAuthClient(
        emulator.appid, emulator.secret, api_base_url=WECHAT_URL, http_client=upstream
    )


def _assert_no_secrets(exc: WeChatOAuthError, *secrets: str) -> None:
    rendered = " ".join([str(exc), repr(exc), exc.message, str(exc.to_dict())])
    for secret in secrets:
        assert secret not in rendered


async def test_exchange_code_returns_the_token(emulator, client):
    code = emulator.issue_code("snsapi_userinfo")
    token = await client.exchange_code(code)
    assert isinstance(token, AccessToken)
    assert token.openid == emulator.user.openid
    assert token.scope == "snsapi_userinfo"
    assert token.scopes == frozenset({"snsapi_userinfo"})
    assert token.access_token and token.refresh_token
    assert token.expires_in == 7200
    assert token.is_snapshotuser is False
    assert emulator.exchange_count(code) == 1


async def test_exchange_code_twice_is_code_used_then_code_invalid(emulator, client):
    code = emulator.issue_code()
    await client.exchange_code(code)
    with pytest.raises(CodeRejected) as second:
        await client.exchange_code(code)
    assert (second.value.reason, second.value.errcode) == ("code_used", 40163)
    with pytest.raises(CodeRejected) as third:
        await client.exchange_code(code)
    assert (third.value.reason, third.value.errcode) == ("code_invalid", 40029)
    assert third.value.status_code == 400
    assert third.value.definitive is True


async def test_exchange_expired_code_is_code_expired(emulator, client):
    code = emulator.issue_code()
    emulator.expire_code(code)
    with pytest.raises(CodeRejected) as exc:
        await client.exchange_code(code)
    assert (exc.value.reason, exc.value.errcode) == ("code_expired", 42003)


async def test_get_userinfo_returns_the_profile(emulator, client):
    emulator.user = EmulatedUser(unionid="oUnion42")
    token = await client.exchange_code(emulator.issue_code("snsapi_userinfo"))
    info = await client.get_userinfo(token.access_token, token.openid)
    assert isinstance(info, UserInfo)
    assert info.openid == emulator.user.openid
    assert info.nickname == "微信用户 🐼"
    assert info.headimgurl == emulator.user.headimgurl
    assert info.unionid == "oUnion42"
    assert info.privilege == ()


async def test_get_userinfo_with_base_scope_is_48001(emulator, client):
    token = await client.exchange_code(emulator.issue_code("snsapi_base"))
    with pytest.raises(UpstreamError) as exc:
        await client.get_userinfo(token.access_token, token.openid)
    assert (exc.value.reason, exc.value.errcode, exc.value.status_code) == (
        "upstream_error",
        48001,
        502,
    )
    _assert_no_secrets(exc.value, token.access_token)


async def test_get_userinfo_with_wrong_openid_is_40003(emulator, client):
    token = await client.exchange_code(emulator.issue_code("snsapi_userinfo"))
    with pytest.raises(UpstreamError) as exc:
        await client.get_userinfo(token.access_token, "oSomeoneElse")
    assert exc.value.errcode == 40003


async def test_refresh_access_token_gives_a_working_token(emulator, client):
    token = await client.exchange_code(emulator.issue_code("snsapi_userinfo"))
    fresh = await client.refresh_access_token(token.refresh_token)
    assert fresh.openid == token.openid
    assert fresh.access_token != token.access_token
    assert fresh.refresh_token == token.refresh_token
    assert (await client.get_userinfo(fresh.access_token, fresh.openid)).openid == token.openid


async def test_refresh_with_unknown_token_is_40030(client):
    with pytest.raises(UpstreamError) as exc:
        await client.refresh_access_token("REFRESH_unknown")
    assert exc.value.errcode == 40030
    _assert_no_secrets(exc.value, "REFRESH_unknown")


async def test_check_access_token(emulator, client):
    token = await client.exchange_code(emulator.issue_code())
    assert await client.check_access_token(token.access_token, token.openid) is True
    assert await client.check_access_token("ACCESS_unknown", token.openid) is False
    assert await client.check_access_token(token.access_token, "oSomeoneElse") is False
    assert emulator.calls["auth"] == 3


async def test_check_access_token_raises_when_wechat_cannot_say(emulator, client):
    token = await client.exchange_code(emulator.issue_code())
    emulator.inject_fault(Fault.HTTP_502, endpoint="auth")
    with pytest.raises(UpstreamError) as exc:
        await client.check_access_token(token.access_token, token.openid)
    assert exc.value.errcode is None


@pytest.mark.parametrize(
    ("fault", "kind", "reason", "errcode"),
    [
        (Fault.BUSY, UpstreamError, "upstream_busy", -1),
        (Fault.HTTP_500, UpstreamError, "upstream_unavailable", None),
        (Fault.HTTP_502, UpstreamError, "upstream_unavailable", None),
        (Fault.MALFORMED_JSON, UpstreamError, "upstream_bad_response", None),
        (Fault.TRUNCATED, UpstreamError, "upstream_unavailable", None),
        (Fault.DROP, UpstreamError, "upstream_unavailable", None),
    ],
)
async def test_faults_map_to_errors_without_secrets(emulator, client, fault, kind, reason, errcode):
    emulator.inject_fault(fault)
    code = emulator.issue_code()
    with pytest.raises(WeChatOAuthError) as exc:
        await client.exchange_code(code)
    assert type(exc.value) is kind
    assert (exc.value.reason, exc.value.errcode, exc.value.status_code) == (reason, errcode, 502)
    assert exc.value.definitive is False
    _assert_no_secrets(exc.value, emulator.secret, code, WECHAT_URL)


@pytest.mark.parametrize(
    ("appid", "secret", "errcode"),
    [
        ("wxemulated0000001", "wrong-secret-value", 40125),
        ("wxwrongappid", "emulated-app-secret-0123456789ab", 40013),
    ],
)
async def test_bad_credentials_are_configuration_errors(emulator, upstream, appid, secret, errcode):
    client = WeChatOAuthClient(appid, secret, api_base_url=WECHAT_URL, http_client=upstream)
    code = emulator.issue_code()
    with pytest.raises(CredentialsRejected) as exc:
        await client.exchange_code(code)
    assert (exc.value.reason, exc.value.errcode, exc.value.status_code) == (
        "configuration_error",
        errcode,
        500,
    )
    _assert_no_secrets(exc.value, secret, code)


async def test_unreachable_wechat_is_upstream_unavailable(emulator):
    # A real refused connection: a port that was just free on the loopback interface.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with WeChatOAuthClient(
        emulator.appid, emulator.secret, api_base_url=f"http://127.0.0.1:{port}"
    ) as client:
        with pytest.raises(UpstreamError) as exc:
            await client.exchange_code("somecode123")
    assert exc.value.reason == "upstream_unavailable"
    assert exc.value.message == "Could not reach WeChat (ConnectError)."
    assert exc.value.__suppress_context__ is True  # httpx's text (with the URL) is dropped
    _assert_no_secrets(exc.value, emulator.secret, "somecode123")


async def test_silent_wechat_is_upstream_timeout(emulator):
    # A real listening socket that never answers: the connection is accepted by the kernel and
    # the request then waits for a reply that never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        async with WeChatOAuthClient(
            emulator.appid,
            emulator.secret,
            api_base_url=f"http://127.0.0.1:{port}",
            timeout=0.05,
        ) as client:
            with pytest.raises(UpstreamTimeout) as exc:
                await client.exchange_code("somecode123")
    assert (exc.value.reason, exc.value.status_code) == ("upstream_timeout", 504)
    _assert_no_secrets(exc.value, emulator.secret, "somecode123")


async def test_owned_http_client_is_created_lazily_and_closed(emulator):
    client = WeChatOAuthClient(emulator.appid, emulator.secret)
    assert client._http_client is None
    owned = client.http_client
    async with client:
        assert client.http_client is owned
    assert owned.is_closed
    assert client._http_client is None


async def test_shared_http_client_is_left_open(client, upstream):
    await client.aclose()
    assert not upstream.is_closed


def test_repr_shows_no_secret(emulator):
    client = WeChatOAuthClient(emulator.appid, emulator.secret)
    assert emulator.secret not in repr(client)
    assert emulator.appid in repr(client)


def test_errors_round_trip_through_dicts():
    original = CodeRejected("code_used", "used", errcode=40163)
    copy = WeChatOAuthError.from_dict(original.to_dict())
    assert type(copy) is CodeRejected
    assert (copy.reason, copy.message, copy.errcode) == ("code_used", "used", 40163)
    unknown = WeChatOAuthError.from_dict(
        {"type": "Nope", "reason": "upstream_error", "errcode": "x"}
    )
    assert type(unknown) is WeChatOAuthError and unknown.errcode is None
