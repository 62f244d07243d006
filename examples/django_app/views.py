"""The views: the home page with the login link, the callback, logout."""

from __future__ import annotations

import html

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from asgi_wechat_oauth import WeChatIdentity, login_url


async def wechat_callback(request: HttpRequest) -> HttpResponse:
    # Only reached when the exchange succeeded: the middleware answers failures itself.
    me: WeChatIdentity = request.scope["wechat"]
    nickname = me.userinfo.nickname if me.userinfo else ""
    # Signed, not encrypted: keep the tokens out of the session cookie.
    await request.session.aset("wechat", {"openid": me.openid, "nickname": nickname})
    # 303 to a clean URL: the code leaves the address bar and the history.
    return HttpResponseRedirect(me.next or "/", status=303)


async def home(request: HttpRequest) -> HttpResponse:
    user = await request.session.aget("wechat")
    if user:
        name = html.escape(user["nickname"] or user["openid"])
        body = (
            f"<h1>Hello, {name}</h1>"
            '<form method="post" action="/logout/"><button>Log out</button></form>'
        )
    else:
        link = html.escape(login_url(request, next="/", scope="snsapi_userinfo"))
        body = f'<h1>Welcome</h1><p><a id="login" href="{link}">Log in with WeChat</a></p>'
    return HttpResponse(f'<!doctype html><meta charset="utf-8"><title>Home</title>{body}')


async def logout(request: HttpRequest) -> HttpResponse:
    await request.session.aflush()
    return HttpResponseRedirect("/", status=303)
