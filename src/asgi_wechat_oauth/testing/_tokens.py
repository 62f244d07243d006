"""Server access tokens as WeChat and WeCom hand them out: one current token per app, expiry,
revocation, and the classic endpoint's rotation that retires the previous token."""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field


@dataclass
class ServerTokens:
    """The tokens of one app. ``ttl`` is the lifetime of a new token (7,200 s at WeChat)."""

    prefix: str = "TOKEN_"
    ttl: int = 7200
    #: How long the previous token keeps working after :meth:`rotate` (about 5 minutes).
    overlap: float = 300.0
    #: ``stable_token`` forces a new token at most once in this many seconds; a forced call
    #: sooner gets the current one back, as WeChat documents ("otherwise it does not refresh").
    force_spacing: float = 30.0
    #: Calls that asked for ``force_refresh``, whether or not they rotated (WeChat allows 20
    #: a day): what a test counts to see that workers do not waste them.
    force_requests: int = 0
    _expiry: dict[str, float] = field(default_factory=dict, repr=False)
    _current: str | None = field(default=None, repr=False)
    _issued: list[str] = field(default_factory=list, repr=False)
    _forced_at: float | None = field(default=None, repr=False)

    @property
    def issued(self) -> list[str]:
        """Every token ever issued, revoked ones included (for tests that look for leaks)."""
        return list(self._issued)

    def current(self, *, force: bool = False) -> tuple[str, int]:
        """The valid current token and its remaining seconds, or a new one if there is none
        (``gettoken`` and ``stable_token``); ``force`` rotates, unless the last forced
        rotation was less than ``force_spacing`` seconds ago."""
        now = time.monotonic()
        if force:
            self.force_requests += 1
            if self._forced_at is None or now - self._forced_at >= self.force_spacing:
                self._forced_at = now
                return self.rotate()
        token = self._current
        if token is not None:
            left = self._expiry[token] - now
            if left > 0:
                return token, math.ceil(left)
        return self.rotate()

    def rotate(self) -> tuple[str, int]:
        """A new token; the previous one works ``overlap`` seconds more (``cgi-bin/token``)."""
        now = time.monotonic()
        if self._current is not None:
            self._expiry[self._current] = min(self._expiry[self._current], now + self.overlap)
        token = self.prefix + secrets.token_urlsafe(32)
        self._expiry[token] = now + self.ttl
        self._issued.append(token)
        self._current = token
        return token, self.ttl

    def check(self, token: str) -> int:
        """0 for a valid token, 40014 for an unknown or revoked one, 42001 for an expired one."""
        expiry = self._expiry.get(token)
        if expiry is None:
            return 40014
        return 42001 if time.monotonic() >= expiry else 0

    def expire(self) -> None:
        """Every token expires now, as if its two hours had passed (answers 42001)."""
        for token in self._expiry:
            self._expiry[token] = 0.0

    def revoke(self) -> None:
        """Every token becomes invalid (answers 40014), as after a secret reset."""
        self._expiry.clear()
        self._current = None
