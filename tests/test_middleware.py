"""The middleware as an ASGI citizen: the callback gets an identity, everything else passes
through untouched, lifespan shutdown closes what it owns, and nothing secret leaks."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import anyio
import httpx
import pytest

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.testing import Fault
from support import APP_URL, CALLBACK, WECHAT_URL, call_asgi, code_key, http_scope, wait_until

pytestmark = pytest.mark.anyio


class Recorder:
    """A raw ASGI app that records the scopes it is called with and answers minimally."""

    def __init__(self) -> None:
        self.scopes: list[Any] = []
        self.keys: list[set[str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        self.keys.append(set(scope))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"downstream"})
        elif scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return


async def test_callback_puts_the_identity_in_scope(emulator, make_app):
    recorder = Recorder()
    middleware, client = await make_app(app=recorder)
    code = emulator.issue_code()
    response = await client.get(f"{CALLBACK}?code={code}&state=s1")
    assert response.text == "downstream"
    identity = recorder.scopes[0]["wechat"]
    assert identity.openid == emulator.user.openid
    assert identity.state == "s1"
    assert recorder.keys[0] - {"wechat"} <= set(http_scope())  # nothing else added


@pytest.mark.parametrize(
    "path",
    ["/", "/other", "/wechat/callback//", "/wechat/callbackx", "/wechat", "/WECHAT/CALLBACK"],
)
async def test_other_paths_pass_through_untouched(emulator, make_app, path):
    recorder = Recorder()
    middleware, _ = await make_app(app=recorder)
    scope = http_scope(path=path, query_string=f"code={emulator.issue_code()}".encode())
    keys = set(scope)
    response = await call_asgi(middleware, scope)
    assert (response.status, response.body) == (200, b"downstream")
    assert recorder.scopes == [scope]
    assert recorder.scopes[0] is scope
    assert recorder.keys == [keys]  # no "wechat", nothing added
    assert emulator.total_exchanges == 0


async def test_other_paths_through_starlette(emulator, make_app):
    middleware, client = await make_app()
    response = await client.post(f"/other?code={emulator.issue_code()}")
    # Starlette's own 405 (the route is GET only), not the middleware's JSON one.
    assert (response.status_code, response.text) == (405, "Method Not Allowed")
    assert "cache-control" not in response.headers
    response = await client.get(f"/other?code={emulator.issue_code()}")
    assert response.text == "downstream saw wechat=False"
    assert emulator.total_exchanges == 0


async def test_websocket_on_the_callback_path_passes_through(emulator, make_app):
    recorder = Recorder()
    middleware, _ = await make_app(app=recorder)
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": CALLBACK,
        "raw_path": CALLBACK.encode(),
        "query_string": f"code={emulator.issue_code()}".encode(),
        "root_path": "",
        "headers": [],
        "subprotocols": [],
    }
    keys = set(scope)
    inbox = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert recorder.scopes[0] is scope
    assert recorder.keys == [keys]
    assert emulator.total_exchanges == 0


class KeyErrorApp:
    """An app that fails with a KeyError of its own, after taking ``path`` out of the scope
    when told to (so that the scope looks as if it had never had one)."""

    def __init__(self, drop_path: bool = False) -> None:
        self.calls = 0
        self.drop_path = drop_path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        if self.drop_path:
            del scope["path"]
        raise KeyError("the app's own")


@pytest.mark.parametrize("drop_path", [False, True])
async def test_a_keyerror_of_the_app_goes_out_untouched_and_the_app_runs_once(
    emulator, make_app, drop_path
):
    app = KeyErrorApp(drop_path)
    middleware, _ = await make_app(app=app, login_path="/wechat/login", verify_state=False)
    # The first time the path is matched; the second time it is remembered.
    for calls in (1, 2):
        with pytest.raises(KeyError) as raised:
            await call_asgi(middleware, http_scope(path="/hello"))
        assert raised.value.args == ("the app's own",)
        assert raised.traceback[-1].name == "__call__"  # raised in the app, re-raised as is
        assert "raise KeyError" in str(raised.traceback[-1].statement)
        assert app.calls == calls


async def test_a_scope_of_another_type_without_a_path_is_passed_on(emulator, make_app):
    recorder = Recorder()
    middleware, _ = await make_app(app=recorder, login_path="/wechat/login", verify_state=False)
    scope: dict[str, Any] = {"type": "custom.extension", "asgi": {"version": "3.0"}}
    await middleware(scope, None, None)
    assert recorder.scopes == [scope] and recorder.scopes[0] is scope
    assert scope["wechat_oauth.login_path"] == "/wechat/login"  # told, as every request is
    assert emulator.total_exchanges == 0


async def _run_lifespan(app: Any) -> tuple[dict[str, Any], list[str]]:
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app(scope, receive, send)
    return scope, sent


async def test_lifespan_passes_through_and_shutdown_closes_the_owned_client(emulator):
    recorder = Recorder()
    middleware = WeChatOAuthMiddleware(
        recorder, appid=emulator.appid, secret=emulator.secret, api_base_url=WECHAT_URL
    )
    owned = middleware.client.http_client  # created on first use, owned by the middleware
    scope, sent = await _run_lifespan(middleware)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert recorder.scopes == [scope]
    assert "wechat" not in recorder.keys[0]
    assert owned.is_closed
    assert middleware.client._http_client is None


async def test_lifespan_shutdown_with_starlette_closes_the_owned_client(emulator, downstream):
    middleware = WeChatOAuthMiddleware(
        downstream, appid=emulator.appid, secret=emulator.secret, api_base_url=WECHAT_URL
    )
    owned = middleware.client.http_client
    _, sent = await _run_lifespan(middleware)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert owned.is_closed


async def test_lifespan_shutdown_leaves_a_shared_client_open(emulator, upstream, make_app):
    recorder = Recorder()
    middleware, _ = await make_app(app=recorder)
    _, sent = await _run_lifespan(middleware)
    assert sent[-1] == "lifespan.shutdown.complete"
    assert not upstream.is_closed


async def test_callback_under_root_path(emulator, make_app):
    middleware, _ = await make_app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware, root_path="/app"), base_url=APP_URL
    ) as client:
        code = emulator.issue_code()
        # The server puts root_path in path (as uvicorn and httpx do) ...
        response = await client.get(f"/app{CALLBACK}?code={code}&state=r")
        assert response.status_code == 200
        assert response.json()["state"] == "r"
        # ... a prefix that is not the root_path is not the callback.
        other = await client.get(f"/elsewhere{CALLBACK}?code={code}")
        assert other.status_code == 404
    assert emulator.exchange_count(code) == 1


async def test_callback_under_root_path_not_included_in_path(emulator, make_app):
    recorder = Recorder()
    middleware, _ = await make_app(app=recorder)
    query = f"code={emulator.issue_code()}".encode()
    response = await call_asgi(middleware, http_scope(query_string=query, root_path="/app"))
    assert response.status == 200
    assert "wechat" in recorder.scopes[0]


async def test_a_scope_without_root_path_is_served(emulator, make_app):
    # root_path is optional in the ASGI spec: its absence means "".
    recorder = Recorder()
    middleware, _ = await make_app(app=recorder, login_path="/wechat/login")
    query = f"code={emulator.issue_code()}".encode()
    elsewhere, callback = http_scope(path="/hello"), http_scope(query_string=query)
    for scope in (elsewhere, callback):
        del scope["root_path"]
    assert (await call_asgi(middleware, elsewhere)).status == 200
    assert "wechat" not in recorder.scopes[0]
    assert recorder.scopes[0]["wechat_oauth.login_path"] == "/wechat/login"  # for login_url()
    callback["headers"].append((b"accept", b"application/json"))
    answer = await call_asgi(middleware, callback)
    # The callback is the middleware's: with login_path set, a state is required.
    assert (answer.status, len(recorder.scopes)) == (403, 1)
    assert emulator.total_exchanges == 0


async def test_a_path_seen_before_is_matched_again_under_its_root_path(emulator, make_app):
    # Paths of the app's are remembered, so that passing them on costs one set look-up; a path
    # that ends with the callback's is never remembered: under a root_path it is the callback.
    recorder = Recorder()
    middleware, _ = await make_app(app=recorder, login_path="/wechat/login", verify_state=False)
    query = f"code={emulator.issue_code()}&state=s".encode()
    prefixed = {"path": f"/app{CALLBACK}", "query_string": query}
    await call_asgi(middleware, http_scope(**prefixed))
    assert "wechat" not in recorder.scopes[-1]
    await call_asgi(middleware, http_scope(**prefixed, root_path="/app"))
    assert recorder.scopes[-1]["wechat"].state == "s"
    for _ in range(2):  # seen before the second time: still told the login path
        await call_asgi(middleware, http_scope(path="/hello"))
        assert recorder.scopes[-1]["wechat_oauth.login_path"] == "/wechat/login"
    assert emulator.total_exchanges == 1


async def test_the_paths_remembered_are_the_first_ones_and_bounded(emulator, make_app):
    from asgi_wechat_oauth._core.paths import REMEMBERED_PATH_LENGTH, REMEMBERED_PATHS

    recorder = Recorder()
    middleware, _ = await make_app(app=recorder)
    long_path = "/" + "x" * REMEMBERED_PATH_LENGTH
    paths = [long_path] + [f"/item/{i}" for i in range(REMEMBERED_PATHS * 2)]
    for path in paths * 2:  # each seen twice: the second time, remembered or not
        assert (await call_asgi(middleware, http_scope(path=path))).status == 200
    assert [scope["path"] for scope in recorder.scopes] == paths * 2
    remembered = middleware._app_paths
    assert len(remembered) == REMEMBERED_PATHS
    assert {"/item/0", f"/item/{REMEMBERED_PATHS - 1}"} <= remembered
    assert long_path not in remembered and f"/item/{REMEMBERED_PATHS}" not in remembered
    query = f"code={emulator.issue_code()}".encode()
    assert (await call_asgi(middleware, http_scope(query_string=query))).status == 200
    assert "wechat" in recorder.scopes[-1]


async def test_an_app_set_after_construction_gets_every_request(emulator, make_app):
    first, second = Recorder(), Recorder()
    middleware, _ = await make_app(app=first, login_path="/wechat/login", verify_state=False)
    await call_asgi(middleware, http_scope(path="/hello"))  # remembered: passed on at once
    middleware.app = second
    query = f"code={emulator.issue_code()}".encode()
    for scope in (
        http_scope(path="/hello"),
        http_scope(path="/other"),
        http_scope(query_string=query),
    ):
        assert (await call_asgi(middleware, scope)).status == 200
    assert len(first.scopes) == 1
    assert [scope["wechat_oauth.login_path"] for scope in second.scopes] == ["/wechat/login"] * 3
    assert "wechat" in second.scopes[-1]


async def test_prefixed_path_without_root_path_is_not_the_callback(emulator, make_app):
    recorder = Recorder()
    middleware, _ = await make_app(app=recorder)
    query = f"code={emulator.issue_code()}".encode()
    await call_asgi(middleware, http_scope(path=f"/app{CALLBACK}", query_string=query))
    assert "wechat" not in recorder.scopes[0]
    assert emulator.total_exchanges == 0


async def test_custom_callback_path(emulator, make_app):
    recorder = Recorder()
    middleware, client = await make_app(app=recorder, callback_path="/auth/wx")
    response = await client.get(f"/auth/wx?code={emulator.issue_code()}")
    assert response.text == "downstream"
    assert "wechat" in recorder.scopes[0]
    response = await client.get(f"{CALLBACK}?code={emulator.issue_code()}")
    assert response.text == "downstream"
    assert "wechat" not in recorder.scopes[1]
    assert emulator.total_exchanges == 1


# --- nothing secret leaks -----------------------------------------------------------------------


async def test_no_code_secret_or_token_in_logs_reprs_or_bodies(emulator, make_app, caplog):
    caplog.set_level(logging.DEBUG, logger="asgi_wechat_oauth")
    middleware, client = await make_app()
    codes: list[str] = []
    bodies: list[str] = []

    async def callback(code: str, state: str = "st") -> httpx.Response:
        codes.append(code)
        response = await client.get(f"{CALLBACK}?code={code}&state={state}")
        bodies.append(response.text)
        return response

    ok = emulator.issue_code("snsapi_userinfo")
    assert (await callback(ok)).status_code == 200
    assert (await callback(ok)).status_code == 200  # cache hit
    assert (await callback("neverissued01234")).status_code == 400
    expired = emulator.issue_code()
    emulator.expire_code(expired)
    assert (await callback(expired)).status_code == 400
    for fault in (Fault.BUSY, Fault.HTTP_500, Fault.MALFORMED_JSON, Fault.TRUNCATED, Fault.DROP):
        emulator.inject_fault(fault, count=2 if fault is Fault.BUSY else 1)
        assert (await callback(emulator.issue_code())).status_code == 502
    emulator.inject_fault(Fault.HTTP_500, endpoint="userinfo")
    degraded = emulator.issue_code("snsapi_userinfo")
    assert (await callback(degraded)).status_code == 200
    assert (await callback("abc!%00")).status_code == 400

    # A crash inside the exchange (closed upstream client: RuntimeError, logged with its
    # traceback at DEBUG).
    closed = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url=WECHAT_URL)
    await closed.aclose()
    crashing, crash_client = await make_app(http_client=closed)
    crash_code = emulator.issue_code()
    codes.append(crash_code)
    crash = await crash_client.get(f"{CALLBACK}?code={crash_code}")
    bodies.append(crash.text)
    assert crash.status_code == 502

    # A wrong secret (configuration error, logged at ERROR).
    wrong, wrong_client = await make_app(secret="the-wrong-secret-value")
    wrong_code = emulator.issue_code()
    codes.append(wrong_code)
    bodies.append((await wrong_client.get(f"{CALLBACK}?code={wrong_code}")).text)

    # The tokens of the logins that succeeded, read back from the backend.
    identities = [
        await middleware.backend.recover(code_key(emulator.appid, c), timeout=1)
        for c in (ok, degraded)
    ]
    tokens = [t for i in identities for t in (i.access_token, i.refresh_token)]
    identity = identities[0]

    records = [r for r in caplog.records if r.name.startswith("asgi_wechat_oauth")]
    assert any(r.exc_info for r in records), "the crash should be logged with its traceback"
    assert any(r.levelno == logging.ERROR for r in records)
    rendered: list[str] = []
    for record in records:
        rendered += [record.getMessage(), str(record.msg), repr(record.args)]
        rendered.append(record.exc_text or "")
        if record.exc_info:
            rendered.append("".join(traceback.format_exception(*record.exc_info)))
        rendered.append(repr(vars(record)))
    rendered += bodies
    rendered += [repr(identity), str(identity), repr(middleware), repr(crashing), repr(wrong)]
    rendered += [repr(middleware.client), repr(middleware.backend)]
    text = "\n".join(rendered)

    forbidden = {
        "secret": emulator.secret,
        "wrong secret": "the-wrong-secret-value",
        **{f"code {c}": c for c in codes if len(c) > 6},
        **{f"token {t}": t for t in tokens},
    }
    leaks = [name for name, value in forbidden.items() if value in text]
    assert leaks == []

    # What logs do carry: the code's hash prefix, enough to correlate.
    messages = "\n".join(r.getMessage() for r in records)
    for code in (ok, expired, crash_code, wrong_code):
        assert code_key(emulator.appid, code)[:16] in messages


async def test_aclose_waits_for_exchanges_in_flight(emulator, make_app, gate, gated_upstream):
    # aclose() promises to let exchanges in flight finish (bounded by exchange_timeout) before
    # it closes the HTTP client and the backend: a login in progress at shutdown still ends.
    middleware, client = await make_app(http_client=gated_upstream)
    code = emulator.issue_code()
    closing = {"started": False, "finished": False, "in_flight_after": -1}
    results: list[httpx.Response] = []

    async def login() -> None:
        results.append(await client.get(f"{CALLBACK}?code={code}"))

    async def close() -> None:
        closing["started"] = True
        await middleware.aclose()
        closing["finished"] = True
        closing["in_flight_after"] = middleware.backend.in_flight

    async with anyio.create_task_group() as tg:
        tg.start_soon(login)
        await wait_until(lambda: gate.arrived == 1)  # the exchange is in flight
        tg.start_soon(close)
        await wait_until(lambda: closing["started"])
        returned_early = closing["finished"]
        gate.open()

    assert not returned_early, "aclose() returned with an exchange still in flight"
    assert closing == {"started": True, "finished": True, "in_flight_after": 0}
    assert results[0].status_code == 200
