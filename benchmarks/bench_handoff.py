"""A desktop handoff's poll against a pass-through request (issue 30).

The desktop page of a site without a website app polls ``login_path?handoff_poll=ID`` every
1.5 s until the phone confirms. In-process ASGI calls (no sockets, no HTTP client) through one
``WeChatOAuthMiddleware`` with a login endpoint, in front of a raw ASGI app that sends a
2-byte answer: ``/hello`` passed through (the baseline), a poll while the handoff waits (202:
two backend look-ups, the confirmation and the handoff) and a poll once confirmed (200 with
the redirect: one look-up). The handoff is made for real first: the desktop's page, the
phone's login through the emulator (in-process), its confirmation. Each round times a batch of
each variant in a rotating order; the table shows the median over rounds of µs per request and
the ratio to a pass-through request (the median of each round's ratio, all in the same run).
On Redis (``--backends memory,redis``; its own redis-server on a free port) each look-up is a
round trip, which is what a poll costs there. A poll never calls WeChat: the script counts
the emulator's calls during the polls.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
from _common import (
    Scope,
    call,
    fmt_ns,
    http_scope,
    maybe_redis,
    median,
    paired_ratio,
    parser,
    redis_rtt_ns,
    redis_wanted,
    rotate,
    run,
    table,
    title,
    verdict,
)

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.testing import WeChatEmulator

LOGIN = "/wechat/login"
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
WECHAT_UA = "Mozilla/5.0 (Linux; Android 14) Mobile MicroMessenger/8.0.47 Language/zh_CN"
HTML = "text/html,*/*;q=0.8"
PASS, WAITING, CONFIRMED = "pass-through /hello", "poll, waiting (202)", "poll, confirmed (200)"


async def raw_app(scope: Scope, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"not found: {pattern}")
    return match.group(1).replace("&amp;", "&")


async def _handoff(client: httpx.AsyncClient) -> tuple[str, str]:
    """A new handoff: its poll URL and the desktop's cookie header."""
    page = await client.get(LOGIN, headers={"user-agent": DESKTOP_UA, "accept": HTML})
    cookie = page.headers["set-cookie"].split(";")[0]
    return _found(r'data-poll-url="([^"]+)"', page.text), cookie


async def _confirmed(
    middleware: Any, emulator: WeChatEmulator, client: httpx.AsyncClient
) -> tuple[str, str]:
    """A handoff the phone confirmed: its poll URL and the desktop's cookie header."""
    page = await client.get(LOGIN, headers={"user-agent": DESKTOP_UA, "accept": HTML})
    cookie = page.headers["set-cookie"].split(";")[0]
    poll = _found(r'data-poll-url="([^"]+)"', page.text)
    link = _found(r'id="wechat-login-link" href="([^"]+)"', page.text)
    phone_headers = {"user-agent": WECHAT_UA, "accept": HTML}
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as phone:
        to_wechat = await phone.get(link, headers=phone_headers)
        async with emulator.http_client() as provider:
            consent = await provider.get(to_wechat.headers["location"].split("#")[0])
        asked = await phone.get(consent.headers["location"], headers=phone_headers)
        action = _found(r'<form method="post" action="([^"]+)"', asked.text)
        csrf = _found(r'name="csrf" value="([^"]+)"', asked.text)
        await phone.post(action, data={"csrf": csrf, "answer": "confirm"}, headers=phone_headers)
    return poll, cookie


def _scope(url: str, cookie: str | None = None) -> Scope:
    path, _, query = url.partition("?")
    scope = http_scope(path, query.encode())
    scope["headers"] = [*scope["headers"], (b"accept", b"application/json")]
    if cookie is not None:
        scope["headers"].append((b"cookie", cookie.encode()))
    return scope


async def measure(backend: str, redis_url: str | None, rounds: int, n: int) -> dict[str, Any]:
    emulator = WeChatEmulator()
    options: dict[str, Any] = {}
    if redis_url is not None:
        from asgi_wechat_oauth.backends.redis import RedisBackend

        options["backend"] = RedisBackend(redis_url, prefix=f"bench-handoff-{time.time_ns()}")
    async with emulator.http_client() as upstream:
        middleware = WeChatOAuthMiddleware(
            raw_app,
            appid=emulator.appid,
            secret=emulator.secret,
            api_base_url=emulator.url,
            authorize_base_url=emulator.url,
            http_client=upstream,
            login_path=LOGIN,
            handoff_ttl=3600,
            **options,
        )
        transport = httpx.ASGITransport(app=middleware)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
                waiting = _scope(*await _handoff(c))
                confirmed = _scope(*await _confirmed(middleware, emulator, c))
            scopes = {PASS: http_scope("/hello"), WAITING: waiting, CONFIRMED: confirmed}
            expected = {PASS: 200, WAITING: 202, CONFIRMED: 200}
            for name, scope in scopes.items():  # warm, and check each answers as it should
                status = (await call(middleware, dict(scope))).status
                if status != expected[name]:
                    raise RuntimeError(f"{name} answered {status}")
            calls_before = sum(emulator.calls.values())
            times: dict[str, list[float]] = {name: [] for name in scopes}
            for round_no in range(rounds):
                for name in rotate(list(scopes), round_no):
                    scope = scopes[name]
                    start = time.perf_counter_ns()
                    for _ in range(n):
                        await call(middleware, dict(scope))
                    times[name].append((time.perf_counter_ns() - start) / n)
            wechat_calls = sum(emulator.calls.values()) - calls_before
            rtt = await redis_rtt_ns(redis_url) if redis_url is not None else None
        finally:
            await middleware.aclose()
    return {"backend": backend, "times": times, "wechat_calls": wechat_calls, "rtt": rtt}


def main() -> None:
    args = parser(__doc__ or "", backends=True).parse_args()
    rounds, n = (3, 20) if args.quick else (15, 400)
    title("A handoff poll against a pass-through request")
    results = []
    with maybe_redis(redis_wanted(args.backends)) as redis_url:
        for backend in args.backends:
            if backend == "redis" and redis_url is None:
                continue
            url = redis_url if backend == "redis" else None
            results.append(run(lambda b=backend, u=url: measure(b, u, rounds, n)))
    rows = []
    worst = 0.0
    calls = 0
    for result in results:
        times = result["times"]
        calls += result["wechat_calls"]
        for name in (PASS, WAITING, CONFIRMED):
            ratio = paired_ratio(times[name], times[PASS])
            if name != PASS and result["backend"] == "memory":
                worst = max(worst, ratio)
            rows.append((result["backend"], name, fmt_ns(median(times[name])), f"{ratio:.2f}x"))
    print(table(["backend", "request", "per request", "vs pass-through"], rows))
    print(f"\n{rounds} rounds of {n} calls of each; WeChat calls during the polls: {calls}")
    for result in results:
        if result["rtt"] is not None:
            print(f"Redis PING round trip from this process: {fmt_ns(result['rtt'])}")
    print(
        verdict(
            calls == 0,
            f"a poll costs {worst:.1f}x a pass-through request on the memory backend, "
            f"and calls WeChat {calls} times",
        )
    )


if __name__ == "__main__":
    main()
