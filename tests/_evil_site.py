"""The attacker's side of tests/test_browser_cookies.py, each an ASGI app factory for uvicorn.

``evil_site``: a sibling site (``evil.example.test`` beside ``app.example.test``) that answers
``GET /toss?cookie=<Set-Cookie value>&cookie=...&to=<URL>`` with exactly those ``Set-Cookie``
headers (``Domain=example.test`` makes them the app's too) and a 302 to ``to``, or a small page
without it: what user content or a compromised marketing site on a subdomain can do.

``wechat_with_attacker``: the WeChat emulator, plus ``POST /_attacker/code``, which issues a
code for the attacker's own WeChat account (``snsapi_userinfo``), as the attacker gets one by
consenting on their own phone and not following the redirect; and ``POST /_consent/wait?on=1``
(``on=0`` to end it), after which the consent page waits for a tap that never comes (no code,
no redirect): a login the victim started and left there.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_wechat_oauth.testing import EmulatedUser, WeChatEmulator

#: The attacker's WeChat account.
ATTACKER = EmulatedUser(openid="oAttackerOpenId000000000000666", nickname="Attacker 666")


async def _toss(request: Request) -> Response:
    target = request.query_params.get("to")
    response: Response = (
        RedirectResponse(target, status_code=302)
        if target
        else HTMLResponse('<!doctype html><meta charset="utf-8"><h1>Free coupons</h1>')
    )
    for cookie in request.query_params.getlist("cookie"):
        response.headers.append("set-cookie", cookie)
    return response


def evil_site() -> Router:
    return Router(routes=[Route("/toss", _toss)])


def wechat_with_attacker() -> ASGIApp:
    emulator = WeChatEmulator()
    waiting = {"on": False}

    async def attacker_code(request: Request) -> Response:
        return JSONResponse({"code": emulator.issue_code("snsapi_userinfo", ATTACKER)})

    async def wait(request: Request) -> Response:
        waiting["on"] = request.query_params["on"] == "1"
        return JSONResponse(waiting)

    router = Router(
        routes=[
            Route("/_attacker/code", attacker_code, methods=["POST"]),
            Route("/_consent/wait", wait, methods=["POST"]),
            Mount("/", app=emulator),
        ]
    )
    consent = HTMLResponse('<!doctype html><meta charset="utf-8"><h1>WeChat: allow?</h1>')

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if waiting["on"] and scope.get("path") == "/connect/oauth2/authorize":
            await consent(scope, receive, send)
        else:
            await router(scope, receive, send)

    return app
