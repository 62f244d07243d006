"""WeChatIdentity: frozen, safe to print, per-request state, serialisable; what the middleware
puts in it for each scope and user."""

from __future__ import annotations

import dataclasses
import json
import logging

import anyio
import httpx
import pytest

from asgi_wechat_oauth import AccessToken, UserInfo, WeChatIdentity
from asgi_wechat_oauth.backends import MemoryBackend
from asgi_wechat_oauth.testing import EmulatedUser
from support import CALLBACK, CountingBackend, wait_until

pytestmark = pytest.mark.anyio


def _identity(**overrides) -> WeChatIdentity:
    token = AccessToken(
        openid="oOpen",
        scope="snsapi_userinfo",
        access_token="ACCESS_secret_token",
        refresh_token="REFRESH_secret_token",
        unionid="oUnion",
    )
    info = UserInfo(openid="oOpen", nickname="昵称 🎉", privilege=("chinaunicom",))
    identity = WeChatIdentity.from_token(token, info)
    return dataclasses.replace(identity, **overrides)


def test_identity_is_frozen():
    identity = _identity()
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.openid = "oOther"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.userinfo.nickname = "x"  # type: ignore[misc,union-attr]


def test_reprs_hide_tokens():
    identity = _identity()
    token = AccessToken("oOpen", "snsapi_base", "ACCESS_secret_token", "REFRESH_secret_token")
    for text in (repr(identity), str(identity), repr(token), str(token)):
        assert "ACCESS_secret_token" not in text
        assert "REFRESH_secret_token" not in text
    assert "oOpen" in repr(identity)


@pytest.mark.parametrize("with_userinfo", [True, False])
def test_to_dict_from_dict_round_trip(with_userinfo):
    identity = _identity(state="st8", is_snapshotuser=True)
    if not with_userinfo:
        identity = dataclasses.replace(identity, userinfo=None)
    data = json.loads(json.dumps(identity.to_dict()))  # JSON-ready
    assert data["access_token"] == "ACCESS_secret_token"  # tokens kept: it is for storage
    assert WeChatIdentity.from_dict(data) == identity


def test_identity_is_slotted_and_to_dict_names_every_field():
    # Slots keep the identities waiting in the result cache small; to_dict is spelled out, so
    # a field added to the class must be added there too.
    identity = _identity()
    assert not hasattr(identity, "__dict__") and not hasattr(identity.userinfo, "__dict__")
    data = identity.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(WeChatIdentity)}
    assert set(data["userinfo"]) == {f.name for f in dataclasses.fields(UserInfo)}


def test_from_token_takes_unionid_from_token_then_userinfo():
    token = AccessToken("oOpen", "snsapi_userinfo", "a", "r", unionid=None)
    info = UserInfo(openid="oOpen", unionid="oUnionFromProfile")
    assert WeChatIdentity.from_token(token, info).unionid == "oUnionFromProfile"
    both = dataclasses.replace(token, unionid="oUnionFromToken")
    assert WeChatIdentity.from_token(both, info).unionid == "oUnionFromToken"
    assert WeChatIdentity.from_token(token).unionid is None


def test_wechat_json_is_parsed_strictly_for_identity_and_tolerantly_for_the_profile():
    token = AccessToken.from_wechat(
        {"openid": "o", "access_token": "a", "refresh_token": "r", "scope": "a,b,"}
    )
    assert (token.expires_in, token.refresh_token, token.is_snapshotuser) == (7200, "r", False)
    with pytest.raises(ValueError):  # more in test_upstream_answers.py
        AccessToken.from_wechat({**vars(token), "expires_in": "oops"})
    assert token.scopes == frozenset({"a", "b"})
    assert AccessToken.from_wechat({**vars(token), "is_snapshotuser": 1}).is_snapshotuser
    info = UserInfo.from_wechat({"openid": "o", "sex": None, "privilege": "nope", "unionid": ""})
    assert (info.sex, info.privilege, info.unionid, info.nickname) == (0, (), None, "")


# --- through the middleware ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "fetched"),
    [("snsapi_userinfo", True), ("snsapi_login", True), ("snsapi_base", False)],
)
async def test_userinfo_follows_the_granted_scope(emulator, make_app, scope, fetched):
    middleware, client = await make_app()
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code(scope)}")
    assert response.status_code == 200
    assert response.json()["scope"] == scope
    assert response.json()["nickname"] == (emulator.user.nickname if fetched else None)
    assert emulator.calls["userinfo"] == (1 if fetched else 0)


async def test_fetch_profile_false_skips_the_profile(emulator, make_app):
    middleware, client = await make_app(fetch_profile=False)
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code('snsapi_userinfo')}")
    assert response.status_code == 200
    assert response.json()["nickname"] is None
    assert emulator.calls["userinfo"] == 0


async def test_fetch_profile_true_on_base_scope_degrades(emulator, make_app, caplog):
    caplog.set_level(logging.WARNING, logger="asgi_wechat_oauth")
    middleware, client = await make_app(fetch_profile=True)
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code('snsapi_base')}")
    assert response.status_code == 200  # the code is spent: the login must not be lost
    assert response.json()["openid"] == emulator.user.openid
    assert response.json()["nickname"] is None
    assert emulator.calls["userinfo"] == 1  # tried, WeChat answered 48001
    assert any("48001" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("scope", "unionid"),
    [("snsapi_userinfo", "oUnionBound"), ("snsapi_login", "oUnionBound"), ("snsapi_base", None)],
)
async def test_unionid_comes_through(emulator, make_app, scope, unionid):
    emulator.user = EmulatedUser(unionid="oUnionBound")
    middleware, client = await make_app()
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code(scope)}")
    assert response.json()["unionid"] == unionid


async def test_unionid_is_none_for_unbound_app(emulator, make_app):
    middleware, client = await make_app()
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code('snsapi_userinfo')}")
    assert response.json()["unionid"] is None


@pytest.mark.parametrize("snapshot", [True, False])
async def test_snapshot_user_is_flagged(emulator, make_app, snapshot):
    user = EmulatedUser(openid="oVirtualOpenId", snapshot=snapshot)
    middleware, client = await make_app()
    code = emulator.issue_code("snsapi_userinfo", user=user)
    response = await client.get(f"{CALLBACK}?code={code}")
    assert response.json()["is_snapshotuser"] is snapshot
    assert response.json()["openid"] == "oVirtualOpenId"


async def test_concurrent_duplicates_all_get_the_callbacks_state(
    emulator, make_app, gate, gated_upstream
):
    backend = CountingBackend(MemoryBackend())
    middleware, client = await make_app(backend=backend, http_client=gated_upstream)
    code = emulator.issue_code()
    results: list[httpx.Response] = []

    async def one() -> None:
        results.append(await client.get(f"{CALLBACK}?code={code}&state=s8"))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
        await wait_until(lambda: gate.arrived == 1 and middleware.counters.waiting == 2)
        gate.open()

    assert [(r.status_code, r.json()["state"]) for r in results] == [(200, "s8")] * 3
    assert emulator.exchange_count(code) == 1


async def test_concurrent_duplicate_with_another_state_is_refused(
    emulator, make_app, gate, gated_upstream
):
    # The identity belongs to the callback that traded the code (state bound to the login);
    # a duplicate carrying another state (or none) holds a replayed or leaked code.
    backend = CountingBackend(MemoryBackend())
    middleware, client = await make_app(backend=backend, http_client=gated_upstream)
    code = emulator.issue_code()
    results: dict[str, httpx.Response] = {}

    async def one(name: str, suffix: str) -> None:
        results[name] = await client.get(f"{CALLBACK}?code={code}{suffix}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "leader", "&state=mine")
        await wait_until(lambda: gate.arrived == 1)  # "leader" leads
        tg.start_soon(one, "other", "&state=theirs")
        tg.start_soon(one, "none", "")
        await wait_until(lambda: middleware.counters.waiting == 2)
        gate.open()

    assert results["leader"].status_code == 200
    assert results["leader"].json()["state"] == "mine"
    for name in ("other", "none"):
        assert results[name].status_code == 403
        assert results[name].json()["error"] == "state_mismatch"
    assert emulator.exchange_count(code) == 1
    assert middleware.counters.errors == {"state_mismatch": 2}


async def test_late_duplicate_keeps_the_state_and_another_state_is_refused(emulator, make_app):
    middleware, client = await make_app()
    code = emulator.issue_code()
    first = await client.get(f"{CALLBACK}?code={code}&state=one")
    again = await client.get(f"{CALLBACK}?code={code}&state=one")
    replay = await client.get(f"{CALLBACK}?code={code}&state=two")
    assert (first.json()["state"], again.json()["state"]) == ("one", "one")
    assert replay.status_code == 403
    assert replay.json()["error"] == "state_mismatch"
    assert emulator.exchange_count(code) == 1
    assert middleware.counters.cache_hits == 2


async def test_callback_without_state_has_state_none(emulator, make_app):
    middleware, client = await make_app()
    code = emulator.issue_code()
    responses = [await client.get(f"{CALLBACK}?code={code}") for _ in range(2)]
    assert [(r.status_code, r.json()["state"]) for r in responses] == [(200, None)] * 2
