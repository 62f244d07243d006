"""One options base for every product: each option one field, in one place.

A product's config is a frozen dataclass that extends :class:`Options` (or :class:`OAuthOptions`,
for products with a callback and a login page). Each option is a field whose metadata
(:func:`option`) says how the environment spells it, how it is checked and whether it is a
secret; so the config is validated where it is written, masks its secrets in ``repr``, reads
the environment (:meth:`Options.from_env`) and refuses a misspelt name with the name meant,
the same way, with the same messages, in every product. Checks that involve several options
go in ``_problems``.

The core imports no backend: each product says, in ``_backend``, what ``backend=None`` and a
``{prefix}REDIS_URL`` variable make.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard, TypeVar

import httpx

from ..errors import InvalidConfig
from .apiclient import DEFAULT_API_BASE_URL
from .contract import Backend, check_lease
from .cookies import check_cookie_name
from .counters import Counters
from .pages import DEFAULT_ERROR_PAGES, ErrorPages
from .state import derive_state_secret

if TYPE_CHECKING:
    from ..errors import WeChatOAuthError
    from .asgi import ASGIApp, Scope

    OnError = Callable[[Scope, WeChatOAuthError], ASGIApp | None]
else:
    OnError = Callable[..., Any]

#: The problem with ``value`` given as option ``name``, or None.
Check = Callable[[str, Any], "str | None"]
#: Reads an option from an environment variable (``ValueError`` saying what it must be).
Parse = Callable[[str], object]
#: What an unusable code gets at the callback.
InvalidCodeAction = Literal["reauthorize", "error"]

_O = TypeVar("_O", bound="Options")
MASK = "********"
#: The variables ``from_env`` reads besides the options: the Redis backend.
REDIS_VARIABLES = ("REDIS_URL", "REDIS_PREFIX", "LEASE_TTL", "REDIS_CLUSTER", "REDIS_TIMEOUT")
#: Every product's default prefix: one product's ``from_env`` leaves the variables under a
#: longer one alone (``WECHAT_MINIPROGRAM_APPID`` is not a misspelt ``WECHAT_`` option).
PRODUCT_PREFIXES = ("WECHAT_", "WECHAT_MINIPROGRAM_", "WECOM_")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


# --- reading the environment ------------------------------------------------------------------


def text(value: str) -> str:
    return value


def number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"must be a number, got {value!r}") from None


def integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be a whole number, got {value!r}") from None


def optional_integer(value: str) -> int | None:
    return None if value.lower() in ("none", "off") else integer(value)


def boolean(value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


# --- checks: each says what is wrong, naming the option -----------------------------------------


def _finite(value: object) -> TypeGuard[float]:
    # Written so that NaN fails (every comparison with it is false); bools are not numbers here.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return -math.inf < value < math.inf


def is_path(name: str, value: object) -> str | None:
    """A path of this site: one leading ``/`` (``//host`` is another site), no query or
    fragment (the path is matched as it is, never with a query)."""
    if (
        isinstance(value, str)
        and value.startswith("/")
        and not value.startswith("//")
        and not any(mark in value for mark in "?#")
    ):
        return None
    return (
        f"{name} must be a path starting with '/' (not '//'), with no query or fragment, "
        f"got {value!r}"
    )


def is_url(name: str, value: object) -> str | None:
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        host = value.split("://", 1)[1].split("/", 1)[0]
        if host and value.isprintable() and " " not in value:
            return None
    return f"{name} must be an absolute http(s) URL"


def non_negative(name: str, value: object) -> str | None:
    return None if _finite(value) and value >= 0 else f"{name} must not be negative (and finite)"


def positive(name: str, value: object) -> str | None:
    return None if _finite(value) and value > 0 else f"{name} must be positive (and finite)"


def at_least_a_second(name: str, value: object) -> str | None:
    # States carry their issue time in whole seconds: under a second, one may be expired as it
    # is issued (and a cookie's whole-second Max-Age would be 0).
    if _finite(value) and value >= 1:
        return None
    return f"{name} must be at least 1 second (and finite)"


def whole_at_least(minimum: int, *, or_none: bool = False) -> Check:
    def check(name: str, value: object) -> str | None:
        if or_none and value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return None
        return f"{name} must be an int of at least {minimum}" + (", or None" if or_none else "")

    return check


def one_of(*choices: str) -> Check:
    said = " or ".join(map(repr, choices)) if len(choices) <= 2 else f"one of {sorted(choices)}"

    def check(name: str, value: object) -> str | None:
        return None if value in choices else f"{name} must be {said}, got {value!r}"

    return check


def cookie_name(name: str, value: object) -> str | None:
    return check_cookie_name(name, value)


def long_secret(name: str, value: object) -> str | None:
    raw = value.encode() if isinstance(value, str) else value
    if isinstance(raw, bytes) and len(raw) >= 16:
        return None
    return f"{name} must be at least 16 bytes"


def error_pages(name: str, value: object) -> str | None:
    if value is None or isinstance(value, ErrorPages):
        return None
    return f"{name} must be an ErrorPages or None"


def option(
    env: Parse | None = None, check: Check | None = None, *, secret: bool = False
) -> dict[str, Any]:
    """A field's metadata: read from ``{prefix}{NAME}`` with ``env`` (None: not from the
    environment), checked by ``check`` (skipped for ``None`` when ``None`` is the default),
    shown masked when ``secret``."""
    return {"env": env, "check": check, "secret": secret}


def default(cls: type[Options], name: str, value: object) -> Any:
    """Option ``name`` of ``cls`` with another default, its metadata (checks, environment)
    kept: for a product whose default differs."""
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    return field(default=value, metadata=metadata)


def required(*, secret: bool = False) -> dict[str, Any]:
    """A credential: text that must not be empty ("appid is required")."""
    return {"env": text, "check": None, "secret": secret, "required": True}


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

    secret: str = field(metadata=required(secret=True))
    backend: Backend | None = None
    api_base_url: str = field(default=DEFAULT_API_BASE_URL, metadata=option(text, is_url))
    result_ttl: float = field(default=120.0, metadata=option(number, non_negative))
    exchange_timeout: float = field(default=10.0, metadata=option(number, positive))
    http_client: httpx.AsyncClient | None = None
    counters: Counters | None = None

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
        for option in _ordered(type(self)):
            value = getattr(self, option.name)
            shown[option.name] = MASK if option.metadata.get("secret") and value else value
        return shown

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
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            check = option.metadata.get("check")
            if option.metadata.get("required"):
                if not value:
                    problems.append(f"{option.name} is required")
                elif not isinstance(value, str):
                    problems.append(f"{option.name} must be text, got {type(value).__name__}")
            elif check is not None and not (value is None and option.default is None):
                problem = check(option.name, value)
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
        ``LEASE_TTL``, ``REDIS_CLUSTER``, ``REDIS_TIMEOUT``) makes a ``RedisBackend``. Any other
        variable under ``prefix`` is an error that names it and the variable meant, unless
        listed in ``ignore`` (your app's own). ``options`` are passed as they are and win over
        the environment (``http_client``, ``on_error``, ...)."""
        prefix = cls.env_prefix if prefix is None else prefix
        environ = os.environ if environ is None else environ
        problems: list[str] = []
        values: dict[str, Any] = {}
        missing: list[str] = []
        variables = {prefix + name: name for name in REDIS_VARIABLES}
        for option in _ordered(cls):
            parse = option.metadata.get("env")
            if parse is None:
                continue
            variable = prefix + option.name.upper()
            variables[variable] = option.name
            value = environ.get(variable, "")
            if not value:
                if option.metadata.get("required") and option.name not in options:
                    values[option.name] = ""  # the config's check would name the option alone
                    missing.append(option.name)
                    problems.append(f"{variable} is required")
                continue
            try:
                values[option.name] = parse(value)
            except ValueError as exc:
                problems.append(f"{variable} ({option.name}) {exc}")
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


def _names(cls: type[Options]) -> frozenset[str]:
    return frozenset(option.name for option in dataclasses.fields(cls))


def _ordered(cls: type[Options]) -> list[dataclasses.Field[Any]]:
    """The credentials (secret last of them), then the rest in their declared order."""

    def rank(option: dataclasses.Field[Any]) -> tuple[int, bool]:
        if option.metadata.get("required"):
            return 0, bool(option.metadata.get("secret"))
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
    for variable, name in (("LEASE_TTL", "lease_ttl"), ("REDIS_TIMEOUT", "redis_timeout")):
        if environ.get(prefix + variable):
            try:
                options[name] = float(environ[prefix + variable])
            except ValueError:
                raise ValueError(f"{prefix}{variable} must be a number of seconds") from None
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

    callback_path: str = field(default="/wechat/callback", metadata=option(text, is_path))
    login_path: str | None = field(default=None, metadata=option(text, is_path))
    redirect_uri: str | None = field(default=None, metadata=option(text, is_url))
    default_scope: str = field(default="snsapi_base", metadata=option(text))
    trust_forwarded: bool = field(default=False, metadata=option(boolean))
    state_secret: str | bytes | None = field(
        default=None, metadata=option(text, long_secret, secret=True)
    )
    verify_state: bool | None = field(default=None, metadata=option(boolean))
    state_max_age: float = field(default=600.0, metadata=option(number, at_least_a_second))
    max_codes_per_state: int = field(default=3, metadata=option(integer, whole_at_least(1)))
    authorize_base_url: str = field(
        default="https://open.weixin.qq.com", metadata=option(text, is_url)
    )
    nonce_cookie: str = field(default="wechat_oauth_nonce", metadata=option(text, cookie_name))
    on_invalid_code: InvalidCodeAction | None = field(
        default=None, metadata=option(text, one_of("reauthorize", "error"))
    )
    on_error: OnError | None = None
    error_pages: ErrorPages | None = field(
        default=DEFAULT_ERROR_PAGES, metadata=option(None, error_pages)
    )
    login_loop_limit: int | None = field(
        default=5, metadata=option(optional_integer, whole_at_least(2, or_none=True))
    )
    login_loop_window: float = field(default=120.0, metadata=option(number, positive))

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
        return problems
