"""The WeChat emulator answers like WeChat: consent redirects, one-time codes, credential checks,
scopes, refresh, sns/auth, injected faults and latency."""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from asgi_wechat_oauth._core.singleflight import code_hash, flight_key
from asgi_wechat_oauth.testing import EmulatedUser, Fault, WeChatEmulator
from support import WECHAT_URL

pytestmark = pytest.mark.anyio

REDIRECT = "https://app.example/wechat/callback"


def _token_params(
    emulator: WeChatEmulator, code: str, overrides: dict[str, str] | None = None
) -> dict[str, str]:
    params = {
        "appid": emulator.appid,
        "secret": emulator.secret,
        "code": code,
        "grant_type": "authorization_code",
    }
    params.update(overrides or {})
    return params


async def _exchange(
    upstream: httpx.AsyncClient,
    emulator: WeChatEmulator,
    code: str,
    overrides: dict[str, str] | None = None,
) -> dict:
    response = await upstream.get(
        "/sns/oauth2/access_token", params=_token_params(emulator, code, overrides)
    )
    return response.json()


def _consent_params(
    emulator: WeChatEmulator, scope: str, overrides: dict[str, str] | None = None
) -> dict[str, str]:
    params = {
        "appid": emulator.appid,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": scope,
        "state": "xyz123",
    }
    params.update(overrides or {})
    return params


@pytest.mark.parametrize(
    ("page", "scope"),
    [
        ("/connect/oauth2/authorize", "snsapi_base"),
        ("/connect/oauth2/authorize", "snsapi_userinfo"),
        ("/connect/qrconnect", "snsapi_login"),
    ],
)
async def test_consent_redirects_with_code_and_state(emulator, upstream, page, scope):
    response = await upstream.get(page, params=_consent_params(emulator, scope))
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["xyz123"]
    (code,) = query["code"]
    token = await _exchange(upstream, emulator, code)
    assert token["scope"] == scope
    assert token["openid"] == emulator.user.openid


async def test_consent_keeps_an_existing_query_in_redirect_uri(emulator, upstream):
    params = _consent_params(emulator, "snsapi_base", {"redirect_uri": REDIRECT + "?next=%2Fhome"})
    response = await upstream.get("/connect/oauth2/authorize", params=params)
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["next"] == ["/home"]
    assert "code" in query


@pytest.mark.parametrize(
    ("page", "overrides"),
    [
        ("/connect/oauth2/authorize", {"scope": "snsapi_login"}),
        ("/connect/oauth2/authorize", {"scope": "snsapi_nope"}),
        ("/connect/qrconnect", {"scope": "snsapi_base"}),
        ("/connect/oauth2/authorize", {"appid": "wxother"}),
        ("/connect/oauth2/authorize", {"response_type": "token"}),
        ("/connect/oauth2/authorize", {"redirect_uri": "javascript:alert(1)"}),
    ],
)
async def test_consent_refuses_bad_requests(emulator, upstream, page, overrides):
    scope = "snsapi_login" if page == "/connect/qrconnect" else "snsapi_base"
    response = await upstream.get(page, params=_consent_params(emulator, scope, overrides))
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_codes_are_one_time(emulator, upstream):
    code = emulator.issue_code()
    first = await _exchange(upstream, emulator, code)
    assert "access_token" in first
    assert (await _exchange(upstream, emulator, code))["errcode"] == 40163
    assert (await _exchange(upstream, emulator, code))["errcode"] == 40029
    assert emulator.exchange_count(code) == 3
    assert emulator.total_exchanges == 3
    assert emulator.calls["access_token"] == 3


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"appid": "wxother"}, 40013),
        ({"secret": "wrong"}, 40125),
        ({"grant_type": "client_credentials"}, 40002),
        ({"code": ""}, 41008),
        ({"code": "neverissued"}, 40029),
    ],
)
async def test_exchange_refusals(emulator, upstream, overrides, errcode):
    code = emulator.issue_code()
    answer = await _exchange(upstream, emulator, code, overrides)
    assert answer["errcode"] == errcode
    assert "access_token" not in answer


async def test_refused_credentials_do_not_use_the_code(emulator, upstream):
    code = emulator.issue_code()
    assert (await _exchange(upstream, emulator, code, {"secret": "wrong"}))["errcode"] == 40125
    assert "access_token" in await _exchange(upstream, emulator, code)


async def test_code_of_another_appid_is_invalid():
    mine, theirs = WeChatEmulator(), WeChatEmulator(appid="wxtheirs")
    code = theirs.issue_code()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mine), base_url=WECHAT_URL
    ) as upstream:
        assert (await _exchange(upstream, mine, code))["errcode"] == 40029


async def test_expired_code_is_42003(emulator, upstream):
    code = emulator.issue_code()
    emulator.expire_code(code)
    assert (await _exchange(upstream, emulator, code))["errcode"] == 42003


async def test_code_ttl_applies(upstream):
    emulator = WeChatEmulator(code_ttl=-1.0)  # issued already expired
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator), base_url=WECHAT_URL
    ) as client:
        assert (await _exchange(client, emulator, emulator.issue_code()))["errcode"] == 42003
        # qrconnect codes have their own (longer) lifetime
        assert "access_token" in await _exchange(
            client, emulator, emulator.issue_code("snsapi_login")
        )


async def test_json_is_served_as_text_plain(emulator, upstream):
    response = await upstream.get(
        "/sns/oauth2/access_token", params=_token_params(emulator, emulator.issue_code())
    )
    assert response.headers["content-type"].startswith("text/plain")
    assert json.loads(response.content)["expires_in"] == 7200


async def test_userinfo_by_scope(emulator, upstream):
    base = await _exchange(upstream, emulator, emulator.issue_code("snsapi_base"))
    full = await _exchange(upstream, emulator, emulator.issue_code("snsapi_userinfo"))

    async def userinfo(token: dict, openid: str | None = None) -> dict:
        params = {"access_token": token["access_token"], "openid": openid or token["openid"]}
        return (await upstream.get("/sns/userinfo", params=params)).json()

    assert (await userinfo(base))["errcode"] == 48001
    profile = await userinfo(full)
    assert profile["nickname"] == emulator.user.nickname
    assert profile["openid"] == emulator.user.openid
    assert (await userinfo(full, "oSomeoneElse"))["errcode"] == 40003
    assert (await userinfo({"access_token": "nope", "openid": "x"}))["errcode"] == 40001
    assert emulator.calls["userinfo"] == 4


async def test_unionid_and_snapshot_flags(emulator, upstream):
    bound = EmulatedUser(openid="oBound", unionid="oUnion1")
    base = await _exchange(upstream, emulator, emulator.issue_code("snsapi_base", user=bound))
    assert "unionid" not in base
    full = await _exchange(upstream, emulator, emulator.issue_code("snsapi_userinfo", user=bound))
    assert full["unionid"] == "oUnion1"
    assert "is_snapshotuser" not in full
    ghost = EmulatedUser(openid="oVirtual", snapshot=True)
    snap = await _exchange(upstream, emulator, emulator.issue_code("snsapi_userinfo", user=ghost))
    assert snap["is_snapshotuser"] == 1
    assert snap["openid"] == "oVirtual"


async def test_refresh_token(emulator, upstream):
    token = await _exchange(upstream, emulator, emulator.issue_code("snsapi_userinfo"))
    params = {
        "appid": emulator.appid,
        "grant_type": "refresh_token",
        "refresh_token": token["refresh_token"],
    }
    fresh = (await upstream.get("/sns/oauth2/refresh_token", params=params)).json()
    assert fresh["access_token"] != token["access_token"]
    assert fresh["refresh_token"] == token["refresh_token"]
    assert fresh["scope"] == "snsapi_userinfo"
    bad = {**params, "refresh_token": "nope"}
    assert (await upstream.get("/sns/oauth2/refresh_token", params=bad)).json()["errcode"] == 40030
    other_app = {**params, "appid": "wxother"}
    answer = (await upstream.get("/sns/oauth2/refresh_token", params=other_app)).json()
    assert answer["errcode"] == 40013


async def test_sns_auth(emulator, upstream):
    token = await _exchange(upstream, emulator, emulator.issue_code())
    ok = {"access_token": token["access_token"], "openid": token["openid"]}
    assert (await upstream.get("/sns/auth", params=ok)).json() == {"errcode": 0, "errmsg": "ok"}
    bad = {**ok, "access_token": "nope"}
    assert (await upstream.get("/sns/auth", params=bad)).json()["errcode"] == 40001
    wrong = {**ok, "openid": "oSomeoneElse"}
    assert (await upstream.get("/sns/auth", params=wrong)).json()["errcode"] == 40003


@pytest.mark.parametrize("fault", [Fault.BUSY, Fault.HTTP_500, Fault.HTTP_502])
async def test_faults_before_use_leave_the_code_usable(emulator, upstream, fault):
    code = emulator.issue_code()
    emulator.inject_fault(fault)
    response = await upstream.get("/sns/oauth2/access_token", params=_token_params(emulator, code))
    if fault is Fault.BUSY:
        assert response.status_code == 200
        assert response.json()["errcode"] == -1
    else:
        assert response.status_code == (500 if fault is Fault.HTTP_500 else 502)
    assert "access_token" in await _exchange(upstream, emulator, code)
    assert emulator.exchange_count(code) == 2


async def test_malformed_json_fault_uses_the_code(emulator, upstream):
    code = emulator.issue_code()
    emulator.inject_fault(Fault.MALFORMED_JSON)
    response = await upstream.get("/sns/oauth2/access_token", params=_token_params(emulator, code))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert (await _exchange(upstream, emulator, code))["errcode"] == 40163


@pytest.mark.parametrize("fault", [Fault.TRUNCATED, Fault.DROP])
async def test_connection_faults_use_the_code(emulator, upstream, fault):
    code = emulator.issue_code()
    emulator.inject_fault(fault)
    with pytest.raises(ConnectionResetError):
        await upstream.get("/sns/oauth2/access_token", params=_token_params(emulator, code))
    assert (await _exchange(upstream, emulator, code))["errcode"] == 40163


async def test_faults_are_counted_and_per_endpoint(emulator, upstream):
    emulator.inject_fault("busy", count=2)
    emulator.inject_fault(Fault.HTTP_500, endpoint="userinfo")
    code = emulator.issue_code("snsapi_userinfo")
    assert (await _exchange(upstream, emulator, code))["errcode"] == -1
    assert (await _exchange(upstream, emulator, code))["errcode"] == -1
    token = await _exchange(upstream, emulator, code)
    params = {"access_token": token["access_token"], "openid": token["openid"]}
    assert (await upstream.get("/sns/userinfo", params=params)).status_code == 500
    assert (await upstream.get("/sns/userinfo", params=params)).status_code == 200


async def test_latency_delays_answers_and_codes_are_used_on_arrival(emulator, upstream):
    emulator.latency = 60.0
    code = emulator.issue_code()
    with anyio.move_on_after(0.05) as scope:
        await _exchange(upstream, emulator, code)
    assert scope.cancelled_caught  # still waiting for the answer
    emulator.latency = 0.0
    # The slow exchange used the code when it arrived: the next one is a reuse.
    assert (await _exchange(upstream, emulator, code))["errcode"] == 40163


async def test_reset_forgets_everything(emulator, upstream):
    code = emulator.issue_code()
    await _exchange(upstream, emulator, code)
    emulator.inject_fault(Fault.BUSY)
    emulator.reset()
    assert emulator.total_exchanges == 0
    assert emulator.calls == {}
    assert (await _exchange(upstream, emulator, code))["errcode"] == 40029  # code forgotten
    fresh = emulator.issue_code()
    assert "access_token" in await _exchange(upstream, emulator, fresh)  # no BUSY left


def test_issued_codes_are_unique_and_well_formed(emulator):
    codes = {emulator.issue_code() for _ in range(100)}
    assert len(codes) == 100
    assert all(code.isalnum() and len(code) <= 128 for code in codes)


async def test_consent_helper_returns_the_callback_url_with_a_fresh_code(emulator, upstream):
    from asgi_wechat_oauth.testing import consent

    callback = await consent(
        upstream,
        "http://wechat.test",
        appid=emulator.appid,
        redirect_uri="http://app.test/wechat/callback",
        scope="snsapi_userinfo",
        state="s1",
    )
    assert callback.startswith("http://app.test/wechat/callback?code=")
    assert callback.endswith("&state=s1")
    with pytest.raises(RuntimeError, match="400"):
        await consent(
            upstream, "http://wechat.test", appid="wx-other", redirect_uri="http://app.test/cb"
        )


async def test_duplicate_exchanges_name_each_code_by_its_products_key(emulator, upstream):
    """Web codes hash as ``appid:code``, mini-program codes as ``mp:appid:code``: the keys the
    middlewares log as ``code_hash``. A ``since`` snapshot leaves earlier exchanges out."""
    web, mini = emulator.issue_code(), emulator.issue_miniprogram_code()
    for _ in range(2):
        await _exchange(upstream, emulator, web)
    before = Counter(emulator.exchanges)
    mp_params = {**_token_params(emulator, ""), "js_code": mini}
    for _ in range(3):
        await upstream.get("/sns/jscode2session", params=mp_params)
    await _exchange(upstream, emulator, emulator.issue_code())  # once: not a duplicate
    assert emulator.duplicate_exchanges() == {
        code_hash(flight_key("", emulator.appid, web)): 2,
        code_hash(flight_key("mp", emulator.appid, mini)): 3,
    }
    assert emulator.duplicate_exchanges(since=before) == {
        code_hash(flight_key("mp", emulator.appid, mini)): 3
    }
    emulator.reset()
    assert emulator.duplicate_exchanges() == {}


# --- the control surface's settings (issue 28) ------------------------------------------------

SETTINGS = ["count", "double_navigation", "endpoint", "fault", "latency", "snapshot"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"latancy": "0.5"}, "unknown setting 'latancy' (did you mean latency?)"),
        ({"latency": "soon"}, "latency='soon': not a number of seconds (0 or more)"),
        ({"latency": "-1"}, "latency='-1': not a number of seconds (0 or more)"),
        (
            {"double_navigation": "maybe"},
            "double_navigation='maybe': not a boolean (1/0, true/false, on/off, yes/no)",
        ),
        ({"fault": "slow"}, "fault='slow': not one of busy, http_500, http_502,"),
        ({"fault": "busy", "count": "0"}, "count='0': not a whole number of at least 1"),
        ({"fault": "busy", "endpoint": "token2"}, "endpoint='token2': not one of access_token,"),
    ],
)
async def test_bad_settings_say_what_was_wrong_and_list_every_setting(
    emulator, upstream, params, message
):
    before = (emulator.latency, emulator.double_navigation)
    answer = await upstream.post("/_emulator/settings", params=params)
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "bad_settings"
    assert body["message"].startswith(message), body["message"]
    assert sorted(body["settings"]) == SETTINGS
    assert all(body["settings"].values())  # each says what it takes
    assert (emulator.latency, emulator.double_navigation) == before  # nothing half-applied
    assert not emulator._faults


@pytest.mark.anyio
async def test_good_settings_still_apply(emulator, upstream):
    answer = await upstream.post(
        "/_emulator/settings",
        params={"latency": "0", "fault": "busy", "count": "2", "endpoint": "userinfo"},
    )
    assert answer.status_code == 200 and answer.json()["latency"] == 0.0
    assert list(emulator._faults["userinfo"]) == [Fault.BUSY, Fault.BUSY]


@pytest.mark.anyio
async def test_the_wecom_emulator_lists_its_settings_too(wecom_emulator):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=wecom_emulator), base_url=WECHAT_URL
    ) as control:
        answer = await control.post("/_emulator/settings", params={"errcode": "sixty"})
        unknown = await control.post("/_emulator/settings", params={"decline": "1"})
    assert answer.status_code == 400
    assert answer.json()["message"] == (
        "errcode='sixty': not an errcode (a whole number, such as 60020)"
    )
    assert "decline_qr_login" in answer.json()["settings"]
    assert unknown.json()["message"] == "unknown setting 'decline' (did you mean decline_qr_login?)"
