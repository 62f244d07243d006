"""The pytest plugin, as a user's suite meets it: pytester runs small test files with the plugin
loaded from its ``pytest11`` entry point (installed with the package), as in any project."""

from __future__ import annotations

import importlib.metadata
import re

import pytest

pytest_plugins = ["pytester"]

#: A user's app: the middleware with its login endpoint, in front of a callback that answers the
#: identity; and the bug this package exists for, a naive handler that trades every callback's
#: code itself. The same for a mini-program backend, whose bug is workers that do not share a
#: backend.
APP = """
import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_wechat_oauth import WeChatOAuthMiddleware
from asgi_wechat_oauth.miniprogram import MiniProgramMiddleware
from asgi_wechat_oauth.wecom import WeComOAuthMiddleware


async def callback(request):
    me = request.scope["wechat"]
    return JSONResponse(
        {"openid": me.openid, "unionid": me.unionid, "snapshot": me.is_snapshotuser,
         "next": me.next, "appid": me.appid}
    )


def make_app(emulator, **options):
    options = {"login_path": "/wechat/login", **options}
    return WeChatOAuthMiddleware(
        Starlette(routes=[Route("/wechat/callback", callback)]),
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=emulator.url,
        authorize_base_url=emulator.url,
        **options,
    )


def make_two_app_workers(emulator):
    # A site with an official account and a website app, on two workers that do not share a
    # backend, behind a balancer that sends each request to the next.
    workers = [
        make_app(
            emulator,
            http_client=emulator.http_client(),
            website_appid=emulator.website_appid,
            website_secret=emulator.website_secret,
        )
        for _ in range(2)
    ]
    turn = []

    async def balancer(scope, receive, send):
        if scope["type"] == "http":
            turn.append(None)
        await workers[len(turn) % 2](scope, receive, send)

    return balancer


def make_naive_app(emulator):
    async def naive_callback(request):
        async with emulator.http_client(base_url=emulator.url) as wechat:
            answer = await wechat.get(
                "/sns/oauth2/access_token",
                params={"appid": emulator.appid, "secret": emulator.secret,
                        "code": request.query_params["code"],
                        "grant_type": "authorization_code"},
            )
        return JSONResponse(answer.json())

    return Starlette(routes=[Route("/wechat/callback", naive_callback)])


def client_for(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test")


async def mp_login(request):
    me = request.scope["wechat"]
    return JSONResponse({"openid": me.openid, "unionid": me.unionid})


def make_mp_app(emulator, **options):
    return MiniProgramMiddleware(
        Starlette(routes=[Route("/wechat/miniprogram/login", mp_login, methods=["POST"])]),
        appid=emulator.appid,
        secret=emulator.secret,
        api_base_url=emulator.url,
        **options,
    )


def make_unshared_workers(emulator):
    # Two workers of one mini-program backend, each on its own MemoryBackend, behind a
    # balancer that sends each request to the next: a retry lands on the other worker.
    workers = [make_mp_app(emulator, http_client=emulator.http_client()) for _ in range(2)]
    turn = []

    async def balancer(scope, receive, send):
        turn.append(None)
        await workers[len(turn) % 2](scope, receive, send)

    return balancer


async def wecom_callback(request):
    me = request.scope["wecom"]
    return JSONResponse(
        {"userid": me.userid, "openid": me.openid, "ticket": me.user_ticket is not None,
         "next": me.next}
    )


def make_wecom_app(emulator, **options):
    options = {"http_client": emulator.http_client(), **options}
    return WeComOAuthMiddleware(
        Starlette(routes=[Route("/wecom/callback", wecom_callback)]),
        corpid=emulator.corpid,
        agentid=emulator.agentid,
        secret=emulator.secret,
        login_path="/wecom/login",
        api_base_url=emulator.url,
        authorize_base_url=emulator.url,
        qr_login_base_url=emulator.url,
        **options,
    )


def make_unshared_wecom_workers(emulator):
    workers = [make_wecom_app(emulator) for _ in range(2)]
    turn = []

    async def balancer(scope, receive, send):
        if scope["type"] == "http":
            turn.append(None)
        await workers[len(turn) % 2](scope, receive, send)

    return balancer
"""

CONFTEST = """
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(myapp=APP)
    pytester.makeconftest(CONFTEST)
    return pytester


def test_the_plugin_is_registered_through_the_pytest11_entry_point():
    (entry,) = [
        e
        for e in importlib.metadata.entry_points(group="pytest11")
        if e.name == "asgi_wechat_oauth"
    ]
    assert entry.value == "pytest_asgi_wechat_oauth"


def test_login_through_the_fixtures(suite):
    suite.makepyfile(
        """
        import pytest
        from asgi_wechat_oauth.testing import WeChatEmulator
        from myapp import client_for, make_app

        pytestmark = pytest.mark.anyio


        async def test_login(wechat_emulator, wechat_login):
            assert isinstance(wechat_emulator, WeChatEmulator)
            app = make_app(wechat_emulator, http_client=wechat_emulator.http_client())
            async with client_for(app) as client:
                response = await wechat_login(client, next="/profile")
            assert response.status_code == 200, response.text
            assert response.json()["openid"] == wechat_emulator.user.openid
            assert response.json()["next"] == "/profile"
            # The double callback reached the app twice; WeChat saw one exchange.
            assert wechat_emulator.total_exchanges == 1


        async def test_single_callback_and_scope(wechat_emulator, wechat_login):
            app = make_app(wechat_emulator, http_client=wechat_emulator.http_client())
            async with client_for(app) as client:
                response = await wechat_login(client, scope="snsapi_userinfo", double=False)
            assert response.status_code == 200
            assert wechat_emulator.calls["userinfo"] == 1


        async def test_codes_for_given_users(wechat_emulator):
            # A callback without the login endpoint: no state to verify.
            app = make_app(
                wechat_emulator, http_client=wechat_emulator.http_client(), login_path=None
            )
            code = wechat_emulator.issue_code(
                "snsapi_userinfo", openid="oAnother", unionid="uAnother", snapshot=True
            )
            async with client_for(app) as client:
                response = await client.get("/wechat/callback", params={"code": code})
            assert response.status_code == 200, response.text
            assert response.json()["openid"] == "oAnother"
            assert response.json()["unionid"] == "uAnother"
            assert response.json()["snapshot"] is True
            assert wechat_emulator.exchange_count(code) == 1


        def test_a_fresh_emulator_per_test(wechat_emulator):
            assert wechat_emulator.total_exchanges == 0
            assert wechat_emulator.url == "http://wechat.test"


        async def test_a_desktop_logs_in_through_a_phone(wechat_emulator, wechat_handoff_login):
            app = make_app(wechat_emulator, http_client=wechat_emulator.http_client())
            async with client_for(app) as desktop, client_for(app) as phone:
                response = await wechat_handoff_login(desktop, phone, next="/profile")
            assert response.status_code == 200, response.text
            assert response.json()["openid"] == wechat_emulator.user.openid
            assert response.json()["next"] == "/profile"
            assert wechat_emulator.total_exchanges == 1
        """
    )
    result = suite.runpytest("--strict-markers")
    result.assert_outcomes(passed=9)


def test_marker_options_apply(suite):
    suite.makepyfile(
        """
        import pytest
        from asgi_wechat_oauth.testing import EmulatedUser

        pytestmark = pytest.mark.wechat_emulator(latency=0.5, appid="wxmodule")


        @pytest.mark.wechat_emulator(latency=0.01, user=EmulatedUser(openid="oMarked"))
        def test_closest_marker_wins(wechat_emulator):
            assert wechat_emulator.latency == 0.01
            assert wechat_emulator.appid == "wxmodule"
            assert wechat_emulator.user.openid == "oMarked"


        @pytest.mark.wechat_emulator(latencyy=1)
        def test_unknown_option(wechat_emulator):
            pass


        @pytest.mark.wechat_emulator(double_navigation=True)
        @pytest.mark.anyio
        async def test_double_navigation_is_for_real_browsers(wechat_emulator, wechat_login):
            from myapp import client_for, make_app

            app = make_app(wechat_emulator, http_client=wechat_emulator.http_client())
            async with client_for(app) as client:
                with pytest.raises(RuntimeError, match="is for real browsers"):
                    await wechat_login(client)
        """
    )
    result = suite.runpytest("--strict-markers")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*unknown option(s) latencyy; known: appid, *"])


NAIVE_TESTS = """
import pytest
from asgi_wechat_oauth.testing import double_callback
from myapp import client_for, make_naive_app

pytestmark = pytest.mark.anyio


{marker}
async def test_naive_handler(wechat_emulator):
    code = wechat_emulator.issue_code()
    async with client_for(make_naive_app(wechat_emulator)) as client:
        response = await double_callback(client, f"/wechat/callback?code={{code}}")
    # The test itself passes: the page the user sees is the 40163 error, unchecked.
    assert response.status_code == 200
"""


def test_a_code_traded_twice_fails_the_test_at_teardown(suite):
    suite.makepyfile(NAIVE_TESTS.format(marker=""))
    result = suite.runpytest("--strict-markers")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_naive_handler*",
            "*WeChat emulator: 1 code(s) traded more than once (code_hash=* traded 2 times)*",
        ]
    )


def test_the_opt_out_marker(suite):
    marker = "@pytest.mark.wechat_allow_duplicate_exchange"
    suite.makepyfile(NAIVE_TESTS.format(marker=marker))
    suite.runpytest("--strict-markers").assert_outcomes(passed=2)


def test_the_middleware_passes_the_check_where_the_naive_handler_fails(suite):
    suite.makepyfile(
        """
        import pytest
        from asgi_wechat_oauth.testing import double_callback
        from myapp import client_for, make_app

        pytestmark = pytest.mark.anyio


        @pytest.mark.wechat_emulator(latency=0.05)
        async def test_slow_wechat_double_callback(wechat_emulator):
            app = make_app(
                wechat_emulator, http_client=wechat_emulator.http_client(), login_path=None
            )
            code = wechat_emulator.issue_code()
            async with client_for(app) as client:
                response = await double_callback(client, f"/wechat/callback?code={code}")
            assert response.status_code == 200
            assert wechat_emulator.exchange_count(code) == 1
        """
    )
    suite.runpytest("--strict-markers").assert_outcomes(passed=2)


def test_the_served_emulator(suite):
    suite.makepyfile(
        """
        import httpx
        import pytest
        from asgi_wechat_oauth.testing import double_callback
        from myapp import client_for, make_app, make_naive_app

        pytestmark = pytest.mark.anyio


        @pytest.fixture
        def anyio_backend():
            return "asyncio"


        @pytest.mark.wechat_emulator(latency=0.02)
        async def test_login_over_loopback(wechat_emulator_server, wechat_login):
            assert wechat_emulator_server.url.startswith("http://127.0.0.1:")
            assert wechat_emulator_server.latency == 0.02
            app = make_app(wechat_emulator_server)  # its own client, over the network
            try:
                async with client_for(app) as client:
                    response = await wechat_login(client, next="/p")
            finally:
                await app.aclose()
            assert response.status_code == 200, response.text
            assert response.json()["next"] == "/p"


        async def test_settings_are_restored_and_counts_are_per_test(wechat_emulator_server):
            assert wechat_emulator_server.latency == 0.0
            async with httpx.AsyncClient(base_url=wechat_emulator_server.url) as wechat:
                stats = (await wechat.get("/_emulator/stats")).json()
            assert stats["total_exchanges"] == 0  # the first test's exchange was its own


        async def test_a_naive_handler_fails_here_too(wechat_emulator_server):
            code = wechat_emulator_server.issue_code()
            async with client_for(make_naive_app(wechat_emulator_server)) as client:
                await double_callback(client, f"/wechat/callback?code={code}")
        """
    )
    result = suite.runpytest("--strict-markers")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_a_naive_handler_fails_here_too*"])


def test_the_plugin_costs_nothing_when_unused(suite):
    suite.makepyfile(
        """
        import sys


        def test_nothing_heavy_was_imported(request):
            assert request.config.pluginmanager.has_plugin("asgi_wechat_oauth")
            heavy = ["asgi_wechat_oauth", "httpx", "starlette"]
            assert [name for name in heavy if name in sys.modules] == []
        """
    )
    # A fresh interpreter: this process has imported everything already.
    suite.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_plugin_can_be_turned_off(suite):
    suite.makepyfile("def test_x(wechat_emulator):\n    pass\n")
    result = suite.runpytest("-p", "no:asgi_wechat_oauth")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'wechat_emulator' not found*"])


def test_miniprogram_login_through_the_fixture(suite):
    suite.makepyfile(
        """
        import pytest
        from asgi_wechat_oauth.testing import EmulatedUser
        from myapp import client_for, make_mp_app

        pytestmark = pytest.mark.anyio


        @pytest.mark.wechat_emulator(latency=0.05)  # the retry arrives while WeChat answers
        async def test_retried_login(wechat_emulator, wechat_miniprogram_login):
            app = make_mp_app(wechat_emulator, http_client=wechat_emulator.http_client())
            async with client_for(app) as client:
                response = await wechat_miniprogram_login(client)
            assert response.status_code == 200, response.text
            assert response.json()["openid"] == wechat_emulator.user.openid
            assert wechat_emulator.calls["jscode2session"] == 1


        async def test_user_code_single(wechat_emulator, wechat_miniprogram_login):
            app = make_mp_app(wechat_emulator, http_client=wechat_emulator.http_client())
            user = EmulatedUser(openid="oMini", unionid="uMini")
            async with client_for(app) as client:
                first = await wechat_miniprogram_login(client, user=user, double=False)
                code = wechat_emulator.issue_miniprogram_code()
                second = await wechat_miniprogram_login(client, code=code)
                with pytest.raises(TypeError, match="a code or a user"):
                    await wechat_miniprogram_login(client, code=code, user=user)
            assert first.json() == {"openid": "oMini", "unionid": "uMini"}
            assert second.status_code == 200
            assert wechat_emulator.exchange_count(code) == 1
            assert wechat_emulator.calls["jscode2session"] == 2


        async def test_another_path(wechat_emulator, wechat_miniprogram_login):
            app = make_mp_app(
                wechat_emulator, http_client=wechat_emulator.http_client(), login_path="/mp"
            )
            async with client_for(app) as client:
                response = await wechat_miniprogram_login(client, path="/mp")
            assert response.status_code == 404  # the middleware answered; the app has no /mp
            assert wechat_emulator.calls["jscode2session"] == 1
        """
    )
    result = suite.runpytest("--strict-markers")
    result.assert_outcomes(passed=6)


def test_miniprogram_login_on_the_served_emulator(suite):
    suite.makepyfile(
        """
        import pytest
        from myapp import client_for, make_mp_app

        pytestmark = pytest.mark.anyio


        @pytest.fixture
        def anyio_backend():
            return "asyncio"


        async def test_login_over_loopback(wechat_emulator_server, wechat_miniprogram_login):
            app = make_mp_app(wechat_emulator_server)  # its own client, over the network
            try:
                async with client_for(app) as client:
                    response = await wechat_miniprogram_login(client)
            finally:
                await app.aclose()
            assert response.status_code == 200, response.text
            assert wechat_emulator_server.calls["jscode2session"] >= 1
        """
    )
    suite.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_a_miniprogram_code_traded_twice_fails_with_the_logged_code_hash(suite):
    """Two workers that do not share a backend each trade the retried code: the teardown check
    fails the test, naming the code by the hash the middleware logged for it (``mp:`` keys)."""
    suite.makepyfile(
        """
        import pytest
        from myapp import client_for, make_unshared_workers

        pytestmark = pytest.mark.anyio


        @pytest.mark.wechat_emulator(latency=0.05)
        async def test_unshared_workers(wechat_emulator, wechat_miniprogram_login):
            async with client_for(make_unshared_workers(wechat_emulator)) as client:
                response = await wechat_miniprogram_login(client)
            assert response.status_code == 400  # the retry's worker got 40163: code_used
            assert response.json()["error"] == "code_used"
        """
    )
    result = suite.runpytest("--strict-markers", "--log-level=INFO")
    result.assert_outcomes(passed=2, errors=2)
    output = result.stdout.str()
    failed = set(re.findall(r"code_hash=([0-9a-f]{16}) traded 2 times", output))
    logged = set(re.findall(r"wechat_oauth\.exchange code_hash=([0-9a-f]{16})", output))
    assert len(failed) == 2  # one code per backend (asyncio, trio)
    assert failed <= logged


def test_wecom_login_through_the_fixtures(suite):
    suite.makepyfile(
        """
        import pytest
        from asgi_wechat_oauth.testing import WeComEmulator, WeComMember
        from myapp import client_for, make_wecom_app

        pytestmark = pytest.mark.anyio


        @pytest.mark.wecom_emulator(latency=0.05)  # the duplicate arrives mid-exchange
        async def test_in_wecoms_browser(wecom_emulator, wecom_login):
            assert isinstance(wecom_emulator, WeComEmulator)
            async with client_for(make_wecom_app(wecom_emulator)) as client:
                response = await wecom_login(client, next="/desk", scope="snsapi_privateinfo")
            assert response.status_code == 200, response.text
            assert response.json() == {
                "userid": wecom_emulator.user.userid, "openid": None, "ticket": True,
                "next": "/desk",
            }
            assert wecom_emulator.total_exchanges == 1
            assert wecom_emulator.calls["authorize"] == 1


        @pytest.mark.wecom_emulator(user=WeComMember(member=False))
        async def test_qr_login_on_a_desktop(wecom_emulator, wecom_login):
            async with client_for(make_wecom_app(wecom_emulator)) as client:
                response = await wecom_login(client, in_wecom=False, double=False)
            assert response.json()["openid"] == wecom_emulator.user.openid
            assert wecom_emulator.calls["qr_login"] == 1


        @pytest.mark.wecom_emulator(decline_qr_login=True)
        async def test_a_declined_qr_login(wecom_emulator, wecom_login):
            async with client_for(make_wecom_app(wecom_emulator)) as client:
                response = await wecom_login(client, in_wecom=False)
            assert response.status_code == 403
            assert response.json()["error"] == "login_declined"
            assert wecom_emulator.total_exchanges == 0


        @pytest.mark.wecom_emulator(corpidd="ww1")
        def test_unknown_option(wecom_emulator):
            pass
        """
    )
    result = suite.runpytest("--strict-markers")
    result.assert_outcomes(passed=6, errors=1)
    result.stdout.fnmatch_lines(["*wecom_emulator: unknown option(s) corpidd; known: agentid, *"])


def test_a_wecom_code_traded_twice_fails_with_the_logged_code_hash(suite):
    """WeCom's double callback over two workers that do not share a backend: the teardown
    check fails the test and names the code as ``WeComOAuthMiddleware`` logged it."""
    suite.makepyfile(
        """
        import pytest
        from myapp import client_for, make_unshared_wecom_workers

        pytestmark = pytest.mark.anyio


        @pytest.mark.wecom_emulator(latency=0.05)
        async def test_unshared_workers(wecom_emulator, wecom_login):
            async with client_for(make_unshared_wecom_workers(wecom_emulator)) as client:
                await wecom_login(client)
            assert wecom_emulator.total_exchanges == 2
        """
    )
    result = suite.runpytest("--strict-markers", "--log-level=INFO")
    result.assert_outcomes(passed=2, errors=2)
    output = result.stdout.str()
    failed = set(re.findall(r"code_hash=([0-9a-f]{16}) traded 2 times", output))
    logged = set(re.findall(r"wechat_oauth\.exchange code_hash=([0-9a-f]{16})", output))
    assert len(failed) == 2  # one code per backend (asyncio, trio)
    assert failed <= logged


def test_wechat_login_in_wechat_or_on_a_desktop_with_a_website_app(suite):
    suite.makepyfile(
        """
        import pytest
        from myapp import client_for, make_app

        pytestmark = pytest.mark.anyio


        def site(emulator):
            return make_app(
                emulator,
                http_client=emulator.http_client(),
                website_appid=emulator.website_appid,
                website_secret=emulator.website_secret,
            )


        @pytest.mark.wechat_emulator(latency=0.05)
        async def test_both_routes(wechat_emulator, wechat_login):
            async with client_for(site(wechat_emulator)) as phone:
                in_wechat = await wechat_login(phone, scope="snsapi_userinfo")
            async with client_for(site(wechat_emulator)) as desktop:
                qr_login = await wechat_login(desktop, in_wechat=False)
            assert in_wechat.json()["appid"] == wechat_emulator.appid
            assert in_wechat.json()["openid"] == wechat_emulator.user.openid
            assert qr_login.json()["appid"] == wechat_emulator.website_appid
            assert qr_login.json()["openid"] == wechat_emulator.user.website_openid
            assert wechat_emulator.total_exchanges == 2
        """
    )
    suite.runpytest("--strict-markers").assert_outcomes(passed=2)


def test_a_website_code_traded_twice_fails_with_the_logged_code_hash(suite):
    """The website app's codes are keyed with its own appid: the check names them so."""
    suite.makepyfile(
        """
        import pytest
        from myapp import client_for, make_two_app_workers

        pytestmark = pytest.mark.anyio


        @pytest.mark.wechat_emulator(latency=0.05)
        async def test_unshared_workers(wechat_emulator, wechat_login):
            async with client_for(make_two_app_workers(wechat_emulator)) as desktop:
                await wechat_login(desktop, in_wechat=False)
            assert wechat_emulator.total_exchanges == 2
        """
    )
    result = suite.runpytest("--strict-markers", "--log-level=INFO")
    result.assert_outcomes(passed=2, errors=2)
    output = result.stdout.str()
    failed = set(re.findall(r"code_hash=([0-9a-f]{16}) traded 2 times", output))
    logged = set(re.findall(r"wechat_oauth\.exchange code_hash=([0-9a-f]{16})", output))
    assert len(failed) == 2  # one code per backend (asyncio, trio)
    assert failed <= logged


def test_a_secure_cookie_an_http_client_drops_fails_the_login(suite):
    """The README's FastAPI pattern (issue 28): ``SessionMiddleware(https_only=True)`` and a
    test client on ``http://``. The callback answers 303 and sets the session cookie, which
    the client never sends back: the login "passed" with nobody logged in. ``wechat_login``
    now fails the test, naming the cookie and the fix; over https the same login works."""
    suite.makepyfile(
        """
        import httpx
        import pytest
        from starlette.applications import Starlette
        from starlette.middleware.sessions import SessionMiddleware
        from starlette.responses import JSONResponse, RedirectResponse
        from starlette.routing import Route

        from asgi_wechat_oauth import WeChatOAuthMiddleware

        pytestmark = pytest.mark.anyio


        async def callback(request):
            request.session["openid"] = request.scope["wechat"].openid
            return RedirectResponse("/me", status_code=303)


        async def me(request):
            return JSONResponse({"openid": request.session.get("openid")})


        def make_app(emulator):
            app = Starlette(routes=[Route("/wechat/callback", callback), Route("/me", me)])
            app.add_middleware(
                WeChatOAuthMiddleware,
                appid=emulator.appid,
                secret=emulator.secret,
                login_path="/wechat/login",
                api_base_url=emulator.url,
                authorize_base_url=emulator.url,
                http_client=emulator.http_client(),
            )
            app.add_middleware(SessionMiddleware, secret_key="k" * 32, https_only=True)
            return app


        async def test_over_http(wechat_emulator, wechat_login):
            app = make_app(wechat_emulator)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
                await wechat_login(c)


        async def test_over_https(wechat_emulator, wechat_login):
            app = make_app(wechat_emulator)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://app.test") as c:
                response = await wechat_login(c)
                assert response.status_code == 303
                me = await c.get("/me")
            assert me.json()["openid"] == wechat_emulator.user.openid
        """
    )
    result = suite.runpytest("--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)  # on asyncio and on trio
    result.stdout.fnmatch_lines(
        [
            "*wechat_login: the app set the Secure cookie 'session' at "
            "http://app.test/wechat/callback, a plain http URL*",
        ]
    )
    output = result.stdout.str()
    assert 'base_url="https://app.test"' in output
    assert "Traceback" not in output


def test_platform_login_through_the_fixture(suite):
    suite.makepyfile(
        """
        import pytest
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        from asgi_wechat_oauth.platform import PlatformOAuthMiddleware
        from myapp import client_for

        pytestmark = pytest.mark.anyio


        async def who(request):
            me = request.scope["wechat"]
            return JSONResponse({"appid": me.appid, "openid": me.openid, "next": me.next})


        def make_platform(emulator):
            return PlatformOAuthMiddleware(
                Starlette(routes=[Route("/wechat/platform/callback", who)]),
                component_appid=emulator.component_appid,
                component_secret=emulator.component_secret,
                token=emulator.component_token,
                encoding_aes_key=emulator.component_encoding_aes_key,
                authorizer=emulator.authorizer_appids[1],
                login_path="/wechat/platform/login",
                api_base_url=emulator.url,
                authorize_base_url=emulator.url,
                http_client=emulator.http_client(),
            )


        async def test_platform_login(wechat_emulator, wechat_platform_login):
            app = make_platform(wechat_emulator)
            async with client_for(app) as client:
                response = await wechat_platform_login(client, next="/shop")
            await app.aclose()
            assert response.status_code == 200, response.text
            assert response.json()["appid"] == wechat_emulator.authorizer_appids[1]
            assert response.json()["next"] == "/shop"
            assert wechat_emulator.calls["api_component_token"] == 1
            assert wechat_emulator.total_exchanges == 1


        async def test_platform_login_served(wechat_emulator_server, wechat_platform_login):
            app = make_platform(wechat_emulator_server)
            async with client_for(app) as client:
                response = await wechat_platform_login(client)
            await app.aclose()
            assert response.status_code == 200, response.text
        """
    )
    result = suite.runpytest("--strict-markers")
    result.assert_outcomes(passed=4)
