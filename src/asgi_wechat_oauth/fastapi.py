"""FastAPI integration: each product's identity as a dependency.

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

One dependency per product: :data:`WeChatUser` (web OAuth, ``scope["wechat"]``),
:data:`WeComUser` (WeCom, ``scope["wecom"]``) and :data:`MiniProgramUser` (a mini-program's
``wx.login()``, ``scope["wechat"]`` on its login route). The middleware does the work (it
answers every failed login itself); the dependency only hands its result to the route in
FastAPI's idiom, typed, instead of ``request.scope[...]``. Used on any other route, or with the
middleware missing or at another path, there is no identity to give: that is answered with a
401 that says so, rather than a ``KeyError`` turning into a 500 somewhere in the route.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

try:
    from fastapi import Depends, HTTPException, Request
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "asgi_wechat_oauth.fastapi needs FastAPI: pip install 'asgi-wechat-oauth[fastapi]'"
    ) from exc

from .miniprogram import MiniProgramIdentity
from .web import WeChatIdentity
from .wecom import WeComIdentity

__all__ = [
    "LoginRequired",
    "MiniProgramLoginRequired",
    "MiniProgramUser",
    "WeChatLoginRequired",
    "WeChatUser",
    "WeComLoginRequired",
    "WeComUser",
    "miniprogram_identity",
    "wechat_identity",
    "wecom_identity",
]


class LoginRequired(HTTPException):
    """The 401 a dependency raises when the request carries no identity of its product.

    An ``HTTPException``, so FastAPI answers it as JSON
    (``{"detail": {"error": ..., "message": ...}}``) unless the app registers its own handler:
    ``@app.exception_handler(LoginRequired)`` catches every product's,
    ``@app.exception_handler(WeChatLoginRequired)`` (say, to redirect to the login page) one
    product's.
    """

    #: The ``error`` of the answer, the challenge of its ``WWW-Authenticate`` header, and the
    #: ``message``: set by each product's subclass.
    error: ClassVar[str]
    challenge: ClassVar[str]
    message: ClassVar[str]

    def __init__(self) -> None:
        super().__init__(
            status_code=401,
            detail={"error": self.error, "message": self.message},
            # RFC 9110 asks a 401 to name a challenge; this one points at the product's login.
            headers={"WWW-Authenticate": self.challenge},
        )


class WeChatLoginRequired(LoginRequired):
    """Raised by :data:`WeChatUser`: no WeChat web login on this request."""

    error = "wechat_login_required"
    challenge = 'WeChat realm="wechat-oauth"'
    message = (
        "No WeChat login on this request: the WeChat identity exists only on the callback "
        "route of WeChatOAuthMiddleware (its callback_path)."
    )


class WeComLoginRequired(LoginRequired):
    """Raised by :data:`WeComUser`: no WeCom login on this request."""

    error = "wecom_login_required"
    challenge = 'WeCom realm="wecom-oauth"'
    message = (
        "No WeCom login on this request: the WeCom identity exists only on the callback route "
        "of WeComOAuthMiddleware (its callback_path)."
    )


class MiniProgramLoginRequired(LoginRequired):
    """Raised by :data:`MiniProgramUser`: no mini-program login on this request."""

    error = "miniprogram_login_required"
    challenge = 'WeChat realm="wechat-miniprogram"'
    message = (
        "No mini-program login on this request: the session exists only on the login route of "
        "MiniProgramMiddleware (its login_path), for a POST carrying a wx.login() code."
    )


def _identity(request: Request, key: str, kind: type[Any], missing: type[LoginRequired]) -> Any:
    identity = request.scope.get(key)
    if not isinstance(identity, kind):
        raise missing()
    return identity


# Each dependency is ``async`` so that FastAPI runs it on the event loop, not in a thread.


async def wechat_identity(request: Request) -> WeChatIdentity:
    """The identity ``WeChatOAuthMiddleware`` put in ``scope["wechat"]``; raises
    :class:`WeChatLoginRequired` (401) when there is none."""
    identity: WeChatIdentity = _identity(request, "wechat", WeChatIdentity, WeChatLoginRequired)
    return identity


async def wecom_identity(request: Request) -> WeComIdentity:
    """The identity ``WeComOAuthMiddleware`` put in ``scope["wecom"]``; raises
    :class:`WeComLoginRequired` (401) when there is none."""
    identity: WeComIdentity = _identity(request, "wecom", WeComIdentity, WeComLoginRequired)
    return identity


async def miniprogram_identity(request: Request) -> MiniProgramIdentity:
    """The session ``MiniProgramMiddleware`` put in ``scope["wechat"]``; raises
    :class:`MiniProgramLoginRequired` (401) when there is none (the web flow's identity, which
    lives under the same key on its callback route, is not one)."""
    identity: MiniProgramIdentity = _identity(
        request, "wechat", MiniProgramIdentity, MiniProgramLoginRequired
    )
    return identity


#: The WeChat identity of the callback request: ``async def callback(user: WeChatUser)``.
WeChatUser = Annotated[WeChatIdentity, Depends(wechat_identity)]
#: The WeCom identity of the callback request: ``async def callback(user: WeComUser)``.
WeComUser = Annotated[WeComIdentity, Depends(wecom_identity)]
#: The mini-program session of the login request: ``async def login(user: MiniProgramUser)``.
MiniProgramUser = Annotated[MiniProgramIdentity, Depends(miniprogram_identity)]
