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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import httpx

from ..errors import InvalidConfig
from .apiclient import DEFAULT_API_BASE_URL
from .checks import (
    boolean,
    is_url,
    non_negative,
    number,
    option,
    positive,
    required,
    text,
)
from .contract import Backend, check_lease
from .counters import Counters

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
PRODUCT_PREFIXES = ("WECHAT_", "WECHAT_MINIPROGRAM_", "WECHAT_PLATFORM_", "WECOM_")


def default(cls: type[Options], name: str, value: object) -> Any:
    """Option ``name`` of ``cls`` with another default, its metadata (checks, environment)
    kept: for a product whose default differs."""
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    return field(default=value, metadata=metadata)


def app_secret() -> Any:
    """The ``secret`` option of a product whose app has one (AppSecret, WeCom's app secret)."""
    return field(
        default="",
        metadata=required(secret=True)
        | {
            "doc": "The app's secret (AppSecret). Never logged, never in an error message.",
            "doc_zh": "应用的密钥（AppSecret）。不会出现在日志和错误信息里。",
        },
    )


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
        for spec in _ordered(type(self)):
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
