"""``python -m asgi_wechat_oauth check``: the effective configuration, validated, and with
``--online`` the credentials and the Redis backend tried for real."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from .._core.asgi import inner_app
from ..errors import InvalidConfig, WeChatOAuthError
from ._client import WeChatOAuthClient
from ._config import WeChatOAuthConfig
from ._middleware import WeChatOAuthMiddleware

#: A code no user was ever given: WeChat's answer to it tells whether appid and secret work.
PROBE_CODE = "asgi-wechat-oauth-check-invalid-code"
#: How a probe's message starts when WeChat did not answer at all.
_NO_ANSWER = "could not ask WeChat"
#: How far a chain of wrapped apps is followed.
_MAX_DEPTH = 64


def load_app(target: str) -> object:
    """``module:attr`` (``attr`` may be dotted; default ``app``), imported from the current
    directory as uvicorn does."""
    module_name, _, attribute = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    node: object = importlib.import_module(module_name)
    for name in (attribute or "app").split("."):
        node = getattr(node, name)
    return node


def find_configs(app: object) -> Iterator[WeChatOAuthConfig]:
    """The config of every :class:`WeChatOAuthMiddleware` in ``app``, outermost first.

    Follows what wraps what: a middleware's ``app`` attribute (the middleware itself, Starlette's
    and most others), Quart's replaced ``asgi_app``, and Starlette's and FastAPI's middleware:
    the built ``middleware_stack`` once the app has started, else ``user_middleware`` (what
    ``add_middleware`` recorded), whose options are validated here as the first request would.
    Mounted sub-applications and routes are not searched. Raises :class:`InvalidConfig` for
    options ``add_middleware`` was given that would fail at start-up.
    """
    node: object | None = app
    for _ in range(_MAX_DEPTH):
        if node is None:
            return
        if isinstance(node, WeChatOAuthMiddleware):
            yield node.config
        if getattr(node, "middleware_stack", False) is None:
            # A Starlette app that has not started: read what it will build.
            for middleware in getattr(node, "user_middleware", ()):
                if isinstance(middleware.cls, type) and issubclass(
                    middleware.cls, WeChatOAuthMiddleware
                ):
                    yield _config_of(middleware.kwargs)
            node = getattr(node, "router", None)
            continue
        node = inner_app(node)


def _config_of(options: dict[str, object]) -> WeChatOAuthConfig:
    config = options.get("config")
    if isinstance(config, WeChatOAuthConfig):
        return config
    return WeChatOAuthConfig(**options)  # type: ignore[arg-type]


async def probe_credentials(config: WeChatOAuthConfig) -> list[tuple[bool, str]]:
    """Each app's appid and secret (the official account's; the website app's when there is
    one), tried on WeChat with a code that cannot exist: no user is needed."""
    ok, message = await probe_app(config.appid, config.secret, config.api_base_url)
    probes = [(ok, message)]
    # Not when WeChat did not answer at all: the same host, the same problem, another wait.
    if config.website_appid and config.website_secret and not message.startswith(_NO_ANSWER):
        ok, message = await probe_app(
            config.website_appid, config.website_secret, config.api_base_url
        )
        probes.append((ok, f"website app: {message}"))
    return probes


async def probe_app(appid: str, secret: str, api_base_url: str) -> tuple[bool, str]:
    """Trade a code that cannot exist with ``appid`` and read WeChat's answer."""
    async with WeChatOAuthClient(appid, secret, api_base_url=api_base_url, timeout=10.0) as client:
        try:
            await client.exchange_code(PROBE_CODE)
        except WeChatOAuthError as exc:
            if exc.errcode == 40029:
                return True, "appid and secret accepted (WeChat answered 40029 to a made-up code)"
            if exc.errcode == 40013:
                return False, "the appid is wrong (WeChat answered 40013, invalid appid)"
            if exc.errcode == 40125:
                return False, "the secret is wrong (WeChat answered 40125, invalid appsecret)"
            if exc.errcode is None:
                return False, f"{_NO_ANSWER} at {api_base_url}: {exc.reason}"
            return False, f"WeChat answered errcode {exc.errcode}: {exc.message}"
    return False, "WeChat traded a made-up code: api_base_url does not look like WeChat"


async def probe_backend(config: WeChatOAuthConfig) -> tuple[bool, str] | None:
    """PING the Redis backend, when one is configured."""
    try:
        from ..backends.redis import RedisBackend
    except ImportError:
        return None
    backend = config.backend
    if not isinstance(backend, RedisBackend):
        return None
    try:
        await backend.ping()
    except Exception as exc:
        return False, f"Redis did not answer PING: {type(exc).__name__}"
    finally:
        await backend.aclose()
    return True, "Redis answered PING"


def show(config: WeChatOAuthConfig, out: TextIO) -> None:
    options = config.summary()
    options["verify_state"] = config.resolved_verify_state
    options["on_invalid_code"] = config.resolved_on_invalid_code
    width = max(len(name) for name in options)
    for name, value in options.items():
        print(f"  {name:<{width}}  {value!r}", file=out)


async def run(app: str | None, prefix: str, online: bool, out: TextIO) -> int:
    """Print and check; the exit status: 0 when all is well, 1 with every problem listed."""
    try:
        if app is None:
            configs = [WeChatOAuthConfig.from_env(prefix)]
            where = f"the environment ({prefix}*)"
        else:
            configs = list(find_configs(load_app(app)))
            where = app
    except InvalidConfig as exc:
        print(f"Invalid configuration in {app or f'the environment ({prefix}*)'}:", file=out)
        for problem in exc.problems:
            print(f"  - {problem}", file=out)
        return 1
    if not configs:
        print(f"No WeChatOAuthMiddleware found in {where}.", file=out)
        return 1
    problems = 0
    for config in configs:
        print(f"WeChatOAuthMiddleware configuration ({where}):", file=out)
        show(config, out)
        if not online:
            continue
        probes = await probe_credentials(config)
        backend = await probe_backend(config)
        for ok, message in probes if backend is None else [*probes, backend]:
            problems += not ok
            print(f"{'ok' if ok else 'PROBLEM'}: {message}", file=out)
    print("OK" if not problems else f"{problems} problem(s)", file=out)
    return 1 if problems else 0
