"""``python -m asgi_wechat_oauth``: the demo, the WeChat emulator as a server, and ``check``.

The demo and the emulator need uvicorn (and the demo rich), optional dependencies (``pip install
'asgi-wechat-oauth[demo]'``); they are checked before anything imports them so that a missing
install gets a clear message, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from .testing import WeChatEmulator

UVICORN_MISSING = (
    "This command needs uvicorn, which is not installed.\n"
    "Install it with: pip install 'asgi-wechat-oauth[demo]'"
)
RICH_MISSING = (
    "The demo needs rich, which is not installed.\n"
    "Install it with: pip install 'asgi-wechat-oauth[demo]'"
)


def uvicorn_available() -> bool:
    return importlib.util.find_spec("uvicorn") is not None


def rich_available() -> bool:
    return importlib.util.find_spec("rich") is not None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asgi_wechat_oauth",
        description=(
            "Show the WeChat duplicate-callback problem, run the WeChat emulator, or check a "
            "configuration."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="log in many times like the WeChat browser, with a naive handler and the middleware",
        description=(
            "Start the WeChat emulator and a small app on loopback ports, log in --logins times "
            "the way the WeChat in-app browser does (the callback sent twice with one code), "
            "first against a naive handler and then through the middleware, and compare. "
            "Exits 0 when the middleware showed no errors and traded each code once."
        ),
    )
    demo.add_argument("--logins", type=positive_int, default=100, help="logins per mode (100)")
    demo.add_argument(
        "--latency", type=seconds, default=0.08, help="WeChat's answer time, seconds (0.08)"
    )
    demo.add_argument(
        "--gap", type=seconds, default=0.019, help="seconds between the two callbacks (0.019)"
    )
    demo.add_argument(
        "--concurrency", type=positive_int, default=20, help="logins in progress at once (20)"
    )

    emulator = commands.add_parser(
        "emulator",
        help="serve the WeChat OAuth emulator",
        description=(
            "Serve WeChat's web OAuth endpoints (connect/oauth2/authorize, sns/oauth2/access_token,"
            " sns/userinfo, ...) for local development. Point the middleware's api_base_url at it."
        ),
    )
    emulator.add_argument("--host", default="127.0.0.1", help="interface (127.0.0.1)")
    emulator.add_argument("--port", type=port, default=8900, help="port (8900)")
    emulator.add_argument(
        "--latency", type=seconds, default=0.0, help="delay of every sns/* answer, seconds (0)"
    )
    emulator.add_argument("--appid", default=WeChatEmulator.appid, help="the appid it accepts")
    emulator.add_argument("--secret", default=WeChatEmulator.secret, help="the secret it accepts")
    emulator.add_argument(
        "--double-navigation",
        action="store_true",
        help="make the consent page send the callback twice, as the WeChat browser does",
    )

    check = commands.add_parser(
        "check",
        help="print and validate every product's configuration (--online: try it for real)",
        description=(
            "Print the effective configuration of every product found (the secrets masked) and "
            "validate it: the web flow, WeCom, the mini-program, token keepers. Reads the "
            "environment (WECHAT_*, WECOM_*, WECHAT_MINIPROGRAM_*: whichever are set), or with "
            "--app the middlewares in an app (and the token keepers its module holds). "
            "--online also tries each product's credentials once (a made-up code, a corp token, "
            "a token fetch: no user needed) and pings each Redis backend. Exit 0 when all is "
            "well, 1 when --online found a problem, 2 when a configuration is invalid or the app "
            "cannot be loaded."
        ),
    )
    check.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="the ASGI app to inspect, as uvicorn takes it (e.g. main:app)",
    )
    check.add_argument(
        "--prefix",
        action="append",
        default=[],
        metavar="[PRODUCT=]PREFIX",
        help=(
            "read a product's variables under another prefix (wecom=CORP_); a bare PREFIX is "
            "the web flow's (default WECHAT_)"
        ),
    )
    check.add_argument(
        "--online", action="store_true", help="ask WeChat, WeCom (and Redis) whether it all works"
    )
    return parser


def run_check(args: argparse.Namespace) -> int:
    import anyio

    from ._check import run

    return anyio.run(run, args.app, args.prefix, args.online)


def run_demo(args: argparse.Namespace) -> int:
    from ._demo import DemoConfig, main

    config = DemoConfig(
        logins=args.logins, latency=args.latency, gap=args.gap, concurrency=args.concurrency
    )
    return main(config, progress=sys.stderr)


def run_emulator(args: argparse.Namespace) -> int:
    import uvicorn

    emulator = WeChatEmulator(
        appid=args.appid,
        secret=args.secret,
        latency=args.latency,
        double_navigation=args.double_navigation,
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    base_url = f"http://{host}:{args.port}"
    print(
        "WeChat OAuth emulator (for tests and local development only)\n"
        f"  appid:              {emulator.appid}\n"
        f"  secret:             {emulator.secret}\n"
        f"  api_base_url:       {base_url}\n"
        f"  authorize_base_url: {base_url}\n"
        "Use them as WeChatOAuthMiddleware(app, appid=..., secret=..., api_base_url=..., "
        "authorize_base_url=...),\nor in the environment, for WeChatOAuthConfig.from_env() "
        "and the examples:\n"
        f"  export WECHAT_APPID={emulator.appid} WECHAT_SECRET={emulator.secret} "
        f"WECHAT_API_BASE_URL={base_url} WECHAT_AUTHORIZE_BASE_URL={base_url}\n"
        "A third-party platform (PlatformOAuthMiddleware, WECHAT_PLATFORM_*):\n"
        f"  component_appid:    {emulator.component_appid}\n"
        f"  component_secret:   {emulator.component_secret}\n"
        f"  token:              {emulator.component_token}\n"
        f"  encoding_aes_key:   {emulator.component_encoding_aes_key}\n"
        f"  authorizers:        {', '.join(emulator.authorizer_appids)}\n"
        "  push a ticket to the platform's ticket_path, as WeChat does every 10 minutes:\n"
        f"  curl -X POST '{base_url}/_emulator/push_ticket?url=http://127.0.0.1:8000"
        "/wechat/platform/ticket'",
        flush=True,
    )
    # No access log: request lines carry codes and the secret, even the emulator's.
    uvicorn.run(emulator, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return run_check(args)
    if not uvicorn_available():
        print(UVICORN_MISSING, file=sys.stderr)
        return 2
    if args.command == "demo" and not rich_available():
        print(RICH_MISSING, file=sys.stderr)
        return 2
    try:
        return run_demo(args) if args.command == "demo" else run_emulator(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
