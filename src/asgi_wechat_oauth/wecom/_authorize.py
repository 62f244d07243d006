"""WeCom's login URLs: the authorize page inside WeCom, the QR login page elsewhere."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from .._core.asgi import Scope

DEFAULT_AUTHORIZE_BASE_URL = "https://open.weixin.qq.com"
DEFAULT_QR_LOGIN_BASE_URL = "https://login.work.weixin.qq.com"
#: ``snsapi_base``: the userid only. ``snsapi_privateinfo``: also a ``user_ticket`` for the
#: member's consented details (the page asks for consent).
SCOPES = frozenset({"snsapi_base", "snsapi_privateinfo"})


def wecom_authorize_url(
    corpid: str,
    agentid: str,
    redirect_uri: str,
    *,
    scope: str = "snsapi_base",
    state: str = "",
    base_url: str = DEFAULT_AUTHORIZE_BASE_URL,
) -> str:
    """The authorize link for WeCom's own browser, parameters in the documented order and
    ``#wechat_redirect`` last."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {sorted(SCOPES)}")
    parts = [
        f"appid={quote(corpid, safe='')}",
        f"redirect_uri={quote(redirect_uri, safe='')}",
        "response_type=code",
        f"scope={scope}",
        f"state={quote(state, safe='')}",
        f"agentid={quote(agentid, safe='')}",
    ]
    return f"{base_url.rstrip('/')}/connect/oauth2/authorize?{'&'.join(parts)}#wechat_redirect"


def wecom_qr_login_url(
    corpid: str,
    agentid: str,
    redirect_uri: str,
    *,
    state: str = "",
    base_url: str = DEFAULT_QR_LOGIN_BASE_URL,
) -> str:
    """WeCom's web QR login for a self-built app (``login_type=CorpApp``)."""
    query = urlencode(
        {
            "login_type": "CorpApp",
            "appid": corpid,
            "agentid": agentid,
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return f"{base_url.rstrip('/')}/wwlogin/sso/login?{query}"


def in_wecom_browser(scope: Scope) -> bool:
    """Whether the request comes from WeCom's built-in browser (User-Agent ``wxwork/``)."""
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            return b"wxwork/" in value.lower()
    return False
