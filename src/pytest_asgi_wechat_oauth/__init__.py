"""The pytest plugin of asgi-wechat-oauth: the WeChat emulator as fixtures, a login helper, and
a check that fails any test in which a code was traded more than once.

Registered through the ``pytest11`` entry point as ``asgi_wechat_oauth`` (``-p
no:asgi_wechat_oauth`` turns it off). It lives outside the ``asgi_wechat_oauth`` package, whose
import brings httpx and Starlette: importing this module imports pytest alone, and the fixtures
import the emulator when a test asks for them, so a suite that does not use them pays nothing.

- ``wechat_emulator``: a fresh in-process :class:`~asgi_wechat_oauth.testing.WeChatEmulator`
  per test; ``@pytest.mark.wechat_emulator(latency=0.08, ...)`` sets its options.
- ``wechat_emulator_server`` (session): one emulator served on a loopback port; the marker's
  options apply to it for one test, and are restored afterwards.
- ``wechat_login``: ``await wechat_login(client, next="/profile")`` logs in through the app's
  login endpoint, the emulator's consent page and the WeChat browser's double callback.
- At teardown, a test whose emulator saw a code traded more than once fails, unless marked
  ``@pytest.mark.wechat_allow_duplicate_exchange``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    import httpx

    from asgi_wechat_oauth.testing import WeChatEmulator

MARKER = "wechat_emulator"
ALLOW_DUPLICATES = "wechat_allow_duplicate_exchange"


@dataclasses.dataclass
class _Watch:
    """An emulator a test used: its counts before the test, and settings to restore after."""

    emulator: WeChatEmulator
    before: Counter[str]
    restore: dict[str, Any] | None = None


_WATCHES = pytest.StashKey[list[_Watch]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the test's WeChat emulator, e.g. latency=0.08, "
        "double_navigation=True, user=EmulatedUser(...), code_ttl=1.0",
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

    emulator = WeChatEmulator(**_marker_options(request.node))
    request.node.stash.setdefault(_WATCHES, []).append(_Watch(emulator, Counter()))
    return emulator


@pytest.fixture(scope="session")
def wechat_emulator_server() -> Iterator[WeChatEmulator]:
    """One WeChat emulator for the session, served by uvicorn on ``wechat_emulator_server.url``
    (loopback, a free port), for tests that drive a real server or browser. Needs uvicorn."""
    from asgi_wechat_oauth.testing import EmulatorServer

    try:
        server = EmulatorServer()
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.emulator
    finally:
        server.stop()


@pytest.fixture
def wechat_login(request: pytest.FixtureRequest) -> Any:
    """``await wechat_login(client, login_path="/wechat/login", next=None, scope=None,
    double=True)``: log in through the app as the WeChat browser does, against this test's
    emulator (``wechat_emulator_server`` if the test uses it, else ``wechat_emulator``), and
    return the callback's response. See ``asgi_wechat_oauth.testing.web_login``."""
    from asgi_wechat_oauth.testing import web_login

    name = "wechat_emulator_server" if "wechat_emulator_server" in request.fixturenames else None
    emulator = request.getfixturevalue(name or "wechat_emulator")
    login: Callable[..., Awaitable[httpx.Response]] = functools.partial(
        web_login, emulator=emulator
    )
    return login


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield
    # The session's server: count this test's exchanges only, and apply the marker's options
    # for this test alone.
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    server = funcargs.get("wechat_emulator_server")
    if server is not None:
        options = _marker_options(item)
        restore = {name: getattr(server, name) for name in _settable(type(server))}
        item.stash.setdefault(_WATCHES, []).append(
            _Watch(server, _snapshot(server.exchanges), restore)
        )
        for name, value in options.items():
            setattr(server, name, value)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    duplicates: dict[str, int] = {}
    try:
        yield  # the fixtures' teardown: what they do counts too
    finally:
        for watch in item.stash.get(_WATCHES, []):
            duplicates.update(watch.emulator.duplicate_exchanges(since=watch.before))
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
        "sees a login error: trade each code once (WeChatOAuthMiddleware does, with one backend "
        f"shared by every worker). Mark the test @pytest.mark.{ALLOW_DUPLICATES} if it trades "
        "a code twice on purpose."
    )


def _marker_options(item: pytest.Item) -> dict[str, Any]:
    """The options of every ``wechat_emulator`` marker on the test (the closest wins)."""
    from asgi_wechat_oauth.testing import WeChatEmulator

    options: dict[str, Any] = {}
    for marker in item.iter_markers(MARKER):  # closest first
        if marker.args:
            pytest.fail(f"@pytest.mark.{MARKER} takes keyword options only", pytrace=False)
        options = {**marker.kwargs, **options}
    unknown = sorted(set(options) - _settable(WeChatEmulator))
    if unknown:
        known = ", ".join(sorted(_settable(WeChatEmulator)))
        pytest.fail(
            f"@pytest.mark.{MARKER}: unknown option(s) {', '.join(unknown)}; known: {known}",
            pytrace=False,
        )
    return options


def _settable(emulator_type: type[Any]) -> set[str]:
    """The emulator's settings: its constructor fields, except its counters and its URL."""
    fields = dataclasses.fields(emulator_type)
    return {f.name for f in fields if f.init} - {"exchanges", "calls", "url"}


def _snapshot(counts: Counter[str]) -> Counter[str]:
    """A copy of a counter a server thread may be writing to."""
    while True:
        try:
            return Counter(dict(counts))
        except RuntimeError:  # changed size during the copy: try again
            continue
