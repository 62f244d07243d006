"""WeChat's authorize URLs, built the way WeChat checks them."""

from __future__ import annotations

from urllib.parse import quote

DEFAULT_AUTHORIZE_BASE_URL = "https://open.weixin.qq.com"
#: Scopes of the official-account page (``connect/oauth2/authorize``).
OFFICIAL_ACCOUNT_SCOPES = frozenset({"snsapi_base", "snsapi_userinfo"})
#: The website QR login scope (``connect/qrconnect``).
QR_LOGIN_SCOPE = "snsapi_login"
SCOPES = OFFICIAL_ACCOUNT_SCOPES | {QR_LOGIN_SCOPE}


def authorize_url(
    appid: str,
    redirect_uri: str,
    *,
    scope: str = "snsapi_base",
    state: str = "",
    connect_redirect: bool = True,
    force_popup: bool = False,
    base_url: str = DEFAULT_AUTHORIZE_BASE_URL,
    component_appid: str | None = None,
) -> str:
    """The URL that sends the user to WeChat's consent page.

    WeChat checks the link strictly: parameters in the documented order (``appid``,
    ``redirect_uri``, ``response_type``, ``scope``, ``state``), ``redirect_uri`` fully
    URL-encoded, and ``#wechat_redirect`` last. ``snsapi_login`` uses ``connect/qrconnect``, the
    other scopes ``connect/oauth2/authorize``. ``connect_redirect=1`` is undocumented but harmless
    and sometimes avoids the duplicate callback (never rely on it: that is what the middleware is
    for). ``force_popup`` adds ``forcePopup=true`` (always show the consent prompt).
    ``component_appid``: a third-party platform logs in on behalf of the official account
    ``appid`` (``connect/oauth2/authorize`` only; the callback then carries ``appid`` too).
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {sorted(SCOPES)}")
    if not appid:
        raise ValueError("appid is required")
    if not redirect_uri.startswith(("https://", "http://")):
        raise ValueError("redirect_uri must be an absolute http(s) URL")
    if len(state.encode()) > 128:
        raise ValueError("state must be at most 128 bytes")
    path = "/connect/qrconnect" if scope == QR_LOGIN_SCOPE else "/connect/oauth2/authorize"
    parts = [
        f"appid={quote(appid, safe='')}",
        f"redirect_uri={quote(redirect_uri, safe='')}",
        "response_type=code",
        f"scope={scope}",
        f"state={quote(state, safe='')}",
    ]
    if component_appid is not None:
        if scope == QR_LOGIN_SCOPE or not component_appid:
            raise ValueError("component_appid is for official-account scopes, and not empty")
        parts.append(f"component_appid={quote(component_appid, safe='')}")
    if force_popup:
        parts.append("forcePopup=true")
    if connect_redirect:
        parts.append("connect_redirect=1")
    return f"{base_url.rstrip('/')}{path}?{'&'.join(parts)}#wechat_redirect"
