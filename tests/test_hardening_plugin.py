"""The plugin's duplicate check and counts, per test, wherever the test's work happens (issue 26,
item 2): a code traded twice in a fixture's setup, in the test, or in a fixture's teardown fails
that test, naming the code's hash, on every emulator fixture; and every test's counts start
from zero, its fixtures' own work included, on the session's served emulator too.

Each case is a real inner pytest run (``pytester``) of a small suite, with the plugin loaded from
its entry point as in a user's project."""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]

#: The inner suite's app: one kind of login (web, mini-program, WeCom) on ``workers`` workers,
#: each with its own MemoryBackend, behind a balancer that sends each request to the next. With
#: two, a doubled callback or a retried mini-program login reaches both and each trades the
#: code: the bug the check exists for. The app reaches the emulator in-process, or over the
#: network when it is the session's served one.
SITE = """
import contextlib

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.miniprogram import MiniProgramMiddleware
from asgi_wechat_oauth.wecom import WeComOAuthMiddleware


async def ok(request):
    return JSONResponse({"ok": True})


def web(emulator, http):
    return WeChatOAuthMiddleware(
        Starlette(routes=[Route("/wechat/callback", ok)]),
        appid=emulator.appid,
        secret=emulator.secret,
        login_path="/wechat/login",
        api_base_url=emulator.url,
        authorize_base_url=emulator.url,
        http_client=http,
    )


def mp(emulator, http):
    return MiniProgramMiddleware(
        Starlette(routes=[Route("/wechat/miniprogram/login", ok, methods=["POST"])]),
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=emulator.url,
        http_client=http,
    )


def wecom(emulator, http):
    return WeComOAuthMiddleware(
        Starlette(routes=[Route("/wecom/callback", ok)]),
        corpid=emulator.corpid,
        agentid=emulator.agentid,
        secret=emulator.secret,
        login_path="/wecom/login",
        api_base_url=emulator.url,
        authorize_base_url=emulator.url,
        qr_login_base_url=emulator.url,
        http_client=http,
    )


@contextlib.asynccontextmanager
async def site(kind, emulator, *, workers=1):
    served = emulator.url.startswith("http://127.0.0.1:")
    http = httpx.AsyncClient(base_url=emulator.url) if served else emulator.http_client()
    make = {"web": web, "mp": mp, "wecom": wecom}[kind]
    async with http:
        apps = [make(emulator, http) for _ in range(workers)]
        turn = []

        async def balancer(scope, receive, send):
            if scope["type"] == "http":
                turn.append(None)
            await apps[len(turn) % workers](scope, receive, send)

        transport = httpx.ASGITransport(app=balancer)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
                yield c
        finally:
            for app in apps:
                await app.aclose()
"""

#: The inner suite: a double trade in a fixture's setup, in the test, in a fixture's teardown;
#: then a clean login made by a fixture, and a test that trades nothing. ``{emulator}`` is the
#: emulator fixture under test, ``{login}`` its login fixture, ``{kind}`` the app.
SUITE = """
import pytest
from site_under_test import site

pytestmark = [pytest.mark.anyio, pytest.mark.{marker}(latency=0.05)]


@pytest.fixture
async def twice_in_setup({emulator}, {login}):
    async with site("{kind}", {emulator}, workers=2) as client:
        await {login}(client)
        yield client


@pytest.fixture
async def twice_in_teardown({emulator}, {login}):
    yield
    async with site("{kind}", {emulator}, workers=2) as client:
        await {login}(client)


@pytest.fixture
async def logged_in_once({emulator}, {login}):
    assert {emulator}.latency == 0.05  # the marker's options hold for the fixtures too
    async with site("{kind}", {emulator}) as client:
        response = await {login}(client)
        assert response.status_code in (200, 302, 303), response.text
        yield client


async def test_in_setup(twice_in_setup):
    pass


async def test_in_call({emulator}, {login}):
    async with site("{kind}", {emulator}, workers=2) as client:
        await {login}(client)


async def test_in_teardown(twice_in_teardown):
    pass


async def test_a_fixtures_login_counts_in_its_test(logged_in_once, {emulator}):
    assert {emulator}.total_exchanges == 1
    assert {emulator}.calls["{endpoint}"] == 1
    assert {emulator}.duplicate_exchanges() == {{}}


async def test_counts_start_from_zero({emulator}):
    assert {emulator}.total_exchanges == 0
    assert dict({emulator}.calls) == {{}}
    assert {emulator}.exchanges == {{}}
"""

ASYNCIO_ONLY = """
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""

BOTH_BACKENDS = """
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

CASES = {
    # emulator fixture, its login fixture, the app, the exchange endpoint, the marker
    "web-in-process": ("wechat_emulator", "wechat_login", "web", "access_token", "wechat"),
    "web-served": ("wechat_emulator_server", "wechat_login", "web", "access_token", "wechat"),
    "mp-in-process": (
        "wechat_emulator",
        "wechat_miniprogram_login",
        "mp",
        "jscode2session",
        "wechat",
    ),
    "mp-served": (
        "wechat_emulator_server",
        "wechat_miniprogram_login",
        "mp",
        "jscode2session",
        "wechat",
    ),
    "wecom": ("wecom_emulator", "wecom_login", "wecom", "getuserinfo", "wecom"),
}

HASH = re.compile(r"code_hash=([0-9a-f]{16}) traded 2 times")
LOGGED = re.compile(r"wechat_oauth\.exchange code_hash=([0-9a-f]{16})")


def teardown_errors(output: str) -> dict[str, str]:
    """Each ``ERROR at teardown of <test>`` section of a pytest report, by test id."""
    parts = re.split(r"\n_+ ERROR at teardown of (\S+) _+\n", output)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    # The last section runs on into the summary: cut it there.
    return {test: re.split(r"\n=+ ", text)[0] for test, text in sections.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_a_double_exchange_fails_its_test_in_setup_call_or_teardown(
    pytester: pytest.Pytester, case: str
) -> None:
    emulator, login, kind, endpoint, marker = CASES[case]
    served = emulator == "wechat_emulator_server"
    pytester.makepyfile(site_under_test=SITE)
    pytester.makeconftest(ASYNCIO_ONLY if served else BOTH_BACKENDS)
    pytester.makepyfile(
        test_suite=SUITE.format(
            emulator=emulator,
            login=login,
            kind=kind,
            endpoint=endpoint,
            marker=f"{marker}_emulator",
        )
    )
    result = pytester.runpytest("--strict-markers", "--log-level=INFO")
    backends = 1 if served else 2
    # Every test passes its own body; the three that traded a code twice error at teardown.
    result.assert_outcomes(passed=5 * backends, errors=3 * backends)
    errors = teardown_errors(result.stdout.str())
    assert sorted({test.split("[")[0] for test in errors}) == [
        "test_in_call",
        "test_in_setup",
        "test_in_teardown",
    ]
    assert len(errors) == 3 * backends
    for test, section in errors.items():
        assert "code(s) traded more than once" in section, test
        named = set(HASH.findall(section))
        # One code, named by the hash the middleware logged when it traded it in this test.
        assert len(named) == 1, (test, section)
        assert named <= set(LOGGED.findall(section)), (test, section)


def test_a_fixture_that_fails_after_trading_twice_still_fails_its_test(
    pytester: pytest.Pytester,
) -> None:
    """On the served emulator, a fixture whose setup raises after a double trade: the test
    errors in setup, and the double trade is reported too."""
    pytester.makepyfile(site_under_test=SITE)
    pytester.makeconftest(ASYNCIO_ONLY)
    pytester.makepyfile(
        """
        import pytest
        from site_under_test import site

        pytestmark = pytest.mark.anyio


        @pytest.fixture
        async def broken(wechat_emulator_server, wechat_login):
            async with site("web", wechat_emulator_server, workers=2) as client:
                await wechat_login(client)
            raise RuntimeError("the fixture broke after its login")


        async def test_x(broken):
            pass
        """
    )
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_x*",
            "*the fixture broke after its login*",
            "*ERROR at teardown of test_x*",
            "*1 code(s) traded more than once (code_hash=* traded 2 times)*",
        ]
    )


def test_the_served_emulator_counts_per_test_and_restores_its_settings(
    pytester: pytest.Pytester,
) -> None:
    """A session-scoped fixture of the user's on the served emulator: its login counts in the
    test whose setup ran it, and no count, fault or setting leaks into the next test."""
    pytester.makepyfile(site_under_test=SITE)
    pytester.makeconftest(ASYNCIO_ONLY)
    pytester.makepyfile(
        """
        import httpx
        import pytest
        from asgi_wechat_oauth.testing import Fault

        pytestmark = pytest.mark.anyio


        @pytest.fixture(scope="session")
        def session_login(wechat_emulator_server):
            code = wechat_emulator_server.issue_code()
            params = {"appid": wechat_emulator_server.appid,
                      "secret": wechat_emulator_server.secret,
                      "code": code, "grant_type": "authorization_code"}
            answer = httpx.get(wechat_emulator_server.url + "/sns/oauth2/access_token",
                               params=params)
            assert "access_token" in answer.json()
            return code


        @pytest.mark.wechat_emulator(latency=0.01)
        async def test_first(session_login, wechat_emulator_server):
            assert wechat_emulator_server.latency == 0.01
            assert wechat_emulator_server.exchanges == {session_login: 1}
            wechat_emulator_server.inject_fault(Fault.BUSY)


        async def test_second(session_login, wechat_emulator_server):
            assert wechat_emulator_server.latency == 0.0
            assert wechat_emulator_server.total_exchanges == 0
            assert dict(wechat_emulator_server.calls) == {}
            async with httpx.AsyncClient(base_url=wechat_emulator_server.url) as wechat:
                stats = (await wechat.get("/_emulator/stats")).json()
                code = wechat_emulator_server.issue_code()
                params = {"appid": wechat_emulator_server.appid,
                          "secret": wechat_emulator_server.secret,
                          "code": code, "grant_type": "authorization_code"}
                answer = (await wechat.get("/sns/oauth2/access_token", params=params)).json()
            assert stats["total_exchanges"] == 0 and stats["calls"] == {}
            assert "access_token" in answer  # the first test's fault did not outlive it
            assert wechat_emulator_server.exchanges == {code: 1}
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=2)
