"""The options of products with a callback and a login page (WeChat's web login, WeCom's):
:class:`OAuthOptions`, on the one options base (:mod:`.options`), and the checks of an AppID
and of a ``redirect_uri`` against the callback path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

from .checks import (
    at_least_a_second,
    boolean,
    cookie_name,
    error_pages,
    integer,
    is_path,
    is_url,
    long_secret,
    number,
    one_of,
    option,
    optional_integer,
    positive,
    text,
    whole_at_least,
)
from .options import InvalidCodeAction, OnError, Options
from .pages import DEFAULT_ERROR_PAGES, ErrorPages
from .state import derive_state_secret


@dataclass(frozen=True, kw_only=True, repr=False)
class OAuthOptions(Options):
    """The options of a product whose users come back to a callback from a consent page that
    a login endpoint sends them to (WeChat's web login, WeCom's)."""

    #: The scopes ``default_scope`` (and a login link's ``?scope=``) may name.
    scopes: ClassVar[frozenset[str]] = frozenset()

    callback_path: str = field(
        default="/wechat/callback",
        metadata=option(text, is_path)
        | {
            "doc": "The path the consent page redirects back to. Matched with or without one "
            "trailing slash, and with or without the ASGI `root_path` in front (servers differ "
            "on whether `path` includes it); nothing else is intercepted. `login_path` matches "
            "the same way.",
            "doc_zh": "授权页重定向回来的路径，即授权链接里 `redirect_uri` 的路径部分。带不带一个"
            "末尾斜杠、带不带 ASGI `root_path` 前缀都能匹配（不同服务器对 `path` 是否包含它做法"
            "不一）；其他路径一概不拦截。`login_path` 的匹配方式相同。",
        },
    )
    login_path: str | None = field(
        default=None,
        metadata=option(text, is_path)
        | {
            "doc": 'When set (e.g. `"/wechat/login"`), a GET there redirects (302) to the '
            "consent page with a signed state and its nonce cookie.",
            "doc_zh": '设置后（如 `"/wechat/login"`），对该路径的 GET 会 302 到授权页，带上签名'
            "的 state 和对应的 nonce cookie。",
        },
    )
    redirect_uri: str | None = field(
        default=None,
        metadata=option(text, is_url)
        | {
            "doc": "The callback URL sent to the consent page. Default: `callback_path` on the "
            "request's own scheme and host (and `root_path`).",
            "doc_zh": "发给授权页的回调地址。默认由请求自身的协议、主机（以及 `root_path`）加 "
            "`callback_path` 组成。",
        },
    )
    default_scope: str = field(
        default="snsapi_base",
        metadata=option(text)
        | {
            "doc": "The scope when the login request has no `?scope=`. WeChat: `snsapi_base`, "
            "`snsapi_userinfo`, or `snsapi_login` (website QR login, `connect/qrconnect`). "
            "WeCom, inside its browser: `snsapi_base` (the userid, silently) or "
            "`snsapi_privateinfo` (asks for consent; adds a `user_ticket`); its QR login has "
            "no scope.",
            "doc_zh": "登录请求没带 `?scope=` 时使用的 scope。微信：`snsapi_base`、"
            "`snsapi_userinfo`，或 `snsapi_login`（网站应用扫码登录，走 `connect/qrconnect`）。"
            "企业微信内：`snsapi_base`（静默获取 userid）或 `snsapi_privateinfo`（需要用户同意；"
            "额外得到 `user_ticket`）；扫码登录没有 scope。",
        },
    )
    trust_forwarded: bool = field(
        default=False,
        metadata=option(boolean)
        | {
            "doc": "Build the default `redirect_uri` from `X-Forwarded-Proto` / "
            "`X-Forwarded-Host`. Only behind a proxy that sets them.",
            "doc_zh": "用 `X-Forwarded-Proto` / `X-Forwarded-Host` 组装默认的 `redirect_uri`。"
            "只在会设置这两个头的反向代理后面打开。",
        },
    )
    state_secret: str | bytes | None = field(
        default=None,
        metadata=option(text, long_secret, secret=True)
        | {
            "doc": "The HMAC key for states (at least 16 bytes). Default: derived from `secret`.",
            "doc_zh": "state 的 HMAC 密钥（至少 16 字节）。默认由 `secret` 派生。",
        },
    )
    verify_state: bool | None = field(
        default=None,
        metadata=option(boolean)
        | {
            "doc": "`None`: verify when `login_path` is set. Verification needs the login "
            "endpoint (it sets the cookie).",
            "doc_zh": "`None`：设置了 `login_path` 时校验 state。校验依赖登录入口（由它设置 "
            "cookie）。",
        },
    )
    state_max_age: float = field(
        default=600.0,
        metadata=option(number, at_least_a_second)
        | {
            "doc": "Seconds a state stays valid: QR login codes live 10 minutes. At least 1. "
            "Its cookie lives a day longer, only so that an expired login can start again "
            "with its `next`.",
            "doc_zh": "state 的有效秒数：扫码登录的 code 有效 10 分钟。至少 1 秒。它的 cookie "
            "多保留一天，只是为了让过期的登录能带着原来的 `next` 重新开始。",
        },
    )
    max_codes_per_state: int = field(
        default=3,
        metadata=option(integer, whole_at_least(1))
        | {
            "doc": "With state verification: how many distinct codes one state may trade. "
            "Beyond it, 403 `too_many_codes` before any call upstream; a duplicate of a code "
            "already counted is not counted again.",
            "doc_zh": "开启 state 校验时，一个 state 最多能兑换几个不同的 code。超出后在调用"
            "接口之前就返回 403 `too_many_codes`；已经计过数的 code 重复到来不会再计一次。",
        },
    )
    authorize_base_url: str = field(
        default="https://open.weixin.qq.com",
        metadata=option(text, is_url)
        | {
            "doc": "The consent pages' site. Point it at the emulator in tests.",
            "doc_zh": "授权页的地址。测试时指向模拟器。",
        },
    )
    nonce_cookie: str = field(
        default="wechat_oauth_nonce",
        metadata=option(text, cookie_name)
        | {
            "doc": "The name of the nonce cookie; over https it carries the `__Host-` prefix "
            "(given with or without it).",
            "doc_zh": "nonce cookie 的名字；https 下自动加上 `__Host-` 前缀（写不写这个前缀"
            "都可以）。",
        },
    )
    on_invalid_code: InvalidCodeAction | None = field(
        default=None,
        metadata=option(text, one_of("reauthorize", "error"))
        | {
            "doc": "What a callback with an unusable code (40029, 40163, 42003), or a browser "
            "navigation whose state expired or lost its cookie, answers: `None` means "
            '`"reauthorize"` (302 back to login, once) when `login_path` is set, else '
            '`"error"` (400 / 403).',
            "doc_zh": "回调的 code 不可用（40029、40163、42003），或者浏览器跳转过来时 state "
            "已过期、cookie 丢失，怎么应答：`None` 表示设置了 `login_path` 时为 "
            '`"reauthorize"`（302 回登录入口，只重试一次），否则为 `"error"`（400 / 403）。',
        },
    )
    on_error: OnError | None = field(
        default=None,
        metadata={
            "doc": "Called for every error answer; return an ASGI app (e.g. a Starlette "
            "`RedirectResponse` to your login page) to replace the default answer (page or "
            "JSON), or `None` to keep it.",
            "doc_zh": "每次错误应答前调用；返回一个 ASGI 应用（比如 Starlette 的 "
            "`RedirectResponse`，跳到你的登录页）来替换默认的应答（页面或 JSON），返回 `None` "
            "则保持默认。",
        },
    )
    error_pages: ErrorPages | None = field(
        default=DEFAULT_ERROR_PAGES,
        metadata=option(None, error_pages)
        | {
            "doc": "The HTML pages browsers get for errors (Simplified Chinese or English; "
            "WeCom's say WeCom where WeChat's say WeChat): change texts per reason and "
            "language, or the whole page. `None`: JSON for everyone.",
            "doc_zh": "浏览器遇到错误时看到的 HTML 页面（简体中文或英文；企业微信的页面在微信的"
            "说“微信”的地方说“企业微信”）：可以按 reason 和语言改文案，或者换掉整个页面。"
            "`None`：所有人都只得到 JSON。",
        },
    )
    login_loop_limit: int | None = field(
        default=5,
        metadata=option(optional_integer, whole_at_least(2, or_none=True))
        | {
            "doc": "With `login_path`: after this many completed logins by one browser within "
            "`login_loop_window`, the login endpoint answers 429 `login_loop` (a page) instead "
            "of sending it to the consent page again; a WARNING at the third. At least 2; "
            "`None` turns loop detection off.",
            "doc_zh": "设置了 `login_path` 时：同一个浏览器在 `login_loop_window` 内完成这么多次"
            "登录后，登录入口返回 429 `login_loop`（一个页面），不再把它送去授权页；第三次时记"
            "一条 WARNING。至少为 2；`None` 关闭登录循环检测。",
        },
    )
    login_loop_window: float = field(
        default=120.0,
        metadata=option(number, positive)
        | {
            "doc": "Seconds over which completed logins are counted for `login_loop_limit`.",
            "doc_zh": "为 `login_loop_limit` 统计已完成登录的时间窗口（秒）。",
        },
    )

    def own_path_problem(self, name: str) -> str | None:
        """Path option ``name`` (the JS-SDK's, the ticket push's) must be none of the login's
        own paths, with or without a trailing slash: one request cannot be both."""
        path = getattr(self, name)
        if not isinstance(path, str):
            return None
        for other in (self.callback_path, self.login_path):
            if isinstance(other, str) and other.rstrip("/") == path.rstrip("/"):
                return f"{name} must differ from callback_path and login_path"
        return None

    @property
    def resolved_verify_state(self) -> bool:
        """``verify_state`` with its default applied: on when ``login_path`` is set."""
        return self.login_path is not None if self.verify_state is None else self.verify_state

    @property
    def resolved_on_invalid_code(self) -> InvalidCodeAction:
        """``on_invalid_code`` with its default applied: re-authorize when ``login_path`` is set."""
        if self.on_invalid_code is not None:
            return self.on_invalid_code
        return "reauthorize" if self.login_path is not None else "error"

    @property
    def signing_secret(self) -> str:
        """The secret states are signed with (a key derived from it) when ``state_secret`` is
        not given: the app's ``secret``."""
        secret: str = getattr(self, "secret", "")
        return secret

    @property
    def state_key(self) -> bytes:
        """The key states are signed with: ``state_secret``, else one derived from the
        secret (never the secret itself)."""
        if self.state_secret is None:
            return derive_state_secret(self.signing_secret)
        if isinstance(self.state_secret, str):
            return self.state_secret.encode()
        return self.state_secret

    def _problems(self) -> list[str]:
        problems = super()._problems()
        if self.default_scope not in self.scopes:
            problems.append(
                f"default_scope must be one of {sorted(self.scopes)}, got {self.default_scope!r}"
            )
        if self.login_path is None:
            if self.verify_state:
                problems.append("verify_state needs login_path: the login endpoint sets the cookie")
            if self.on_invalid_code == "reauthorize":
                problems.append("on_invalid_code='reauthorize' needs login_path")
        elif (
            isinstance(self.login_path, str)
            and isinstance(self.callback_path, str)
            and self.login_path.rstrip("/") == self.callback_path.rstrip("/")
        ):
            problems.append("login_path must differ from callback_path")
        problem = redirect_uri_problem(self.redirect_uri, self.callback_path)
        if problem:
            problems.append(problem)
        return problems


def redirect_uri_problem(redirect_uri: object, callback_path: object) -> str | None:
    """``redirect_uri`` must lead to ``callback_path``: the user comes back to the one, and
    the middleware answers at the other (under a ``root_path``, the URL's path ends
    with it). Either option invalid on its own is said by its own check."""
    if not (isinstance(redirect_uri, str) and isinstance(callback_path, str)):
        return None
    if is_url("", redirect_uri) or is_path("", callback_path):
        return None
    path = urlsplit(redirect_uri).path or "/"
    wanted = callback_path.rstrip("/") or "/"
    if wanted == "/" or (path.rstrip("/") or "/").endswith(wanted):
        return None
    return (
        f"redirect_uri's path ({path}) must be callback_path ({callback_path}), or end with "
        "it under a root_path: the user comes back to redirect_uri, and the middleware answers "
        "at callback_path"
    )


#: WeChat's AppIDs (official accounts, website apps, mini-programs): ``wx`` and 16 hex digits.
WECHAT_APPID = re.compile(r"wx[0-9a-f]{16}")


def appid_problem(name: str, value: object) -> str | None:
    """What no WeChat AppID can be, for option ``name``: spaces around it, punctuation (the
    placeholder ``wx...``), the account's original ID ``gh_...``. Its exact form is not
    checked here (see :func:`appid_form_warning`): an emulator, or a test's mock of WeChat,
    takes any AppID."""
    if not isinstance(value, str) or not value:
        return None  # the required check says it
    if value != value.strip():
        return f"{name} has spaces around it: {value!r}"
    if value.startswith("gh_"):
        return (
            f"{name} {value!r} is the account's original ID (原始ID), not its AppID: copy the "
            "AppID (wx followed by 16 hex digits) from the admin console's 基本配置 page"
        )
    if not (value.isascii() and value.isalnum()):
        return (
            f"{name} must be letters and digits only (WeChat's are wx followed by 16 hex "
            f"digits, such as wx0123456789abcdef), got {value!r}"
        )
    return None


def appid_form_warning(name: str, value: object, api_base_url: object) -> str | None:
    """Why WeChat will refuse AppID ``value`` (option ``name``): against WeChat itself
    (``api_base_url`` on ``weixin.qq.com``), any other form than ``wx`` + 16 hex digits.
    ``check`` says it; at run time WeChat's own answer (40013, invalid appid) is logged."""
    if not isinstance(value, str) or not value or WECHAT_APPID.fullmatch(value):
        return None
    host = urlsplit(api_base_url).hostname if isinstance(api_base_url, str) else None
    if host is None or not (host == "weixin.qq.com" or host.endswith(".weixin.qq.com")):
        return None
    return (
        f"{name} {value!r} is not of the form of WeChat's AppIDs (wx followed by 16 hex "
        "digits, 0-9 and a-f): WeChat will answer 40013 (invalid appid)"
    )
