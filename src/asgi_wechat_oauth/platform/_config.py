"""Every option of the third-party platform's middleware in one frozen, validated object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .._core.asgi import Scope
from .._core.checks import boolean, is_path, one_of, option, required, text
from .._core.oauth_options import OAuthOptions, appid_problem
from .._core.options import default
from ..backends import backend_from_url
from ..web._authorize import OFFICIAL_ACCOUNT_SCOPES
from ._crypto import encoding_aes_key_problem, token_problem

#: The scope a login asks for when the link names none (official-account pages only).
PlatformScope = Literal["snsapi_base", "snsapi_userinfo"]
#: The authorizer: an appid, or a function of the request's ASGI scope that names one.
Authorizer = str | Callable[[Scope], "str | None"]


@dataclass(frozen=True, kw_only=True, repr=False)
class PlatformOAuthConfig(OAuthOptions):
    """The options of :class:`PlatformOAuthMiddleware`, validated on construction.

    ``PlatformOAuthMiddleware(app, config=config)`` and ``PlatformOAuthMiddleware(app,
    **options)`` build the same middleware. Invalid options raise
    :class:`~asgi_wechat_oauth.errors.InvalidConfig` naming each bad option. ``repr`` masks
    the secrets (the component secret, the message token and key). :meth:`from_env` reads
    ``WECHAT_PLATFORM_COMPONENT_APPID``, ``WECHAT_PLATFORM_COMPONENT_SECRET``, ...
    """

    env_prefix: ClassVar[str] = "WECHAT_PLATFORM_"
    scopes: ClassVar[frozenset[str]] = OFFICIAL_ACCOUNT_SCOPES

    # ``doc`` and ``doc_zh``: the option's meaning on the documentation site (docs/hooks.py).
    component_appid: str = field(
        default="",
        metadata=required()
        | {
            "doc": "The third-party platform's AppID (component_appid).",
            "doc_zh": "第三方平台的 AppID（component_appid）。",
        },
    )
    component_secret: str = field(
        default="",
        metadata=required(secret=True)
        | {
            "doc": "The platform's AppSecret (component_appsecret). Never logged.",
            "doc_zh": "第三方平台的 AppSecret（component_appsecret）。从不写进日志。",
        },
    )
    token: str = field(
        default="",
        metadata=required(secret=True)
        | {
            "doc": "The message verification token (消息校验 Token) set on the open platform: "
            "ticket pushes are signed with it.",
            "doc_zh": "开放平台上设置的消息校验 Token：ticket 推送用它签名。",
        },
    )
    encoding_aes_key: str = field(
        default="",
        metadata=required(secret=True)
        | {
            "doc": "The message encryption key (消息加解密 Key, 43 characters) set on the open "
            "platform: ticket pushes are encrypted with it.",
            "doc_zh": "开放平台上设置的消息加解密 Key（43 个字符）：ticket 推送用它加密。",
        },
    )
    authorizer: Authorizer = field(
        default="",
        metadata=required()
        | {
            "doc": "The official account (authorizer) users log in with: its AppID, or a "
            "function of the ASGI scope that returns the request's (by host, path, or "
            "anything the app knows). `None`, or no AppID, gets 404 `unknown_app`.",
            "doc_zh": "用户通过哪个公众号（授权方）登录：它的 AppID，或一个以 ASGI scope 为参数"
            "的函数，返回这个请求所用的 AppID（按域名、路径或应用知道的任何信息）。返回 "
            "`None` 或不是 AppID 的值，得到 404 `unknown_app`。",
        },
    )
    ticket_path: str = field(
        default="/wechat/platform/ticket",
        metadata=option(text, is_path)
        | {
            "doc": "Where WeChat pushes `component_verify_ticket` (授权事件接收 URL): a POST, "
            "answered `success`. Authorization events (`authorized`, `unauthorized`, "
            "`updateauthorized`) are acknowledged and logged.",
            "doc_zh": "微信推送 `component_verify_ticket` 的地址（授权事件接收 URL）：一个 "
            "POST，应答 `success`。授权事件（`authorized`、`unauthorized`、"
            "`updateauthorized`）会确认收到并记日志。",
        },
    )
    callback_path: str = default(OAuthOptions, "callback_path", "/wechat/platform/callback")
    default_scope: PlatformScope = default(OAuthOptions, "default_scope", "snsapi_base")
    nonce_cookie: str = default(OAuthOptions, "nonce_cookie", "wechat_platform_nonce")
    fetch_profile: bool | None = field(
        default=None,
        metadata=option(boolean)
        | {
            "doc": "`None`: call `sns/userinfo` when the granted scope is `snsapi_userinfo`. "
            "`True`/`False`: always / never.",
            "doc_zh": "`None`：授权 scope 为 `snsapi_userinfo` 时调用 `sns/userinfo`。"
            "`True`/`False`：总是/从不。",
        },
    )
    connect_redirect: bool = field(
        default=True,
        metadata=option(boolean)
        | {
            "doc": "Add the undocumented `connect_redirect=1` to the authorize URL.",
            "doc_zh": "在授权链接里加上未公开文档的 `connect_redirect=1`。",
        },
    )
    snapshot_users: Literal["allow", "reject"] = field(
        default="allow",
        metadata=option(text, one_of("allow", "reject"))
        | {
            "doc": '`"reject"`: snapshot-mode identities get 403 `snapshot_user`.',
            "doc_zh": '`"reject"`：快照页模式的用户得到 403 `snapshot_user`。',
        },
    )

    @property
    def signing_secret(self) -> str:
        return self.component_secret

    @property
    def fixed_authorizer(self) -> str | None:
        """The authorizer when it is one AppID, else None (a function picks it)."""
        return self.authorizer if isinstance(self.authorizer, str) else None

    _backend = staticmethod(backend_from_url)

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if callable(self.authorizer):
            problems = [p for p in problems if not p.startswith("authorizer must be text")]
        problems += [
            problem
            for problem in (
                appid_problem("component_appid", self.component_appid),
                appid_problem("authorizer", self.fixed_authorizer),
                token_problem(self.token) if self.token else None,
                encoding_aes_key_problem(self.encoding_aes_key) if self.encoding_aes_key else None,
            )
            if problem
        ]
        if not (isinstance(self.authorizer, str) or callable(self.authorizer)):
            problems.append("authorizer must be an AppID or a function of the ASGI scope")
        problem = self.own_path_problem("ticket_path")
        if problem:
            problems.append(problem)
        if self.fixed_authorizer is not None and self.fixed_authorizer == self.component_appid:
            problems.append("authorizer is an official account's AppID, not the platform's own")
        return problems
