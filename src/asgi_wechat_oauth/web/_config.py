"""Every option of the web middleware in one frozen, validated object.

Built (and so checked) where it is written: at import time, or from the environment with
:meth:`WeChatOAuthConfig.from_env`. Starlette builds ``app.add_middleware(...)`` lazily, at the
first lifespan or request event, so a bad option passed there only fails once the server runs;
a config object made at import fails at import.

Adding an option: one field (in ``_core.options`` when every product has it), with the metadata
that says how the environment spells it and how it is checked; the middleware's constructor
spells the same keyword out for type checkers (its base refuses a constructor that does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .._core.checks import app_secrets, boolean, is_path, number, one_of, option, required, text
from .._core.oauth_options import OAuthOptions, appid_problem
from .._core.options import app_secret, default
from .._core.sites import AppResolver
from ..backends import backend_from_url
from ..tokens import AccessTokenKeeper
from ._authorize import OFFICIAL_ACCOUNT_SCOPES, SCOPES
from ._jssdk import origins_problem, parse_origins

#: The scope a login asks for when the link names none.
WeChatScope = Literal["snsapi_base", "snsapi_userinfo", "snsapi_login"]
#: What happens to identities of users in WeChat's snapshot-page mode.
SnapshotPolicy = Literal["allow", "reject"]
#: What a desktop browser gets when only the official account logs in (no website app).
DesktopLogin = Literal["handoff", "phone"]


def _handoff_ttl(name: str, value: object) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 10 <= value <= 3600:
        return None
    return f"{name} must be between 10 and 3600 seconds"


@dataclass(frozen=True, kw_only=True, repr=False)
class WeChatOAuthConfig(OAuthOptions):
    """The options of :class:`WeChatOAuthMiddleware`, validated on construction.

    ``WeChatOAuthMiddleware(app, config=config)`` and ``WeChatOAuthMiddleware(app, **options)``
    build the same middleware. Invalid options raise
    :class:`~asgi_wechat_oauth.errors.InvalidConfig` (a ``ValueError``) naming each bad option,
    and a misspelt one with the name meant. ``repr`` masks the secrets.
    ``dataclasses.replace(config, ...)`` validates again. :meth:`from_env` reads ``WECHAT_*``.
    """

    env_prefix: ClassVar[str] = "WECHAT_"
    scopes: ClassVar[frozenset[str]] = SCOPES

    # ``doc`` and ``doc_zh``: the option's meaning on the documentation site (docs/hooks.py).
    appid: str = field(
        default="",
        metadata=required()
        | {
            "doc": "Your official account's or website app's AppID (not with `apps`).",
            "doc_zh": "公众号或网站应用的 AppID（与 `apps` 二选一）。",
        },
    )
    secret: str = app_secret()
    #: Several official accounts, each with its own secret, picked per request.
    apps: Mapping[str, str] | None = field(
        default=None,
        metadata=option(None, app_secrets, secret=True)
        | {
            "doc": "Several official accounts (AppID → AppSecret) served by one middleware, "
            "instead of `appid` and `secret`: `resolve_app` picks the request's. Each has its "
            "own states, codes and client; a state or code of one is refused at another.",
            "doc_zh": "一个中间件服务多个公众号（AppID → AppSecret），代替 `appid` 和 "
            "`secret`：由 `resolve_app` 为每个请求选出所用的公众号。各公众号的 state、code 和"
            "客户端互不相通；一个公众号的 state 或 code 拿到另一个公众号那里会被拒绝。",
        },
    )
    resolve_app: AppResolver | None = field(
        default=None,
        metadata={
            "doc": "With `apps`: a function of the ASGI scope that returns the request's AppID "
            "(by host, path, or anything the app knows); `None` or an AppID not in `apps` gets "
            "404 `unknown_app`.",
            "doc_zh": "与 `apps` 一起使用：一个以 ASGI scope 为参数的函数，返回这个请求所用的 "
            "AppID（按域名、路径或应用知道的任何信息）；返回 `None` 或不在 `apps` 里的 AppID，"
            "得到 404 `unknown_app`。",
        },
    )
    fetch_profile: bool | None = field(
        default=None,
        metadata=option(boolean)
        | {
            "doc": "`None`: call `sns/userinfo` when the granted scope is `snsapi_userinfo` or "
            "`snsapi_login`. `True`/`False`: always / never.",
            "doc_zh": "`None`：授权 scope 为 `snsapi_userinfo` 或 `snsapi_login` 时调用 "
            "`sns/userinfo` 拉取用户信息。`True`/`False`：总是/从不。",
        },
    )
    default_scope: WeChatScope = default(OAuthOptions, "default_scope", "snsapi_base")
    connect_redirect: bool = field(
        default=True,
        metadata=option(boolean)
        | {
            "doc": "Add the undocumented `connect_redirect=1` to the authorize URL (harmless; "
            "never relied on).",
            "doc_zh": "在授权链接里加上未公开文档的 `connect_redirect=1`（无害，但从不依赖它）。",
        },
    )
    snapshot_users: SnapshotPolicy = field(
        default="allow",
        metadata=option(text, one_of("allow", "reject"))
        | {
            "doc": '`"reject"`: snapshot-mode identities get 403 `snapshot_user` instead of '
            "reaching your handler.",
            "doc_zh": '`"reject"`：快照页模式的用户得到 403 `snapshot_user`，'
            "不会进入你的处理函数。",
        },
    )
    #: A website app (QR login) beside the official account ``appid``: browsers other than
    #: WeChat's log in with it. Both or neither.
    website_appid: str | None = field(
        default=None,
        metadata=option(text)
        | {
            "doc": "A website app (open platform, QR login) beside the official account "
            "`appid`: with `login_path`, browsers other than WeChat's log in with it "
            "(`connect/qrconnect`, `snsapi_login`). Give it with `website_secret`.",
            "doc_zh": "与公众号 `appid` 并存的网站应用（开放平台，扫码登录）：设置了 `login_path` "
            "时，微信以外的浏览器用它登录（`connect/qrconnect`，`snsapi_login`）。须与 "
            "`website_secret` 一起给出。",
        },
    )
    website_secret: str | None = field(
        default=None,
        metadata=option(text, secret=True)
        | {
            "doc": "The website app's AppSecret: used only to trade the website app's codes "
            "(its own `WeChatOAuthClient`). Never logged.",
            "doc_zh": "网站应用的 AppSecret：只用来兑换网站应用的 code（它有自己的 "
            "`WeChatOAuthClient`）。从不写进日志。",
        },
    )

    # The JS-SDK endpoint (see web/_jssdk.py).
    jssdk_path: str | None = field(
        default=None,
        metadata=option(text, is_path)
        | {
            "doc": 'When set (e.g. `"/wechat/jssdk"`), `GET {jssdk_path}?url=<page URL>` '
            "answers what the page's `wx.config` takes: JSON `appId`, `timestamp`, "
            "`nonceStr`, `signature`, signed with the account's `jsapi_ticket` (one fetch per "
            "ticket lifetime across workers sharing the backend).",
            "doc_zh": '设置后（如 `"/wechat/jssdk"`），`GET {jssdk_path}?url=<页面地址>` 返回页面'
            "调用 `wx.config` 所需的 JSON：`appId`、`timestamp`、`nonceStr`、`signature`，用公众号"
            "的 `jsapi_ticket` 签名（共享同一后端的所有 worker，每个 ticket 有效期内只获取一次）。",
        },
    )
    jssdk_origins: tuple[str, ...] = field(
        default=(),
        metadata=option(parse_origins, origins_problem)
        | {
            "doc": "Origins (`https://example.com`) whose pages `jssdk_path` signs besides the "
            "request's own (scheme and host, `X-Forwarded-*` with `trust_forwarded`) and "
            "`redirect_uri`'s. From the environment: separated by commas.",
            "doc_zh": "除请求自身的源（协议加主机；`trust_forwarded` 时取 `X-Forwarded-*`）和 "
            "`redirect_uri` 的源之外，`jssdk_path` 还为哪些源（如 `https://example.com`）的页面"
            "签名。环境变量里用逗号分隔。",
        },
    )
    token_keeper: AccessTokenKeeper | None = field(
        default=None,
        metadata={
            "doc": "The official account's access token for `jssdk_path`'s `jsapi_ticket`: "
            "your own `AccessTokenKeeper` (you close it). `None`: one over "
            "`StableTokenFetcher(appid, secret)` on `backend`.",
            "doc_zh": "`jssdk_path` 获取 `jsapi_ticket` 所用的公众号 access_token：传入你自己的 "
            "`AccessTokenKeeper`（由你负责关闭）。`None`：在 `backend` 上用 "
            "`StableTokenFetcher(appid, secret)` 建一个。",
        },
    )
    desktop_login: DesktopLogin = field(
        default="handoff",
        metadata=option(text, one_of("handoff", "phone"))
        | {
            "doc": "With `login_path` and no website app, what a desktop browser gets: "
            '`"handoff"`, a QR code to scan with WeChat, a confirmation on the phone, and the '
            'computer is logged in (see Desktop login); `"phone"`, a QR code that moves the '
            "login to the phone. Needs `verify_state` and a backend that can look records up "
            '(both built-in ones); without them, `"phone"`.',
            "doc_zh": '设置了 `login_path` 且没有网站应用时，电脑浏览器看到什么：`"handoff"`：'
            '二维码，用微信扫码、在手机上确认后电脑就登录了（见“电脑登录”）；`"phone"`：'
            "二维码把登录转到手机上完成。需要 `verify_state` 和能查询记录的后端（两个内置后端"
            '都可以），否则按 `"phone"` 处理。',
        },
    )
    handoff_ttl: float = field(
        default=120.0,
        metadata=option(number, _handoff_ttl)
        | {
            "doc": "Seconds a desktop login's QR code stays valid, from the page to the phone's "
            "confirmation (10 to 3600). An expired page offers a fresh QR code.",
            "doc_zh": "电脑登录的二维码有效秒数，从打开页面到手机确认（10 到 3600）。"
            "过期后页面会提供新的二维码。",
        },
    )

    _backend = staticmethod(backend_from_url)

    @property
    def signing_secret(self) -> str:
        if self.apps:  # every account's secret: a key none of them alone gives
            return "\0".join(secret for _, secret in sorted(self.apps.items()))
        return self.secret

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if self.apps is not None:
            problems = [p for p in problems if p not in ("appid is required", "secret is required")]
        for name in ("appid", "website_appid"):
            problem = appid_problem(name, getattr(self, name))
            if problem:
                problems.append(problem)
        return (
            problems + self._apps_problems() + self._website_app_problems() + self._jssdk_problems()
        )

    def _apps_problems(self) -> list[str]:
        """``apps`` with ``resolve_app``, instead of ``appid`` and ``secret``."""
        if self.apps is None:
            if self.resolve_app is not None:
                return ["resolve_app needs apps: the AppIDs it may name, with their secrets"]
            return []
        problems = []
        if self.appid or self.secret:
            problems.append("give apps, or appid and secret: not both")
        if not callable(self.resolve_app):
            problems.append(
                "apps needs resolve_app: a function of the ASGI scope that returns the "
                "request's AppID"
            )
        if self.website_appid or self.website_secret:
            problems.append("website_appid cannot be combined with apps")
        if self.jssdk_path is not None:
            problems.append(
                "jssdk_path cannot be combined with apps yet: sign with each account's own "
                "tokens.jssdk_config(...) and a JsapiTicketFetcher per account"
            )
        if isinstance(self.apps, Mapping):
            for appid in self.apps:
                problem = appid_problem("apps", appid)
                if problem:
                    problems.append(problem)
        return problems

    def _website_app_problems(self) -> list[str]:
        """The website app: both options or neither, and a login endpoint whose signed state
        says which app each code is traded with."""
        if not self.website_appid and not self.website_secret:
            return []
        if not (self.website_appid and self.website_secret):
            return ["website_appid and website_secret go together: give both or neither"]
        problems = []
        if self.website_appid == self.appid:
            problems.append("website_appid must differ from appid (the official account's)")
        if self.login_path is None or self.verify_state is False:
            problems.append(
                "website_appid needs login_path and verify_state: the signed state says which "
                "app traded each code"
            )
        if self.default_scope not in OFFICIAL_ACCOUNT_SCOPES:
            problems.append(
                "with website_appid, default_scope is the official account's: snsapi_base or "
                "snsapi_userinfo (other browsers use the website app's snsapi_login)"
            )
        return problems

    def _jssdk_problems(self) -> list[str]:
        """The JS-SDK endpoint: a path of its own; its options only with it."""
        if self.token_keeper is not None and not isinstance(self.token_keeper, AccessTokenKeeper):
            return ["token_keeper must be an AccessTokenKeeper"]
        if self.jssdk_path is None:
            given = [name for name in ("jssdk_origins", "token_keeper") if getattr(self, name)]
            return [f"{name} needs jssdk_path" for name in given]
        problem = self.own_path_problem("jssdk_path")
        return [problem] if problem else []
