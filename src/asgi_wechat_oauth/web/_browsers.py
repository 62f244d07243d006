"""Which of the site's two WeChat apps a login goes to, by the browser it starts in.

An official account's OAuth page (``connect/oauth2/authorize``) only works inside WeChat's own
browser; a website app's QR login (``connect/qrconnect``, ``snsapi_login``) is for every other
browser. A site with both sends each browser to the app that works there.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._core.asgi import Scope
from ..errors import ErrorReason, InvalidCallbackRequest
from ._authorize import QR_LOGIN_SCOPE


def in_wechat_browser(scope: Scope) -> bool:
    """Whether the request comes from WeChat's browser: ``MicroMessenger`` in the User-Agent,
    but not WeCom's browser (``wxwork``), which says ``MicroMessenger`` too."""
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            agent = value.lower()
            return b"micromessenger" in agent and b"wxwork" not in agent
    return False


@dataclass(frozen=True)
class LoginRoute:
    """Where a login goes: the app, its scope, and whether it is the website app."""

    appid: str
    scope: str
    website_app: bool


def route_login(
    scope: Scope,
    asked: str | None,
    *,
    appid: str,
    website_appid: str | None,
    default_scope: str,
) -> LoginRoute | None:
    """The app and scope for this browser and ``?scope=`` (``asked``), or None when only the
    official account can log in and the browser is not WeChat's (the caller shows the QR page
    of the login link). Raises a 400 ``scope_not_supported_here`` for a scope that cannot work
    in this browser: QR login inside WeChat, an official-account scope elsewhere when the site
    has a website app."""
    wechat = in_wechat_browser(scope)
    if wechat and asked == QR_LOGIN_SCOPE:
        raise _not_here("WeChat QR login (snsapi_login) does not work inside WeChat's browser.")
    if website_appid is not None:
        if wechat:
            return LoginRoute(appid, asked or default_scope, website_app=False)
        if asked not in (None, QR_LOGIN_SCOPE):
            raise _not_here(f"{asked} works only inside WeChat's browser; use snsapi_login.")
        return LoginRoute(website_appid, QR_LOGIN_SCOPE, website_app=True)
    chosen = asked or default_scope
    if wechat or chosen == QR_LOGIN_SCOPE:
        # ``appid`` itself may be a website app (``default_scope="snsapi_login"``).
        return LoginRoute(appid, chosen, website_app=False)
    return None


def _not_here(message: str) -> InvalidCallbackRequest:
    return InvalidCallbackRequest(ErrorReason.SCOPE_NOT_SUPPORTED_HERE, message)
