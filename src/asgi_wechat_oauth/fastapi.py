"""FastAPI integration: the WeChat identity as a dependency.

Needs the extra: ``pip install 'asgi-wechat-oauth[fastapi]'``.

::

    from fastapi import FastAPI
    from asgi_wechat_oauth import WeChatOAuthMiddleware
    from asgi_wechat_oauth.fastapi import WeChatUser

    app = FastAPI()
    app.add_middleware(WeChatOAuthMiddleware, appid=..., secret=..., login_path="/wechat/login")

    @app.get("/wechat/callback")
    async def callback(user: WeChatUser) -> RedirectResponse:
        ...

The middleware does the work (it answers every failed callback itself); the dependency only hands
its result to the route in FastAPI's idiom, typed, instead of ``request.scope["wechat"]``. Used on
any other route, or with the middleware missing or at another ``callback_path``, there is no
identity to give: that is answered with a 401 that says so, rather than a ``KeyError`` turning
into a 500 somewhere in the route.
"""

from __future__ import annotations

from typing import Annotated

try:
    from fastapi import Depends, HTTPException, Request
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "asgi_wechat_oauth.fastapi needs FastAPI: pip install 'asgi-wechat-oauth[fastapi]'"
    ) from exc

from .web import WeChatIdentity

__all__ = ["WeChatLoginRequired", "WeChatUser", "wechat_identity"]


class WeChatLoginRequired(HTTPException):
    """The 401 raised by :data:`WeChatUser` when the request carries no WeChat identity.

    An ``HTTPException``, so FastAPI answers it as JSON
    (``{"detail": {"error": "wechat_login_required", "message": ...}}``) unless the app registers
    its own handler, e.g. ``@app.exception_handler(WeChatLoginRequired)`` to redirect to the
    login page.
    """

    def __init__(self) -> None:
        super().__init__(
            status_code=401,
            detail={
                "error": "wechat_login_required",
                "message": (
                    "No WeChat login on this request: the WeChat identity exists only on the "
                    "callback route of WeChatOAuthMiddleware (its callback_path)."
                ),
            },
            # RFC 9110 asks a 401 to name a challenge; this one points at the WeChat login.
            headers={"WWW-Authenticate": 'WeChat realm="wechat-oauth"'},
        )


async def wechat_identity(request: Request) -> WeChatIdentity:
    """The identity the middleware put in ``scope["wechat"]``; raises :class:`WeChatLoginRequired`
    (401) when there is none. ``async`` so that FastAPI runs it on the event loop, not in a
    thread."""
    identity = request.scope.get("wechat")
    if not isinstance(identity, WeChatIdentity):
        raise WeChatLoginRequired()
    return identity


#: The WeChat identity of the callback request: ``async def callback(user: WeChatUser)``.
WeChatUser = Annotated[WeChatIdentity, Depends(wechat_identity)]
