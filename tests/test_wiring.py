"""How the middleware fits an app: trailing slashes, a traded code that reaches no handler,
apps without lifespan, and ``login_url``. In-process, through the emulator; Django and
Litestar under a real uvicorn are in test_frameworks.py."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route

from _apps import running
from asgi_wechat_oauth import login_url
from asgi_wechat_oauth.web import _unhandled
from support import CALLBACK, http_scope

pytestmark = pytest.mark.anyio

LOGIN = "/wechat/login"


@pytest.fixture(autouse=True)
def fresh_warnings() -> None:
    """The unhandled-callback warning is once per process and cause: start each test afresh."""
    _unhandled.warned.clear()


def unhandled_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "callback_unhandled" in r.getMessage()
    ]


# --- slashes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CALLBACK, CALLBACK + "/"])
@pytest.mark.parametrize("configured", [CALLBACK, CALLBACK + "/"])
async def test_callback_matches_with_and_without_one_trailing_slash(
    emulator, make_app, path, configured
):
    app = Starlette(routes=[Route(path, lambda r: JSONResponse(r.scope["wechat"].openid))])
    middleware, client = await make_app(app=app, callback_path=configured)
    response = await client.get(f"{path}?code={emulator.issue_code()}")
    assert response.status_code == 200
    assert response.json() == emulator.user.openid


async def test_login_path_matches_with_a_trailing_slash(make_app):
    middleware, client = await make_app(login_path=LOGIN)
    for path in (LOGIN, LOGIN + "/"):
        response = await client.get(path)
        assert response.status_code == 302
        assert response.headers["set-cookie"].startswith("wechat_oauth_nonce=")


async def test_slash_redirect_returns_and_gets_the_stored_identity(emulator, make_app, caplog):
    """Starlette's ``redirect_slashes``, like Django's ``APPEND_SLASH``, answers the traded
    callback with a redirect to the route's spelling: that request is served the stored
    identity, with no second exchange, and one warning says how to spare the redirect."""
    app = Starlette(routes=[Route(CALLBACK + "/", lambda r: JSONResponse(r.scope["wechat"].state))])
    middleware, client = await make_app(app=app)
    code = emulator.issue_code()
    first = await client.get(f"{CALLBACK}?code={code}&state=abc")
    assert first.status_code == 307
    second = await client.get(first.headers["location"])
    assert (second.status_code, second.json()) == (200, "abc")
    assert emulator.exchange_count(code) == 1
    assert middleware.counters.cache_hits == 1
    [warning] = unhandled_warnings(caplog)
    assert "answered 307" in warning and "callback_path='/wechat/callback/'" in warning


# --- a traded code that reaches no handler -------------------------------------------------------


def no_callback_route() -> Starlette:
    async def elsewhere(request: Request) -> RedirectResponse:
        return RedirectResponse(f"/elsewhere?{request.url.query}", status_code=302)

    async def post_only(request: Request) -> PlainTextResponse:
        return PlainTextResponse("posted")

    return Starlette(
        routes=[
            Route("/wechat/callback/moved", elsewhere),
            Route("/wechat/post/callback", post_only, methods=["POST"]),
        ]
    )


@pytest.mark.parametrize(
    ("callback_path", "status", "says"),
    [
        pytest.param("/wechat/callback", 404, "route your callback handler", id="404"),
        pytest.param("/wechat/post/callback", 405, "route your callback handler", id="405"),
        pytest.param("/wechat/callback/moved", 302, "'/elsewhere'", id="redirect-elsewhere"),
    ],
)
async def test_traded_code_reaching_no_handler_warns_once(
    emulator, make_app, caplog, callback_path, status, says
):
    middleware, client = await make_app(app=no_callback_route(), callback_path=callback_path)
    for _ in range(3):
        code = emulator.issue_code()
        response = await client.get(f"{callback_path}?code={code}")
        assert response.status_code == status
        assert emulator.exchange_count(code) == 1
    [warning] = unhandled_warnings(caplog)  # once per process and cause
    assert f"answered {status}" in warning and says in warning
    assert f"callback_path={callback_path!r}" in warning
    assert code not in warning


async def test_redirect_after_login_and_failed_callbacks_do_not_warn(emulator, make_app, caplog):
    app = Starlette(routes=[Route(CALLBACK, lambda r: RedirectResponse("/", status_code=303))])
    middleware, client = await make_app(app=app)
    assert (await client.get(f"{CALLBACK}?code={emulator.issue_code()}")).status_code == 303
    assert (await client.get(f"{CALLBACK}?code=unknown")).status_code == 400  # never traded
    assert unhandled_warnings(caplog) == []


# --- lifespan ------------------------------------------------------------------------------------


async def django_like(scope: Any, receive: Any, send: Any) -> None:
    """Django's ASGIHandler: anything but HTTP raises."""
    if scope["type"] != "http":
        raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
    await PlainTextResponse("django")(scope, receive, send)


async def http_only(scope: Any, receive: Any, send: Any) -> None:
    """An app that ignores lifespan by returning at once."""
    if scope["type"] == "http":
        await PlainTextResponse("plain")(scope, receive, send)


@pytest.mark.parametrize("app", [django_like, http_only], ids=["raises", "returns"])
async def test_lifespan_of_an_app_without_one_is_answered_and_closes_the_client(
    emulator, make_app, app
):
    middleware, client = await make_app(app=app, http_client=None, api_base_url="http://x.test")
    async with running(middleware):
        # A callback makes the middleware open its own HTTP client (to an unreachable host).
        await client.get(f"{CALLBACK}?code={emulator.issue_code()}")
        assert middleware.client._http_client is not None
    assert middleware.client._http_client is None  # closed at shutdown


async def test_an_apps_own_lifespan_is_untouched(make_app):
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    middleware, _ = await make_app(app=Starlette(lifespan=lifespan), http_client=None)
    async with running(middleware):
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


async def test_an_app_failing_at_startup_still_fails(make_app):
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("the app's own startup failed")

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    sent: list[Any] = []
    middleware, _ = await make_app(app=broken)
    with pytest.raises(RuntimeError, match="the app's own startup failed"):
        await middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, sent.append)
    assert sent == []  # the server reports the failure, the middleware does not hide it


# --- login_url -----------------------------------------------------------------------------------


async def links(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "plain": login_url(request),
            "next": login_url(request, next="/orders/1?tab=a&x=1"),
            "prefixed": login_url(request, next="/app/me"),
            "scope": login_url(request.scope, next="/me", scope="snsapi_userinfo"),
        }
    )


async def test_login_url_under_a_mount_resolves_next_and_encodes_it(make_app):
    inner = Starlette(routes=[Route("/links", links)])
    middleware, client = await make_app(app=inner, login_path=LOGIN)
    outer = Starlette(routes=[Mount("/app", app=middleware)])

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=outer), base_url="http://app.test"
    ) as mounted:
        mounted_links = (await mounted.get("/app/links")).json()
        login = await mounted.get(mounted_links["next"])
    assert mounted_links == {
        "plain": "/app/wechat/login",
        "next": "/app/wechat/login?next=/app/orders/1%3Ftab%3Da%26x%3D1",
        "prefixed": "/app/wechat/login?next=/app/me",
        "scope": "/app/wechat/login?next=/app/me&scope=snsapi_userinfo",
    }
    assert login.status_code == 302  # the link reaches the login endpoint through the mount
    plain = (await client.get("/links")).json()
    assert plain["next"] == "/wechat/login?next=/orders/1%3Ftab%3Da%26x%3D1"


def test_login_url_refuses_what_cannot_work():
    with pytest.raises(LookupError, match="login_path"):
        login_url(http_scope(path="/"))
    scope = http_scope(path="/", **{"wechat_oauth.login_path": LOGIN})
    with pytest.raises(ValueError, match="next"):
        login_url(scope, next="//evil.example")
    with pytest.raises(ValueError, match="next"):
        login_url(scope, next="https://evil.example/")
    with pytest.raises(ValueError, match="scope"):
        login_url(scope, scope="snsapi_info")
