"""Login loops: a browser whose session the app never gets back logs in again and again.

A session cookie the browser does not return (``Secure`` over plain http, ``SameSite=Strict``,
a session middleware that does not cover the callback) sends the user through login forever,
each trip trading a fresh code, with nothing in any log. A small cookie of our own (no secrets:
a count, when the window started, a hash of the last state) counts the logins this browser
completed within a window: one WARNING names the likely causes, and past the limit the login
endpoint answers an explanatory page instead of another trip to WeChat. The value is signed
(HMAC), so a forged or tossed one is ignored rather than locking anyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time

from .asgi import Message, Send
from .cookies import set_cookie

logger = logging.getLogger("asgi_wechat_oauth")

#: The cookie's name (``__Host-`` in front over https).
COOKIE = "wechat_oauth_logins"
#: The completed login that logs the WARNING (or the limit, when lower).
WARN_AT = 3
_VALUE = re.compile(r"(\d{1,4})\.(\d{1,12})\.([0-9a-f]{8})\.([0-9a-f]{32})")


class LoginLoopGuard:
    """Counts completed logins per browser in a signed cookie; see the module docstring."""

    def __init__(self, *, limit: int, window: float, key: bytes) -> None:
        self.limit = limit
        self.window = window
        self._key = key

    def __repr__(self) -> str:
        return f"LoginLoopGuard(limit={self.limit!r}, window={self.window!r})"

    def exceeded(self, cookie: str | None) -> bool:
        """Whether this browser completed ``limit`` logins within the window."""
        count, _, _ = self._read(cookie)
        return count >= self.limit

    def completed(self, cookie: str | None, state: str | None, *, name: str, https: bool) -> str:
        """Count a completed login; return the ``Set-Cookie`` value (cookie ``name``) that
        records it. Every callback of one login (the WeChat browser's duplicate, a refresh)
        counts once."""
        count, started, last = self._read(cookie)
        tag = hashlib.sha256((state or "").encode()).hexdigest()[:8]
        if tag != last:
            count += 1
            if count == 1:
                started = int(time.time())
            if count == min(WARN_AT, self.limit):
                logger.warning(
                    "wechat_oauth.login_loop logins=%d window=%ss: this browser keeps logging "
                    "in, so the app's session cookie is evidently not coming back. Likely "
                    "causes: a Secure session cookie over plain http (e.g. SessionMiddleware "
                    "https_only=True without https); SameSite=Strict on the session cookie "
                    "(the callback is a cross-site navigation from WeChat: use Lax); a session "
                    "middleware that does not wrap the callback route, or whose cookie path "
                    "or domain does not cover the pages that check it.",
                    count,
                    int(self.window),
                )
        value = f"{count}.{started}.{tag}"
        return set_cookie(
            name,
            f"{value}.{self._mac(value)}",
            path="/",
            max_age=int(self.window),
            https=https,
        )

    def _read(self, cookie: str | None) -> tuple[int, int, str]:
        """``(count, window start, last state's tag)``; a fresh window when none is running
        or the value is not one this site signed."""
        found = _VALUE.fullmatch(cookie or "")
        if found is None:
            return 0, 0, ""
        value = cookie.rpartition(".")[0] if cookie else ""
        if not hmac.compare_digest(found.group(4), self._mac(value)):
            return 0, 0, ""
        count, started = int(found.group(1)), int(found.group(2))
        if not 0 <= time.time() - started <= self.window:
            return 0, 0, ""
        return count, started, found.group(3)

    def _mac(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:32]


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
