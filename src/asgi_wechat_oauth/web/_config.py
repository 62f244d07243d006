"""Every option of the middleware in one frozen, validated object.

Built (and so checked) where it is written: at import time, or from the environment with
:meth:`WeChatOAuthConfig.from_env`. Starlette builds ``app.add_middleware(...)`` lazily, at the
first lifespan or request event, so a bad option passed there only fails once the server runs;
a config object made at import fails at import.

Adding an option: one field here (with ``metadata=_env(parser)`` if it can come from the
environment, and its check in ``_problems``), plus the same keyword in the middleware's
constructor.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

from .._core.apiclient import DEFAULT_API_BASE_URL
from .._core.cookies import check_cookie_name
from .._core.counters import Counters
from .._core.loops import check_loop_options
from .._core.pages import DEFAULT_ERROR_PAGES, ErrorPages
from ..backends import Backend, check_lease
from ..errors import InvalidConfig
from ._authorize import DEFAULT_AUTHORIZE_BASE_URL, OFFICIAL_ACCOUNT_SCOPES, SCOPES

if TYPE_CHECKING:
    from .._core.asgi import ASGIApp, Scope
    from ..errors import WeChatOAuthError

    OnError = Callable[[Scope, WeChatOAuthError], ASGIApp | None]
else:
    OnError = Callable[..., Any]

#: The scope a login asks for when the link names none.
WeChatScope = Literal["snsapi_base", "snsapi_userinfo", "snsapi_login"]
#: What a callback with an unusable code answers.
InvalidCodeAction = Literal["reauthorize", "error"]
#: What happens to identities of users in WeChat's snapshot-page mode.
SnapshotPolicy = Literal["allow", "reject"]

#: Options that hold secrets: shown masked.
_SECRETS = frozenset({"secret", "state_secret", "website_secret"})
#: Variables ``from_env`` reads besides the options: the Redis backend.
_REDIS_VARIABLES = ("REDIS_URL", "REDIS_PREFIX", "LEASE_TTL", "REDIS_CLUSTER", "REDIS_TIMEOUT")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def _env(parse: Callable[[str], object]) -> dict[str, Callable[[str], object]]:
    """Field metadata: the option can be set from the environment, parsed by ``parse``."""
    return {"env": parse}


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "off") else int(text)


_STR = _env(str)
_FLOAT = _env(float)
_BOOL = _env(_bool)


@dataclass(frozen=True, kw_only=True)
class WeChatOAuthConfig:
    """The options of :class:`WeChatOAuthMiddleware`, validated on construction.

    ``WeChatOAuthMiddleware(app, config=config)`` and ``WeChatOAuthMiddleware(app, **options)``
    build the same middleware. Invalid options raise :class:`ValueError` naming each bad
    option. ``repr`` masks the secrets. ``dataclasses.replace(config, ...)`` validates again.
    """

    appid: str = field(metadata=_STR)
    secret: str = field(metadata=_STR)
    callback_path: str = field(default="/wechat/callback", metadata=_STR)
    backend: Backend | None = None
    api_base_url: str = field(default=DEFAULT_API_BASE_URL, metadata=_STR)
    fetch_profile: bool | None = field(default=None, metadata=_BOOL)
    result_ttl: float = field(default=120.0, metadata=_FLOAT)
    exchange_timeout: float = field(default=10.0, metadata=_FLOAT)
    http_client: httpx.AsyncClient | None = None
    on_error: OnError | None = None
    login_path: str | None = field(default=None, metadata=_STR)
    redirect_uri: str | None = field(default=None, metadata=_STR)
    default_scope: WeChatScope = field(default="snsapi_base", metadata=_STR)
    trust_forwarded: bool = field(default=False, metadata=_BOOL)
    state_secret: str | bytes | None = field(default=None, metadata=_STR)
    verify_state: bool | None = field(default=None, metadata=_BOOL)
    state_max_age: float = field(default=600.0, metadata=_FLOAT)
    max_codes_per_state: int = field(default=3, metadata=_env(int))
    authorize_base_url: str = field(default=DEFAULT_AUTHORIZE_BASE_URL, metadata=_STR)
    nonce_cookie: str = field(default="wechat_oauth_nonce", metadata=_STR)
    connect_redirect: bool = field(default=True, metadata=_BOOL)
    on_invalid_code: InvalidCodeAction | None = field(default=None, metadata=_STR)
    snapshot_users: SnapshotPolicy = field(default="allow", metadata=_STR)
    counters: Counters | None = None
    error_pages: ErrorPages | None = DEFAULT_ERROR_PAGES
    login_loop_limit: int | None = field(default=5, metadata=_env(_optional_int))
    login_loop_window: float = field(default=120.0, metadata=_FLOAT)
    #: A website app (QR login) beside the official account ``appid``: browsers other than
    #: WeChat's log in with it. Both or neither.
    website_appid: str | None = field(default=None, metadata=_STR)
    website_secret: str | None = field(default=None, metadata=_STR)

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise InvalidConfig(problems)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.summary().items())
        return f"WeChatOAuthConfig({shown})"

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

    def summary(self) -> dict[str, object]:
        """Every option, secrets masked: what ``repr`` and ``python -m asgi_wechat_oauth check``
        show."""
        shown: dict[str, object] = {}
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            shown[option.name] = "********" if option.name in _SECRETS and value else value
        return shown

    @classmethod
    def from_env(
        cls,
        prefix: str = "WECHAT_",
        environ: Mapping[str, str] | None = None,
        *,
        ignore: Iterable[str] = (),
        **options: Any,
    ) -> WeChatOAuthConfig:
        """The options from environment variables: ``{prefix}{OPTION}`` for each option that
        is text, a number or a boolean (``WECHAT_APPID``, ``WECHAT_SECRET``,
        ``WECHAT_LOGIN_PATH``, ``WECHAT_EXCHANGE_TIMEOUT``, ...; booleans as true/false, 1/0,
        yes/no, on/off; an empty variable counts as unset). ``{prefix}REDIS_URL`` (with
        ``REDIS_PREFIX`` and ``LEASE_TTL``) makes a ``RedisBackend``. Any other variable under
        ``prefix`` is an error that names it, unless listed in ``ignore`` (your app's own).
        ``options`` are passed as they are and win over the environment (``http_client``,
        ``on_error``, ...)."""
        environ = os.environ if environ is None else environ
        problems: list[str] = []
        values: dict[str, Any] = {}
        known = {prefix + name for name in _REDIS_VARIABLES} | {prefix + name for name in ignore}
        for option in dataclasses.fields(cls):
            parse = option.metadata.get("env")
            if parse is None:
                continue
            variable = prefix + option.name.upper()
            known.add(variable)
            text = environ.get(variable, "")
            if not text:
                if option.default is dataclasses.MISSING:
                    values[option.name] = ""  # required: validation names it
                continue
            try:
                values[option.name] = parse(text)
            except ValueError as exc:
                reason = str(exc) if parse is _bool else f"must be a number, got {text!r}"
                problems.append(f"{variable} ({option.name}) {reason}")
        unknown = sorted(name for name in environ if name.startswith(prefix) and name not in known)
        if unknown:
            problems.append(
                f"unknown variable(s) {', '.join(unknown)}: not an option of WeChatOAuthConfig "
                f"(known: {', '.join(sorted(known))})"
            )
        try:
            backend = _redis_backend(prefix, environ)
        except ValueError as exc:
            problems.append(str(exc))
            backend = None
        if backend is not None:
            values["backend"] = backend
        try:
            config = cls(**{**values, **options})
        except InvalidConfig as exc:
            problems += exc.problems
        if problems:
            raise InvalidConfig(problems)
        return config

    def _problems(self) -> list[str]:
        problems: list[str] = []

        def check(ok: object, message: str) -> None:
            if not ok:
                problems.append(message)

        check(self.appid, "appid is required")
        check(self.secret, "secret is required")
        check(
            _is_path(self.callback_path),
            f"callback_path must be a path starting with '/', got {self.callback_path!r}",
        )
        if self.login_path is not None:
            check(
                _is_path(self.login_path),
                f"login_path must be a path starting with '/', got {self.login_path!r}",
            )
            check(
                self.login_path.rstrip("/") != self.callback_path.rstrip("/"),
                "login_path must differ from callback_path",
            )
        # Written so that NaN fails too (every comparison with it is false).
        check(
            _number(self.result_ttl) and 0 <= self.result_ttl < math.inf,
            "result_ttl must not be negative (and finite)",
        )
        check(
            _number(self.exchange_timeout) and 0 < self.exchange_timeout < math.inf,
            "exchange_timeout must be positive (and finite)",
        )
        check(
            # States carry their issue time in whole seconds: under a second, one may be
            # expired as it is issued (and a cookie's whole-second Max-Age would be 0).
            _number(self.state_max_age) and 1 <= self.state_max_age < math.inf,
            "state_max_age must be at least 1 second (and finite)",
        )
        check(
            _number(self.max_codes_per_state)
            and isinstance(self.max_codes_per_state, int)
            and self.max_codes_per_state >= 1,
            "max_codes_per_state must be an int of at least 1",
        )
        check(
            not (self.verify_state and self.login_path is None),
            "verify_state needs login_path: the login endpoint sets the cookie",
        )
        check(
            self.default_scope in SCOPES,
            f"default_scope must be one of {sorted(SCOPES)}, got {self.default_scope!r}",
        )
        check(
            self.redirect_uri is None or _is_url(self.redirect_uri),
            "redirect_uri must be an absolute http(s) URL",
        )
        check(_is_url(self.api_base_url), "api_base_url must be an absolute http(s) URL")
        check(
            _is_url(self.authorize_base_url), "authorize_base_url must be an absolute http(s) URL"
        )
        cookie_problem = check_cookie_name("nonce_cookie", self.nonce_cookie)
        check(cookie_problem is None, cookie_problem or "")
        check(
            self.on_invalid_code in (None, "reauthorize", "error"),
            "on_invalid_code must be 'reauthorize' or 'error'",
        )
        check(
            not (self.on_invalid_code == "reauthorize" and self.login_path is None),
            "on_invalid_code='reauthorize' needs login_path",
        )
        check(
            self.snapshot_users in ("allow", "reject"),
            "snapshot_users must be 'allow' or 'reject'",
        )
        check(
            self.error_pages is None or isinstance(self.error_pages, ErrorPages),
            "error_pages must be an ErrorPages or None",
        )
        try:
            check_loop_options(self.login_loop_limit, self.login_loop_window)
        except ValueError as exc:
            problems.append(str(exc))
        if self.backend is not None and _number(self.exchange_timeout):
            try:
                check_lease(self.backend, self.exchange_timeout, "exchange_timeout")
            except ValueError as exc:
                problems.append(str(exc))
        state_secret = self.state_secret
        if isinstance(state_secret, str):
            state_secret = state_secret.encode()
        check(
            state_secret is None or len(state_secret) >= 16,
            "state_secret must be at least 16 bytes",
        )
        problems += self._website_app_problems()
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


def _is_path(path: object) -> bool:
    return isinstance(path, str) and path.startswith("/") and not path.startswith("//")


def _is_url(url: object) -> bool:
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return False
    host = url.split("://", 1)[1].split("/", 1)[0]
    return bool(host) and url.isprintable() and " " not in url


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _redis_backend(prefix: str, environ: Mapping[str, str]) -> Backend | None:
    """A ``RedisBackend`` when ``{prefix}REDIS_URL`` is set (needs the ``redis`` extra)."""
    url = environ.get(prefix + "REDIS_URL", "")
    if not url:
        return None
    options: dict[str, Any] = {}
    if environ.get(prefix + "REDIS_PREFIX"):
        options["prefix"] = environ[prefix + "REDIS_PREFIX"]
    for variable, option in (("LEASE_TTL", "lease_ttl"), ("REDIS_TIMEOUT", "redis_timeout")):
        if environ.get(prefix + variable):
            try:
                options[option] = float(environ[prefix + variable])
            except ValueError:
                raise ValueError(f"{prefix}{variable} must be a number of seconds") from None
    if environ.get(prefix + "REDIS_CLUSTER"):
        options["cluster"] = _bool(environ[prefix + "REDIS_CLUSTER"])
    try:
        from ..backends.redis import RedisBackend
    except ImportError:
        raise ValueError(
            f"{prefix}REDIS_URL needs the redis extra: pip install 'asgi-wechat-oauth[redis]'"
        ) from None
    return RedisBackend(url, **options)
