"""The pytest plugin of asgi-wechat-oauth: the WeChat emulator as fixtures, a login helper, and
a check that fails any test in which a code was traded more than once.

Registered through the ``pytest11`` entry point as ``asgi_wechat_oauth`` (``-p
no:asgi_wechat_oauth`` turns it off). It lives outside the ``asgi_wechat_oauth`` package, whose
import brings httpx and Starlette: importing this module imports pytest alone, and the fixtures
import the emulator when a test asks for them, so a suite that does not use them pays nothing.

- ``wechat_emulator``: a fresh in-process :class:`~asgi_wechat_oauth.testing.WeChatEmulator`
  per test; ``@pytest.mark.wechat_emulator(latency=0.08, ...)`` sets its options.
- ``wechat_emulator_server`` (session): one emulator served on a loopback port; the marker's
  options apply to it for one test (its fixtures included), and are restored afterwards.
- ``wechat_login``: ``await wechat_login(client, next="/profile")`` logs in through the app's
  login endpoint, the emulator's consent page and the WeChat browser's double callback.
- ``wechat_platform_login``: ``await wechat_platform_login(client)`` pushes a ticket to a
  third-party platform's app and logs in through it on behalf of an authorizer.
- ``wechat_handoff_login``: ``await wechat_handoff_login(desktop, phone, next="/profile")``
  logs a desktop browser in through a phone (the desktop's QR page, the phone's login in
  WeChat and its confirmation, the poll and the redirect), with two clients of the app.
- ``wechat_miniprogram_login``: ``await wechat_miniprogram_login(client)`` posts a fresh
  ``wx.login()`` code to the app's mini-program login, twice, as a retrying client does.
- ``wecom_emulator`` (``@pytest.mark.wecom_emulator(...)`` for its options) and ``wecom_login``:
  the same for WeCom (企业微信): its emulator, and a login through WeCom's browser or QR page.
- At teardown, a test whose emulator saw a code traded more than once fails, unless marked
  ``@pytest.mark.wechat_allow_duplicate_exchange``.

Counts are per test, from the start of its setup to the end of its teardown, so that the work of
its fixtures counts too: each test gets a fresh in-process emulator, and the session's server
starts every test with its counts at zero.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    import httpx

    from asgi_wechat_oauth.testing import WeChatEmulator, WeComEmulator
    from asgi_wechat_oauth.testing._base import EmulatorBase

_E = TypeVar("_E", bound="EmulatorBase")

MARKER = "wechat_emulator"
WECOM_MARKER = "wecom_emulator"
ALLOW_DUPLICATES = "wechat_allow_duplicate_exchange"


@dataclasses.dataclass
class _Watch:
    """An emulator whose codes a test is checked for, and settings to restore after it."""

    emulator: EmulatorBase
    restore: dict[str, Any] | None = None


_WATCHES = pytest.StashKey[list[_Watch]]()
#: The session's served emulators while they run, and the test being set up (which a server
#: started during that test's setup serves first).
_SERVERS = pytest.StashKey[list["WeChatEmulator"]]()
_CURRENT = pytest.StashKey[pytest.Item]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the test's WeChat emulator, e.g. latency=0.08, "
        "double_navigation=True, user=EmulatedUser(...), code_ttl=1.0",
    )
    config.addinivalue_line(
        "markers",
        f"{WECOM_MARKER}(**options): options of the test's WeCom emulator, e.g. latency=0.08, "
        "user=WeComMember(...), decline_qr_login=True",
    )
    config.addinivalue_line(
        "markers",
        f"{ALLOW_DUPLICATES}: the test trades a code more than once on purpose; do not fail it",
    )


@pytest.fixture
def wechat_emulator(request: pytest.FixtureRequest) -> WeChatEmulator:
    """A WeChat emulator for this test, in-process: give the middleware
    ``api_base_url=wechat_emulator.url`` and ``http_client=wechat_emulator.http_client()``."""
    from asgi_wechat_oauth.testing import WeChatEmulator

    return _watched(request.node, WeChatEmulator(**_marker_options(request.node, MARKER)))


@pytest.fixture
def wecom_emulator(request: pytest.FixtureRequest) -> WeComEmulator:
    """A WeCom (企业微信) emulator for this test, in-process: give the middleware
    ``api_base_url``, ``authorize_base_url`` and ``qr_login_base_url`` ``wecom_emulator.url``,
    and ``http_client=wecom_emulator.http_client()``."""
    from asgi_wechat_oauth.testing import WeComEmulator

    return _watched(request.node, WeComEmulator(**_marker_options(request.node, WECOM_MARKER)))


def _watched(item: pytest.Item, emulator: _E) -> _E:
    """``emulator``, counted by the teardown check of ``item``."""
    item.stash.setdefault(_WATCHES, []).append(_Watch(emulator))
    return emulator


@pytest.fixture(scope="session")
def wechat_emulator_server(request: pytest.FixtureRequest) -> Iterator[WeChatEmulator]:
    """One WeChat emulator for the session, served by uvicorn on ``wechat_emulator_server.url``
    (loopback, a free port), for tests that drive a real server or browser. Needs uvicorn.

    Shared, but counted per test: every test's setup starts its counts at zero and applies its
    marker's options before any fixture runs (see :func:`pytest_runtest_setup`)."""
    from asgi_wechat_oauth.testing import EmulatorServer

    try:
        server = EmulatorServer()
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    servers = request.config.stash.setdefault(_SERVERS, [])
    try:
        # Started in the middle of a test's setup: that test's turn begins now.
        current = request.config.stash.get(_CURRENT, None)
        if current is not None:
            _serve_test(current, server.emulator, uses_it=True)
        servers.append(server.emulator)
        yield server.emulator
    finally:
        if server.emulator in servers:
            servers.remove(server.emulator)
        server.stop()


@pytest.fixture
def wechat_login(request: pytest.FixtureRequest) -> Any:
    """``await wechat_login(client, login_path="/wechat/login", next=None, scope=None,
    in_wechat=True, double=True)``: log in through the app as the WeChat browser does (a desktop
    browser with ``in_wechat=False``: a website app's QR login), against this test's
    emulator (``wechat_emulator_server`` if the test uses it, else ``wechat_emulator``), and
    return the callback's response. See ``asgi_wechat_oauth.testing.web_login``."""
    from asgi_wechat_oauth.testing import web_login

    return _bound(web_login, _test_emulator(request), name="wechat_login")


@pytest.fixture
def wechat_platform_login(request: pytest.FixtureRequest) -> Any:
    """``await wechat_platform_login(client, login_path="/wechat/platform/login",
    ticket_path="/wechat/platform/ticket", next=None, scope=None, double=True)``: push a
    ticket to a third-party platform's app (as WeChat does), then log in through it as the
    WeChat browser does, on behalf of an authorizer, against this test's emulator (as
    ``wechat_login`` picks it). See ``asgi_wechat_oauth.testing.platform_login``."""
    from asgi_wechat_oauth.testing import platform_login

    return _bound(platform_login, _test_emulator(request), name="wechat_platform_login")


@pytest.fixture
def wechat_handoff_login(request: pytest.FixtureRequest) -> Any:
    """``await wechat_handoff_login(desktop, phone, login_path="/wechat/login", next=None,
    scope=None, confirm=True, double=True)``: log a desktop browser in through a phone (the
    desktop login the middleware offers when the site has no website app) against this test's
    emulator (as ``wechat_login`` picks it), and return the desktop's answer to the redirect its
    page follows: the app's callback handler. ``desktop`` and ``phone`` are two clients of the
    app, each with its own cookies. See ``asgi_wechat_oauth.testing.handoff_login``."""
    from asgi_wechat_oauth.testing import handoff_login

    return _bound(handoff_login, _test_emulator(request), name="wechat_handoff_login")


@pytest.fixture
def wechat_miniprogram_login(request: pytest.FixtureRequest) -> Any:
    """``await wechat_miniprogram_login(client, path="/wechat/miniprogram/login", code=None,
    user=None, double=True)``: take a ``wx.login()`` code from this test's emulator (as
    ``wechat_login`` picks it), POST it to the app twice like a retrying client, and return
    the response the mini-program sees. See ``asgi_wechat_oauth.testing.miniprogram_login``."""
    from asgi_wechat_oauth.testing import miniprogram_login

    return _bound(miniprogram_login, _test_emulator(request))


@pytest.fixture
def wecom_login(wecom_emulator: WeComEmulator) -> Any:
    """``await wecom_login(client, login_path="/wecom/login", next=None, scope=None,
    in_wecom=True, double=True)``: log in through the app as WeCom's browser does (or, with
    ``in_wecom=False``, a desktop browser through the QR page) against ``wecom_emulator``, and
    return the callback's response. See ``asgi_wechat_oauth.testing.wecom_login``."""
    from asgi_wechat_oauth.testing import wecom_login

    return _bound(wecom_login, wecom_emulator, name="wecom_login")


def _test_emulator(request: pytest.FixtureRequest) -> WeChatEmulator:
    """The test's WeChat emulator: the session's server if the test uses it, else its own."""
    name = "wechat_emulator_server" if "wechat_emulator_server" in request.fixturenames else None
    emulator: WeChatEmulator = request.getfixturevalue(name or "wechat_emulator")
    return emulator


def _bound(
    helper: Callable[..., Awaitable[httpx.Response]], emulator: object, *, name: str = ""
) -> Callable[..., Awaitable[httpx.Response]]:
    """``helper`` with its ``emulator`` argument given: what a login fixture returns. With a
    ``name`` (a login through the app's pages), the test fails when the app set a cookie the
    client drops (see :func:`_dropped_cookies`)."""
    bound = functools.partial(helper, emulator=emulator)
    if not name:
        return bound

    @functools.wraps(helper)
    async def login(*args: Any, **kwargs: Any) -> httpx.Response:
        response = await bound(*args, **kwargs)
        dropped = _dropped_cookies(response)
        if dropped:
            pytest.fail(_dropped_message(name, dropped), pytrace=False)
        return response

    return login


def _dropped_cookies(response: httpx.Response) -> list[tuple[str, str]]:
    """``(cookie, url)`` for each ``Secure`` cookie the app set over plain http while the login
    came back: httpx, like a browser, keeps it and never sends it over http, so the session it
    holds never comes back and every later request is nobody's."""
    dropped = []
    for answer in (*response.history, response):
        url = answer.request.url
        if url.scheme != "http":
            continue
        for header in answer.headers.get_list("set-cookie"):
            pair, *attributes = header.split(";")
            if any(attribute.strip().lower() == "secure" for attribute in attributes):
                dropped.append((pair.partition("=")[0].strip(), str(url.copy_with(query=None))))
    return dropped


def _dropped_message(fixture: str, dropped: list[tuple[str, str]]) -> str:
    names = ", ".join(sorted({f"{name!r}" for name, _ in dropped}))
    host = urlsplit(dropped[0][1]).netloc
    return (
        f"{fixture}: the app set the Secure cookie {names} at {dropped[0][1]}, a plain http "
        "URL: the test client keeps it but never sends it back over http (as browsers do), "
        "so nobody is logged in for the rest of this test, and a test that passes proves "
        "nothing. Give the client an https base URL, e.g. httpx.AsyncClient("
        f'transport=httpx.ASGITransport(app=app), base_url="https://{host}"), '
        "or make the cookie not Secure in tests (SessionMiddleware(https_only=False))."
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    # Before any fixture of the test runs: what they trade is the test's, and they see its
    # options.
    item.config.stash[_CURRENT] = item
    for server in item.config.stash.get(_SERVERS, []):
        _serve_test(item, server)
    try:
        yield
    finally:
        # What the fixtures set stays for later tests (a session fixture may configure the
        # server for all of them), except the marker's options; the test's own changes go.
        for watch in item.stash.get(_WATCHES, []):
            if watch.restore is not None:
                now = {
                    name: getattr(watch.emulator, name) for name in _settable(type(watch.emulator))
                }
                watch.restore = {**now, **watch.restore}


def _serve_test(item: pytest.Item, server: WeChatEmulator, *, uses_it: bool = False) -> None:
    """Start ``item``'s turn on the session's ``server``: its counts from zero, checked at its
    teardown, and its marker's options (if it uses the server) until then."""
    uses_it = uses_it or "wechat_emulator_server" in getattr(item, "fixturenames", ())
    options = _marker_options(item, MARKER) if uses_it else {}
    restore = {name: getattr(server, name) for name in options}
    item.stash.setdefault(_WATCHES, []).append(_Watch(server, restore))
    server.exchanges.clear()
    server.calls.clear()
    for name, value in options.items():
        setattr(server, name, value)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    duplicates: dict[str, int] = {}
    try:
        yield  # the fixtures' teardown: what they do counts too
    finally:
        for watch in item.stash.get(_WATCHES, []):
            duplicates.update(watch.emulator.duplicate_exchanges())
            if watch.restore is not None:  # the session's server: as before the test
                for name, value in watch.restore.items():
                    setattr(watch.emulator, name, value)
                watch.emulator._faults.clear()  # injected by the test and not used up
    if duplicates and item.get_closest_marker(ALLOW_DUPLICATES) is None:
        pytest.fail(_duplicates_message(duplicates), pytrace=False)


def _duplicates_message(duplicates: dict[str, int]) -> str:
    listed = ", ".join(f"code_hash={h} traded {n} times" for h, n in sorted(duplicates.items()))
    return (
        f"WeChat emulator: {len(duplicates)} code(s) traded more than once ({listed}). At "
        "WeChat every exchange after the first fails (errcode 40163, then 40029) and the user "
        "sees a login error: trade each code once (WeChatOAuthMiddleware, "
        "MiniProgramMiddleware and WeComOAuthMiddleware do, with one backend shared by "
        f"every worker). Mark the test @pytest.mark.{ALLOW_DUPLICATES} if it trades a code "
        "twice on purpose."
    )


def _marker_options(item: pytest.Item, name: str) -> dict[str, Any]:
    """The options of every ``name`` marker (``wechat_emulator``, ``wecom_emulator``) on the
    test (the closest wins), checked against that emulator's settings."""
    from asgi_wechat_oauth.testing import WeChatEmulator, WeComEmulator

    emulator_type = WeComEmulator if name == WECOM_MARKER else WeChatEmulator
    options: dict[str, Any] = {}
    for marker in item.iter_markers(name):  # closest first
        if marker.args:
            pytest.fail(f"@pytest.mark.{name} takes keyword options only", pytrace=False)
        options = {**marker.kwargs, **options}
    unknown = sorted(set(options) - _settable(emulator_type))
    if unknown:
        known = ", ".join(sorted(_settable(emulator_type)))
        pytest.fail(
            f"@pytest.mark.{name}: unknown option(s) {', '.join(unknown)}; known: {known}",
            pytrace=False,
        )
    return options


def _settable(emulator_type: type[Any]) -> set[str]:
    """The emulator's settings: its constructor fields, except its counters, tokens and URL."""
    fields = dataclasses.fields(emulator_type)
    counters = {"exchanges", "calls", "url", "tokens", "server_tokens"}
    return {f.name for f in fields if f.init} - counters
