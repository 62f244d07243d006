"""Mini-program login on real servers, real sockets: ``examples/miniprogram_app.py`` under uvicorn
(and hypercorn, which cancels a request's task when its client goes away), the WeChat emulator
in another process, everything on loopback.

- Aborted logins: login #1 is sent on a raw socket and dropped at a random moment (halfway
  through the request, while the exchange is in flight, halfway through the response, after
  it), with a FIN or a RST; the retry with the same code follows 0-50 ms later and must get
  the session, and WeChat must see one exchange per code. With ``duplicates="reject"`` both
  carry one ``Idempotency-Key``, and the same code sent afterwards without it gets ``code_used``.
- Two uvicorn workers on one Redis, serving the web flow as well on the same backend: retried
  and doubled mini-program logins, web logins with the WeChat browser's double callback, and
  mini-program codes replayed at the web callback: no lost login, one exchange per code, and
  no result of one flow served to the other.

``MP_STRESS_ABORTS`` (40) and ``MP_STRESS_LOGINS`` (100) size them.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from _servers import (
    dropped_request,
    emulator_process,
    emulator_stats,
)
from asgi_wechat_oauth.testing import WeChatEmulator, consent, double_callback, double_login
from test_real_servers import assert_clean, serving

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

APP = "examples.miniprogram_app:app"
LOGIN = "/wechat/miniprogram/login"
DEFAULTS = WeChatEmulator()  # the emulator process runs with the default appid, secret, user
OPENID = DEFAULTS.user.openid
ABORTS = int(os.environ.get("MP_STRESS_ABORTS", "40"))
LOGINS = int(os.environ.get("MP_STRESS_LOGINS", "100"))
SEED = int(os.environ.get("STRESS_SEED", str(random.SystemRandom().randrange(1 << 30))))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the servers run in their own processes; this one plays the clients


def app_env(emulator_url: str, redis_url: str | None = None) -> dict[str, str]:
    env = {
        "WECHAT_MINIPROGRAM_APPID": DEFAULTS.appid,
        "WECHAT_MINIPROGRAM_SECRET": DEFAULTS.secret,
        "WECHAT_API_BASE_URL": emulator_url,
        "TOKEN_SECRET": "t" * 32,
        "PYTHONWARNINGS": "default::ResourceWarning",
    }
    if redis_url:
        env["WECHAT_REDIS_URL"] = redis_url
        env["WECHAT_REDIS_PREFIX"] = f"mp-real-{uuid.uuid4().hex[:10]}"
        # The web flow on the same server and backend, with the same appid: the worst case
        # for keys, since a code string means nothing else to tell the products apart.
        env["WECHAT_APPID"] = DEFAULTS.appid
        env["WECHAT_SECRET"] = DEFAULTS.secret
    return env


async def miniprogram_code(client: httpx.AsyncClient, emulator_url: str) -> str:
    """What ``wx.login()`` gives the mini-program: a fresh code, from the emulator."""
    response = await client.post(f"{emulator_url}/_emulator/miniprogram_code")
    code: str = response.json()["code"]
    return code


# --- aborted logins ----------------------------------------------------------------------------


async def aborted_login(
    app_url: str, code: str, rng: random.Random, latency: float, headers: dict[str, str]
) -> tuple[str, str, int | None]:
    """POST login #1 on a raw socket and drop the connection at a random moment."""
    body = json.dumps({"code": code}).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST {LOGIN} HTTP/1.1\r\nHost: {urlsplit(app_url).netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
        "Connection: close\r\n\r\n"
    ).encode() + body
    return await dropped_request(app_url, request, rng, latency)


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "hypercorn-trio"])
async def test_aborted_first_login_does_not_lose_the_session(server) -> None:
    await check_aborted_logins(server, duplicates="share")


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_aborted_first_login_keeps_the_session_for_its_retry_under_reject(server) -> None:
    """``duplicates="reject"``: the retry repeats the first request's Idempotency-Key, so it
    is the request given the session, wherever the first one was cut off."""
    await check_aborted_logins(server, duplicates="reject")


async def check_aborted_logins(server: str, *, duplicates: str) -> None:
    """Login #1 cut off at a random moment, then its retry: every retry gets the session, and
    WeChat sees one exchange per code. Under ``"reject"`` both carry one Idempotency-Key."""
    latency = 0.05
    env = {"WECHAT_MINIPROGRAM_DUPLICATES": duplicates}
    phases: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    replays: Counter[str] = Counter()
    codes: list[str] = []
    with (
        emulator_process(latency=latency) as emulator_url,
        serving(server, {**app_env(emulator_url), **env}, app=APP) as app,
    ):
        limiter = anyio.Semaphore(10)
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def one(index: int) -> None:
                rng = random.Random(SEED * 1_000_003 + index)
                async with limiter:
                    code = await miniprogram_code(client, emulator_url)
                    codes.append(code)
                    reject = duplicates == "reject"
                    headers = {"Idempotency-Key": str(uuid.uuid4())} if reject else {}
                    phase, close, status = await aborted_login(app.url, code, rng, latency, headers)
                    await anyio.sleep(rng.uniform(0, 0.050))
                    retry = await client.post(
                        f"{app.url}{LOGIN}", json={"code": code}, headers=headers
                    )
                    if reject:  # the code from anyone else, after the retry: no session
                        other = await client.post(f"{app.url}{LOGIN}", json={"code": code})
                        replays[f"{other.status_code} {_reason(other)}"] += 1
                phases[f"{phase}/{close}/{status}"] += 1
                ok = retry.status_code == 200 and retry.json()["openid"] == OPENID
                retries["session" if ok else f"{retry.status_code} {retry.text}"] += 1

            with anyio.fail_after(60 + ABORTS):
                async with anyio.create_task_group() as tg:
                    for index in range(ABORTS):
                        tg.start_soon(one, index)
        exchanges = emulator_stats(emulator_url)["exchanges"]
    assert isinstance(exchanges, dict)
    per_code = Counter(exchanges.get(code, 0) for code in codes)
    print(f"\n{server} (seed {SEED}): #1 {dict(phases)}; retries {dict(retries)}; {per_code}")
    assert retries == {"session": ABORTS}
    assert replays == ({"400 code_used": ABORTS} if duplicates == "reject" else {})
    assert per_code == {1: ABORTS}
    assert_clean(app)


# --- two workers on Redis, with the web flow on the same backend ---------------------------------


@dataclass
class Figures:
    miniprogram: Counter[str] = field(default_factory=Counter)
    web: Counter[str] = field(default_factory=Counter)
    replayed_at_web: Counter[str] = field(default_factory=Counter)
    pids: Counter[int] = field(default_factory=Counter)
    codes: list[str] = field(default_factory=list)


@pytest.mark.redis
async def test_two_workers_on_redis_shared_with_the_web_flow(redis_server) -> None:
    figures = Figures()
    with (
        emulator_process(latency=0.05) as emulator_url,
        serving("uvicorn", app_env(emulator_url, redis_server.url), 2, APP) as app,
    ):
        login_url = f"{app.url}{LOGIN}"
        limiter = anyio.Semaphore(20)
        # No keep-alive: every request its own connection, spread over the workers.
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def miniprogram(index: int) -> None:
                async with limiter:
                    code = await miniprogram_code(client, emulator_url)
                    figures.codes.append(code)
                    # Even: a retry after the first was cut off; odd: two pages at once.
                    abort_after = 0.005 if index % 2 == 0 else 30.0
                    response = await double_login(
                        client, code, path=login_url, abort_after=abort_after, gap=0.019
                    )
                    if index % 5 == 0:  # the code replayed at the web callback
                        replayed = await client.get(f"{app.url}/wechat/callback?code={code}")
                        figures.replayed_at_web[f"{replayed.status_code} {_reason(replayed)}"] += 1
                ok = response.status_code == 200 and response.json()["openid"] == OPENID
                figures.miniprogram["session" if ok else f"{response.status_code}"] += 1
                if ok:
                    figures.pids[response.json()["pid"]] += 1

            async def web() -> None:
                async with limiter:
                    redirect_uri = f"{app.url}/wechat/callback"
                    url = await consent(
                        client, emulator_url, appid=DEFAULTS.appid, redirect_uri=redirect_uri
                    )
                    figures.codes.append(parse_qs(urlsplit(url).query)["code"][0])
                    response = await double_callback(client, url)
                ok = response.status_code == 200 and response.json()["openid"] == OPENID
                figures.web["identity" if ok else f"{response.status_code}"] += 1

            with anyio.fail_after(60 + LOGINS):
                async with anyio.create_task_group() as tg:
                    for index in range(LOGINS):
                        tg.start_soon(miniprogram, index)
                        if index % 2 == 0:
                            tg.start_soon(web)
        exchanges = emulator_stats(emulator_url)["exchanges"]
    assert isinstance(exchanges, dict)
    per_code = Counter(exchanges.get(code, 0) for code in figures.codes)
    print(
        f"\nmini-program {dict(figures.miniprogram)}, web {dict(figures.web)}, "
        f"mini-program codes at the web callback {dict(figures.replayed_at_web)}, "
        f"sessions per worker {sorted(figures.pids.values())}, exchanges per code {per_code}"
    )
    web_logins, replays = len(range(0, LOGINS, 2)), len(range(0, LOGINS, 5))
    assert figures.miniprogram == {"session": LOGINS}
    assert figures.web == {"identity": web_logins}
    # The web flow asked WeChat itself (not a web code): it never served the session.
    assert figures.replayed_at_web == {"400 code_invalid": replays}
    # One exchange per code and flow: a replayed code was also tried once at the web endpoint.
    assert per_code == {1: LOGINS + web_logins - replays, 2: replays}
    assert_clean(app)


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error"))
    except ValueError:
        return "not-json"
