"""What the demo runs (:class:`DemoConfig`) and what it counts (:class:`Tally`, one per mode,
and :class:`DemoResult`, both modes and the verdict)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

NAIVE_PATH = "/naive/callback"
MIDDLEWARE_PATH = "/wechat/callback"
#: (label, callback path), in the order the demo runs them.
MODES = (("naive", NAIVE_PATH), ("middleware", MIDDLEWARE_PATH))


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs: how many logins, how slow WeChat is, and how the browser behaves."""

    logins: int = 100
    latency: float = 0.08  #: seconds the emulated WeChat takes to answer an exchange
    gap: float = 0.019  #: seconds between callback #1 and its duplicate #2
    concurrency: int = 20  #: logins in progress at once
    abort_after: float = 0.01  #: seconds after which the browser aborts callback #1

    def __post_init__(self) -> None:
        if self.logins < 1 or self.concurrency < 1:
            raise ValueError("logins and concurrency must be at least 1")
        if not min(self.latency, self.gap, self.abort_after) >= 0:  # also refuses nan
            raise ValueError("latency, gap and abort_after must be >= 0 seconds")

    @property
    def stagger(self) -> float:
        """Seconds between the first logins of two phones: they start spread over the time one
        login takes, as real users do, rather than all in the same millisecond. (A herd of
        simultaneous logins would stall the one event loop that runs the phones, the app and
        WeChat, and delay callback #1 past its abort before it is even sent.)"""
        return (self.gap + self.latency) / self.concurrency


@dataclass
class Tally:
    """What happened to one mode's logins. ``errors`` counts, by reason, the error pages users
    saw (a non-200 answer to callback #2, the one the WeChat browser displays)."""

    mode: str
    logins: int = 0
    callbacks: int = 0  #: callback requests that reached the app (two per login)
    exchanges: int = 0  #: calls to WeChat's ``sns/oauth2/access_token``, counted by the emulator
    identities: int = 0  #: users who saw a 200 carrying their openid
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def exchanges_per_login(self) -> float:
        return self.exchanges / self.logins if self.logins else 0.0


@dataclass(frozen=True)
class DemoResult:
    config: DemoConfig
    naive: Tally
    middleware: Tally

    @property
    def ok(self) -> bool:
        """The claim the demo makes: behind the middleware no user saw an error, and WeChat was
        asked exactly once per login."""
        mw = self.middleware
        return mw.error_count == 0 and mw.exchanges == mw.logins
