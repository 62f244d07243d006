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

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .._core.checks import boolean, number, one_of, option, required, text
from .._core.oauth_options import OAuthOptions, appid_problem
from .._core.options import default
from ..backends import Backend, MemoryBackend
from ._authorize import OFFICIAL_ACCOUNT_SCOPES, SCOPES

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
        metadata=required()
        | {
            "doc": "Your official account's or website app's AppID.",
            "doc_zh": "公众号或网站应用的 AppID。",
        }
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

    @staticmethod
    def _backend(redis_url: str | None = None, **options: Any) -> Backend:
        if redis_url is None:
            return MemoryBackend()
        from ..backends.redis import RedisBackend  # the redis extra: imported when used

        return RedisBackend(redis_url, **options)

    def _problems(self) -> list[str]:
        problems = super()._problems()
        for name in ("appid", "website_appid"):
            problem = appid_problem(name, getattr(self, name))
            if problem:
                problems.append(problem)
        return problems + self._website_app_problems()

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
