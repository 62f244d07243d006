"""One options base for every product: each option one field, in one place.

A product's config is a frozen dataclass that extends :class:`Options` (or
:class:`OAuthOptions`, for products with a callback and a login page). Each option is a field
whose metadata (:func:`.checks.option`) says how the environment spells it, how it is checked
and whether it is a secret. So every config is validated where it is written, masks its
secrets in ``repr``, reads the environment (:meth:`Options.from_env`) and refuses a misspelt
name with the name meant: the same way, with the same messages, in every product. Checks that
involve several options go in ``_problems``.

The core imports no backend: each product says, in ``_backend``, what ``backend=None`` and a
``{prefix}REDIS_URL`` variable make.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

import httpx

from ..errors import InvalidConfig
from .apiclient import DEFAULT_API_BASE_URL
from .checks import (
    at_least_a_second,
    boolean,
    cookie_name,
    error_pages,
    integer,
    is_path,
    is_url,
    long_secret,
    non_negative,
    number,
    one_of,
    option,
    optional_integer,
    positive,
    required,
    text,
    whole_at_least,
)
from .contract import Backend, check_lease
from .counters import Counters
from .pages import DEFAULT_ERROR_PAGES, ErrorPages
from .state import derive_state_secret

if TYPE_CHECKING:
    from ..errors import WeChatOAuthError
    from .asgi import ASGIApp, Scope

    OnError = Callable[[Scope, WeChatOAuthError], ASGIApp | None]
else:
    OnError = Callable[..., Any]

#: What an unusable code gets at the callback.
InvalidCodeAction = Literal["reauthorize", "error"]

_O = TypeVar("_O", bound="Options")
MASK = "********"
#: The variables ``from_env`` reads besides the options: the Redis backend.
REDIS_VARIABLES = (
    "REDIS_URL",
    "REDIS_PREFIX",
    "LEASE_TTL",
    "REDIS_CLUSTER",
    "REDIS_TIMEOUT",
    "REDIS_MAX_CONNECTIONS",
    "REDIS_MAX_QUEUED",
    "REDIS_FAILOVER_TIMEOUT",
)
#: Every product's default prefix: one product's ``from_env`` leaves the variables under a
#: longer one alone (``WECHAT_MINIPROGRAM_APPID`` is not a misspelt ``WECHAT_`` option).
PRODUCT_PREFIXES = ("WECHAT_", "WECHAT_MINIPROGRAM_", "WECOM_")


def default(cls: type[Options], name: str, value: object) -> Any:
    """Option ``name`` of ``cls`` with another default, its metadata (checks, environment)
    kept: for a product whose default differs."""
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    return field(default=value, metadata=metadata)


# --- the base ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class Options:
    """The options every product has. Subclasses are ``@dataclass(frozen=True, kw_only=True,
    repr=False)`` and set ``env_prefix``.

    Invalid options raise :class:`~asgi_wechat_oauth.errors.InvalidConfig` (a ``ValueError``)
    listing each problem, each naming its option. ``repr`` masks the secrets.
    ``dataclasses.replace(config, ...)`` validates again.
    """

    #: What ``from_env`` reads by default: ``{env_prefix}APPID``, ...
    env_prefix: ClassVar[str] = ""

    # Each field's ``doc`` and ``doc_zh`` (metadata) are its meaning on the documentation
    # site's configuration tables (docs/hooks.py), in English and in Chinese.
    secret: str = field(
        metadata=required(secret=True)
        | {
            "doc": "The app's secret (AppSecret). Never logged, never in an error message.",
            "doc_zh": "应用的密钥（AppSecret）。不会出现在日志和错误信息里。",
        }
    )
    backend: Backend | None = field(
        default=None,
        metadata={
            "doc": "Where flights and results live. `None`: a new `MemoryBackend()`, which "
            "dedupes within one process; `RedisBackend` dedupes across processes and hosts.",
            "doc_zh": "进行中的兑换与结果存在哪里。`None`：新建一个 `MemoryBackend()`，"
            "在单进程内去重；`RedisBackend` 跨进程、跨机器去重。",
        },
    )
    api_base_url: str = field(
        default=DEFAULT_API_BASE_URL,
        metadata=option(text, is_url)
        | {
            "doc": "The API the codes are traded at. Point it at the emulator in tests.",
            "doc_zh": "兑换 code 的接口地址。测试时指向模拟器。",
        },
    )
    result_ttl: float = field(
        default=120.0,
        metadata=option(number, non_negative)
        | {
            "doc": "Seconds a result is kept for late duplicates (codes live 5 minutes, 10 for "
            "QR login). `0` keeps nothing: only concurrent duplicates share.",
            "doc_zh": "兑换结果保留多少秒，供迟到的重复请求使用（code 有效期 5 分钟，扫码登录 "
            "10 分钟）。`0` 表示不保留：只有并发的重复请求共享结果。",
        },
    )
    exchange_timeout: float = field(
        default=10.0,
        metadata=option(number, positive)
        | {
            "doc": "Bound on one whole exchange: every call it makes together, each bounded in "
            "total (not per read). A `RedisBackend`'s `lease_ttl` must be at least this + 1 s.",
            "doc_zh": "一次完整兑换的时限：兑换中的所有调用加在一起，每次调用都按总时长计算"
            "（而不是按每次读取）。`RedisBackend` 的 `lease_ttl` 至少要比它长 1 秒。",
        },
    )
    http_client: httpx.AsyncClient | None = field(
        default=None,
        metadata={
            "doc": "Your own client (you close it). Otherwise the middleware creates one pooled "
            "client on first use and closes it on lifespan shutdown (or call "
            "`await middleware.aclose()`).",
            "doc_zh": "传入自己的客户端（由你负责关闭）。否则中间件在首次使用时创建一个连接池"
            "客户端，并在 lifespan 关闭时关掉（或调用 `await middleware.aclose()`）。",
        },
    )
    counters: Counters | None = field(
        default=None,
        metadata={
            "doc": "A `Counters` object to count into (share it with `WeChatOAuthCollector` "
            "when `add_middleware` hides the instance); a new one otherwise.",
            "doc_zh": "计数写入哪个 `Counters` 对象（`add_middleware` 拿不到实例时，可与 "
            "`WeChatOAuthCollector` 共享同一个）；默认新建一个。",
        },
    )

    def __new__(cls: type[_O], *args: Any, **options: Any) -> _O:
        # The generated __init__ would answer a misspelt name with a bare TypeError.
        problems = [unknown(cls, name, "option") for name in options if name not in _names(cls)]
        if problems:
            raise InvalidConfig(problems)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise InvalidConfig(problems)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.summary().items())
        return f"{type(self).__name__}({shown})"

    def summary(self) -> dict[str, object]:
        """Every option, secrets masked, the credentials first: what ``repr`` and
        ``python -m asgi_wechat_oauth check`` show."""
        shown: dict[str, object] = {}
        for spec in _ordered(type(self)):
            value = getattr(self, spec.name)
            shown[spec.name] = MASK if spec.metadata.get("secret") and value else value
        return shown

    @classmethod
    def chosen(cls: type[_O], config: _O | None, keywords: Mapping[str, Any]) -> _O:
        """A middleware's config: ``config``, or one built from the options its constructor
        was given as keywords (``keywords``: its ``locals()``). Both at once is a
        ``TypeError``."""
        fields = {spec.name: spec for spec in dataclasses.fields(cls)}
        options = {name: keywords[name] for name in fields}
        if config is None:
            return cls(**options)
        if not isinstance(config, cls):
            raise TypeError(f"config must be a {cls.__name__}, not {type(config).__name__}")
        given = sorted(
            name
            for name, value in options.items()
            if value is not _default(fields[name]) and value != _default(fields[name])
        )
        if given:
            raise TypeError(f"pass either config= or options, not both (got {', '.join(given)})")
        return config

    @staticmethod
    def _backend(redis_url: str | None = None, **options: Any) -> Backend:
        """A backend of this process (``redis_url`` None), or the Redis one at ``redis_url``
        (``ImportError`` without the redis extra). Each product says which."""
        raise NotImplementedError

    def new_backend(self) -> Backend:
        """``backend``, or when it is None a new backend of this process's memory."""
        return self.backend if self.backend is not None else self._backend()

    def _problems(self) -> list[str]:
        """What is wrong, each naming its option; subclasses add the checks that involve
        several options."""
        problems: list[str] = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            check = spec.metadata.get("check")
            if spec.metadata.get("required"):
                if not value:
                    problems.append(f"{spec.name} is required")
                elif not isinstance(value, str):
                    problems.append(f"{spec.name} must be text, got {type(value).__name__}")
            elif check is not None and not (value is None and spec.default is None):
                problem = check(spec.name, value)
                if problem:
                    problems.append(problem)
        if self.backend is not None and positive("", self.exchange_timeout) is None:
            try:
                check_lease(self.backend, self.exchange_timeout, "exchange_timeout")
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    @classmethod
    def from_env(
        cls: type[_O],
        prefix: str | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        ignore: Iterable[str] = (),
        **options: Any,
    ) -> _O:
        """The options from environment variables: ``{prefix}{OPTION}`` for each option that
        is text, a number or a boolean (booleans as true/false, 1/0, yes/no, on/off; an empty
        variable counts as unset). ``{prefix}REDIS_URL`` (with ``REDIS_PREFIX``,
        ``LEASE_TTL``, ``REDIS_CLUSTER``, ``REDIS_TIMEOUT``, ``REDIS_MAX_CONNECTIONS``,
        ``REDIS_MAX_QUEUED``, ``REDIS_FAILOVER_TIMEOUT``) makes a ``RedisBackend``. Any other
        variable under ``prefix`` is an error that names it and the variable meant, unless
        listed in ``ignore`` (your app's own). ``options`` are passed as they are and win over
        the environment (``http_client``, ``on_error``, ...)."""
        prefix = cls.env_prefix if prefix is None else prefix
        environ = os.environ if environ is None else environ
        problems: list[str] = []
        values: dict[str, Any] = {}
        missing: list[str] = []
        variables = {prefix + name: name for name in REDIS_VARIABLES}
        for spec in _ordered(cls):
            parse = spec.metadata.get("env")
            if parse is None:
                continue
            variable = prefix + spec.name.upper()
            variables[variable] = spec.name
            value = environ.get(variable, "")
            if not value:
                if spec.metadata.get("required") and spec.name not in options:
                    values[spec.name] = ""  # the config's check would name the option alone
                    missing.append(spec.name)
                    problems.append(f"{variable} is required")
                continue
            try:
                values[spec.name] = parse(value)
            except ValueError as exc:
                problems.append(f"{variable} ({spec.name}) {exc}")
        known = set(variables) | {prefix + name for name in ignore}
        others = tuple(p for p in PRODUCT_PREFIXES if p != prefix and p.startswith(prefix))
        for variable in sorted(environ):
            ours = variable.startswith(prefix) and not variable.startswith(others)
            if ours and variable not in known:
                problems.append(unknown(cls, variable, "variable", sorted(variables)))
        try:
            backend = _redis_backend(cls, prefix, environ)
        except ValueError as exc:
            problems.append(str(exc))
            backend = None
        if backend is not None:
            values["backend"] = backend
        try:
            config = cls(**{**values, **options})
        except InvalidConfig as exc:
            problems += [p for p in exc.problems if p not in _required_messages(missing)]
        if problems:
            raise InvalidConfig(problems)
        return config


def unknown(cls: type[Options], name: str, what: str, known: Iterable[str] | None = None) -> str:
    """``unknown option `x` for Config: did you mean `y`?``, or the known names when none is
    close."""
    names = sorted(_names(cls) if known is None else known)
    close = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
    said = f"unknown {what} `{name}` for {cls.__name__}"
    if close:
        meant = next(n for n in names if n.lower() == close[0])
        return f"{said}: did you mean `{meant}`?"
    return f"{said} (known: {', '.join(names)})"


def keyword_problems(signature: inspect.Signature, config: type[Options]) -> list[str]:
    """How a middleware constructor's keywords differ from ``config``'s options: each option
    a keyword-only parameter, with the option's default (``""`` for a credential)."""
    keywords = {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    problems = [f"no keyword for option {name!r}" for name in _names(config) - set(keywords)]
    problems += [f"keyword {name!r} is no option" for name in set(keywords) - _names(config)]
    for spec in dataclasses.fields(config):
        if spec.name in keywords and keywords[spec.name] != _default(spec):
            problems.append(f"keyword {spec.name!r} defaults to another value than the option")
    return sorted(problems)


def _default(spec: dataclasses.Field[Any]) -> object:
    """An option's default; a credential's is empty (the keyword form's "not given")."""
    return "" if spec.default is dataclasses.MISSING else spec.default


def _names(cls: type[Options]) -> frozenset[str]:
    return frozenset(spec.name for spec in dataclasses.fields(cls))


def _ordered(cls: type[Options]) -> list[dataclasses.Field[Any]]:
    """The credentials (secret last of them), then the rest in their declared order."""

    def rank(spec: dataclasses.Field[Any]) -> tuple[int, bool]:
        if spec.metadata.get("required"):
            return 0, bool(spec.metadata.get("secret"))
        return 1, False

    return sorted(dataclasses.fields(cls), key=rank)


def _required_messages(names: Iterable[str]) -> set[str]:
    return {f"{name} is required" for name in names}


def _redis_backend(cls: type[Options], prefix: str, environ: Mapping[str, str]) -> Backend | None:
    """A ``RedisBackend`` when ``{prefix}REDIS_URL`` is set (needs the ``redis`` extra)."""
    url = environ.get(prefix + "REDIS_URL", "")
    if not url:
        return None
    options: dict[str, Any] = {}
    if environ.get(prefix + "REDIS_PREFIX"):
        options["prefix"] = environ[prefix + "REDIS_PREFIX"]
    for variable, name in (
        ("LEASE_TTL", "lease_ttl"),
        ("REDIS_TIMEOUT", "redis_timeout"),
        ("REDIS_FAILOVER_TIMEOUT", "failover_timeout"),
    ):
        if environ.get(prefix + variable):
            try:
                options[name] = float(environ[prefix + variable])
            except ValueError:
                raise ValueError(f"{prefix}{variable} must be a number of seconds") from None
    for variable, name in (
        ("REDIS_MAX_CONNECTIONS", "max_connections"),
        ("REDIS_MAX_QUEUED", "max_queued"),
    ):
        if environ.get(prefix + variable):
            try:
                options[name] = int(environ[prefix + variable])
            except ValueError:
                raise ValueError(f"{prefix}{variable} must be a whole number") from None
    if environ.get(prefix + "REDIS_CLUSTER"):
        try:
            options["cluster"] = boolean(environ[prefix + "REDIS_CLUSTER"])
        except ValueError as exc:
            raise ValueError(f"{prefix}REDIS_CLUSTER {exc}") from None
    try:
        return cls._backend(url, **options)
    except ImportError:
        raise ValueError(
            f"{prefix}REDIS_URL needs the redis extra: pip install 'asgi-wechat-oauth[redis]'"
        ) from None


# --- products with a callback and a login page --------------------------------------------------


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
    def state_key(self) -> bytes:
        """The key states are signed with: ``state_secret``, else one derived from the
        secret (never the secret itself)."""
        if self.state_secret is None:
            return derive_state_secret(self.secret)
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
