"""Login loops: a browser whose session the app never gets back logs in again and again.

A session cookie the browser does not return (``Secure`` over plain http, ``SameSite=Strict``,
a session middleware that does not cover the callback) sends the user through login forever,
each trip trading a fresh code, with nothing in any log. A small cookie of our own (no secrets:
a count, when the run started, when the last login completed, a hash of its state and of the
names of the cookies the app set with it) counts the logins of such a run: one WARNING names the
likely causes, and past the limit the login endpoint answers an explanatory page instead of
another trip to WeChat. The value is signed (HMAC), so a forged or tossed one is ignored rather
than locking anyone out.

A person logs in again too: after logging out, to switch accounts, or just because. A login
continues a run only when it looks like a loop: it starts within :data:`QUICK` seconds of the
previous one's completion, and the browser did not bring the app's session back. The session
came back when a session middleware in front of this one (Starlette's ``SessionMiddleware``,
Litestar's) found a non-empty ``scope["session"]`` in the browser's cookie, or when every cookie
the app's answer to the callback set is sent again. Any other login starts a new run.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime

from .asgi import Message, Scope, Send
from .cookies import HOST_PREFIX, set_cookie

logger = logging.getLogger("asgi_wechat_oauth")

#: The cookie's name (``__Host-`` in front over https).
COOKIE = "wechat_oauth_logins"
#: The completed login that logs the WARNING (or the limit, when lower).
WARN_AT = 3
#: Seconds between a login's completion and the next login's start within which the next one
#: may be a loop's: a loop goes callback, app, login endpoint by redirects, in a second or two.
QUICK = 10
#: How many of the names of the cookies the app sets with a login are kept (the first ones).
_NAMES = 4
#: ``count.started-last.STATENAMES.MAC``: the state's hash, then a hash per name.
_VALUE = re.compile(
    r"(\d{1,4})\.(\d{1,12})-(\d{1,12})\.([0-9a-f]{8})((?:[0-9a-f]{6}){0,4})\.([0-9a-f]{32})"
)


def _now() -> float:
    return time.time()


class _Run:
    """What the cookie says: ``count`` logins since ``started``, the last one completed at
    ``last`` with state hash ``state``, setting the cookies whose name hashes are ``names``."""

    def __init__(self, count: int, started: int, last: int, state: str, names: str) -> None:
        self.count, self.started, self.last, self.state = count, started, last, state
        self.names = [names[i : i + 6] for i in range(0, len(names), 6)]


class LoginLoopGuard:
    """Counts a browser's logins that look like a loop, in a signed cookie; see the module
    docstring."""

    def __init__(self, *, limit: int, window: float, key: bytes, ours: Iterable[str] = ()) -> None:
        self.limit = limit
        self.window = window
        self._key = key
        #: Our own cookies (the login cookie), never taken for the app's.
        self._ours = {COOKIE, *ours}

    def __repr__(self) -> str:
        return f"LoginLoopGuard(limit={self.limit!r}, window={self.window!r})"

    # --- at the login endpoint ----------------------------------------------------------------

    def at_login(
        self, scope: Scope, cookie: str | None, *, name: str, https: bool
    ) -> tuple[bool, list[str]]:
        """``(exceeded, set_cookies)`` for a login starting: exceeded when this browser's run
        reached the limit and this login continues it; the ``Set-Cookie`` that ends the run
        when this login does not look like a loop's."""
        run = self._read(cookie)
        if run is None:
            return False, []
        if _now() - run.last > QUICK or self._session_came_back(scope, run):
            return False, [set_cookie(name, "", path="/", max_age=0, https=https)]
        return run.count >= self.limit, []

    def _session_came_back(self, scope: Scope, run: _Run) -> bool:
        session = scope.get("session")
        if isinstance(session, Mapping) and session:
            return True  # a session middleware in front of us read the browser's session
        if not run.names:
            return False
        sent = {self._tag(name) for name in _cookie_names(scope)}
        return all(tag in sent for tag in run.names)

    # --- at the callback ----------------------------------------------------------------------

    def counting(
        self,
        send: Send,
        cookie: str | None,
        state: str | None,
        *,
        name: str,
        https: bool,
        also: Iterable[str] = (),
    ) -> Send:
        """``send`` for the app's answer to a completed login: its start gets the ``Set-Cookie``
        that counts the login (cookie ``name``), and the ``also`` ones. Every callback of one
        login (the WeChat browser's duplicate, a refresh) counts once."""
        extra = list(also)

        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = self._app_cookies(headers)
                counted = self._completed(cookie, state, names, name=name, https=https)
                added = [(b"set-cookie", c.encode()) for c in (counted, *extra)]
                message = {**message, "headers": [*headers, *added]}
            await send(message)

        return sender

    def _completed(
        self, cookie: str | None, state: str | None, names: list[str], *, name: str, https: bool
    ) -> str:
        run = self._read(cookie) or _Run(0, 0, 0, "", "")
        tag = hashlib.sha256((state or "").encode()).hexdigest()[:8]
        if tag != run.state:
            run.count += 1
            run.last = int(_now())
            run.state = tag
            run.names = [self._tag(n) for n in names[:_NAMES]]
            if run.count == 1:
                run.started = run.last
            if run.count == min(WARN_AT, self.limit):
                logger.warning(
                    "wechat_oauth.login_loop logins=%d window=%ss: this browser keeps logging "
                    "in, so the app's session cookie is evidently not coming back. Likely "
                    "causes: a Secure session cookie over plain http (e.g. SessionMiddleware "
                    "https_only=True without https); SameSite=Strict on the session cookie "
                    "(the callback is a cross-site navigation from WeChat: use Lax); a session "
                    "middleware that does not wrap the callback route, or whose cookie path "
                    "or domain does not cover the pages that check it.",
                    run.count,
                    int(self.window),
                )
        value = f"{run.count}.{run.started}-{run.last}.{run.state}{''.join(run.names)}"
        return set_cookie(
            name,
            f"{value}.{self._mac(value)}",
            path="/",
            max_age=int(self.window),
            https=https,
        )

    def _app_cookies(self, headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
        """The names of the cookies the app's answer sets (not those it deletes), ours aside."""
        names = []
        for header, value in headers:
            if header.lower() != b"set-cookie":
                continue
            pair, *attributes = value.decode("latin-1").split(";")
            cookie, sep, _ = pair.partition("=")
            base = cookie.strip().removeprefix(HOST_PREFIX)
            if sep and base and base not in self._ours and not _deletes(attributes):
                names.append(cookie.strip())
        return names

    # --- the cookie ---------------------------------------------------------------------------

    def _read(self, cookie: str | None) -> _Run | None:
        """The run the cookie records; None when none is running (or the value is not one
        this site signed)."""
        found = _VALUE.fullmatch(cookie or "")
        if found is None or cookie is None:
            return None
        if not hmac.compare_digest(found.group(6), self._mac(cookie.rpartition(".")[0])):
            return None
        count, started, last = (int(found.group(i)) for i in (1, 2, 3))
        run = _Run(count, started, last, found.group(4), found.group(5))
        if not 0 <= _now() - run.started <= self.window:
            return None
        return run

    def _mac(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:32]

    def _tag(self, name: str) -> str:
        return hmac.new(self._key, b"name:" + name.encode(), hashlib.sha256).hexdigest()[:6]


def _cookie_names(scope: Scope) -> set[str]:
    """The names of every cookie the request carries."""
    names = set()
    for header, raw in scope.get("headers", ()):
        if header == b"cookie":
            for pair in raw.decode("latin-1").split(";"):
                name, sep, _ = pair.partition("=")
                if sep:
                    names.add(name.strip())
    return names


def _deletes(attributes: list[str]) -> bool:
    """Whether a ``Set-Cookie`` deletes its cookie: ``Max-Age=0`` (or less), or an
    ``Expires`` in the past."""
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        key = key.strip().lower()
        if key == "max-age":
            try:
                return int(value.strip()) <= 0
            except ValueError:
                continue
        if key == "expires":
            try:
                return parsedate_to_datetime(value.strip()).timestamp() <= _now()
            except (TypeError, ValueError):
                continue
    return False


def with_cookies(send: Send, *set_cookies: str) -> Send:
    """``send`` with ``Set-Cookie`` headers added to the response start."""
    if not set_cookies:
        return send
    added = [(b"set-cookie", cookie.encode()) for cookie in set_cookies]

    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", ()), *added]
            message = {**message, "headers": headers}
        await send(message)

    return sender
