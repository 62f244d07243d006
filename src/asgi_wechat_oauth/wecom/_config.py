"""Every option of the WeCom middleware in one frozen, validated object (see
:mod:`asgi_wechat_oauth._core.options`: the options it shares with the web login are there)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .._core.apiclient import WECOM_API_BASE_URL
from .._core.checks import boolean, is_url, option, required, text
from .._core.oauth_options import OAuthOptions
from .._core.options import app_secret, default
from .._core.pages import ErrorPages
from ..backends import backend_from_url
from ..tokens import AccessTokenKeeper
from ._authorize import DEFAULT_QR_LOGIN_BASE_URL, SCOPES
from ._pages import DEFAULT_WECOM_ERROR_PAGES

#: The scope a login inside WeCom asks for when the link names none.
WeComScope = Literal["snsapi_base", "snsapi_privateinfo"]


@dataclass(frozen=True, kw_only=True, repr=False)
class WeComOAuthConfig(OAuthOptions):
    """The options of :class:`WeComOAuthMiddleware`, validated on construction.

    ``WeComOAuthMiddleware(app, config=config)`` and ``WeComOAuthMiddleware(app, **options)``
    build the same middleware. Invalid options raise
    :class:`~asgi_wechat_oauth.errors.InvalidConfig` (a ``ValueError``) naming each bad option,
    and a misspelt one with the name meant. ``repr`` masks the secrets.
    :meth:`from_env` reads ``WECOM_CORPID``, ``WECOM_AGENTID``, ``WECOM_SECRET``, ...
    """

    env_prefix: ClassVar[str] = "WECOM_"
    scopes: ClassVar[frozenset[str]] = SCOPES

    # ``doc`` and ``doc_zh``: the option's meaning on the documentation site (docs/hooks.py).
    corpid: str = field(
        metadata=required() | {"doc": "The corp's ID (`ww...`).", "doc_zh": "企业 ID（`ww...`）。"}
    )
    agentid: str = field(
        metadata=required()
        | {"doc": "The self-built app's AgentId.", "doc_zh": "自建应用的 AgentId。"}
    )
    secret: str = app_secret()
    callback_path: str = default(OAuthOptions, "callback_path", "/wecom/callback")
    api_base_url: str = default(OAuthOptions, "api_base_url", WECOM_API_BASE_URL)
    default_scope: WeComScope = default(OAuthOptions, "default_scope", "snsapi_base")
    nonce_cookie: str = default(OAuthOptions, "nonce_cookie", "wecom_oauth_nonce")
    error_pages: ErrorPages | None = default(OAuthOptions, "error_pages", DEFAULT_WECOM_ERROR_PAGES)
    #: Fetch the member's consented details (``snsapi_privateinfo`` logins carry a ticket).
    fetch_profile: bool = field(
        default=False,
        metadata=option(boolean)
        | {
            "doc": "With a `user_ticket`, also call `cgi-bin/auth/getuserdetail` and put the "
            "consented fields in `identity.detail`. Another member's details are refused. "
            "Such an answer, or a failure there, keeps the login (the code is spent) with "
            "`detail=None` and the ticket, and logs one warning.",
            "doc_zh": "有 `user_ticket` 时，再调用 `cgi-bin/auth/getuserdetail`，把用户同意提供的"
            "字段放进 `identity.detail`。返回的若是另一个成员的详情，一律拒收。遇到这种应答或"
            "这一步失败时，登录照常（code 已经用掉），`detail=None`，ticket 保留，并记一条警告。",
        },
    )
    qr_login_base_url: str = field(
        default=DEFAULT_QR_LOGIN_BASE_URL,
        metadata=option(text, is_url)
        | {"doc": "WeCom's QR login page.", "doc_zh": "企业微信的扫码登录页。"},
    )
    #: The corp token keeper, to share one with the app's other WeCom calls (by default the
    #: middleware keeps its own, shared with other workers through ``backend``).
    token_keeper: AccessTokenKeeper | None = field(
        default=None,
        metadata={
            "doc": "The corp token keeper; default: one over `WeComTokenFetcher` and the "
            "middleware's `backend`. Pass your own to use the same token for the app's other "
            "WeCom APIs (`middleware.token_keeper` is the one in use).",
            "doc_zh": "应用 access_token 的保管者；默认是基于 `WeComTokenFetcher` 和中间件 "
            "`backend` 的一个。传入你自己的，应用调用其他企业微信接口时就能用同一个 token"
            "（`middleware.token_keeper` 是正在用的那个）。",
        },
    )

    _backend = staticmethod(backend_from_url)
