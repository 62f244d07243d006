"""Desktop login through the official account: the handoff, as the backend keeps it.

A desktop browser (no website app) shows a QR code of a login link with a random handoff id;
a phone opens it in WeChat, logs in through the official account, confirms, and the desktop,
polling, is handed the identity once. Everything the two devices share lives in the backend
(every backend: Redis with several workers, the poll and the phone on different ones), as
results of its own kinds stored with ``claim``/``complete`` and read with ``lookup``. Each key
is written once, by the first ``claim`` that takes its lease (one ``SET NX`` on Redis), so
every step that must happen once is decided by the store, not by a worker:

- ``start``: the desktop's record (a hash of its cookie, its ``next``, its browser), for
  ``ttl`` seconds;
- ``scan``: the identity of the first WeChat user to log in through the link (a phone of
  another user gets ``handoff_taken``), and a hash of that phone's login cookie;
- ``confirm``: the phone's POST, which copies the identity where the desktop reads it;
- ``used``: the desktop's redemption, once: the second gets ``handoff_used``.

Nothing a desktop can read holds the identity before the phone confirms; the desktop's cookie
(HttpOnly, only its hash stored) is checked by the poll and the redemption.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar

from .._core.contract import Backend, Outcome, TokenStore, register_result, store_once
from ..errors import ErrorReason, HandoffExpired, StateRejected
from ._identity import WeChatIdentity

#: A handoff id as links carry it (16 random bytes; the signed state holds them raw).
HANDOFF_ID = re.compile(r"[0-9a-f]{32}")
#: The desktop's cookie (``__Host-`` in front over https) and the form of its value.
DESKTOP_COOKIE = "wechat_oauth_handoff"
DESKTOP_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")
#: Seconds a confirmation outlives the handoff, so that one made in its last second still
#: reaches the desktop's next poll.
CONFIRM_GRACE = 30.0
#: Seconds a step waits for the same step running elsewhere (the phone's duplicate callback).
_WAIT = 5.0


def digest(value: str) -> str:
    """What is stored of a cookie: its SHA-256, never the value."""
    return hashlib.sha256(value.encode()).hexdigest()


def _same(stored: str, value: str | None) -> bool:
    return value is not None and hmac.compare_digest(stored, digest(value))


@dataclass(frozen=True)
class HandoffStarted:
    """The desktop's side: who may redeem (``desktop``, its cookie's hash), where it goes
    (``next``), and the browser the phone is told about (``browser``, a short description)."""

    kind: ClassVar[str] = "wechat_handoff"
    #: Any desktop page makes one, without a code: kept apart from code results (see
    #: ``MemoryBackend``), so that a flood of pages cannot push a real login's result out.
    unbidden: ClassVar[bool] = True
    desktop: str
    next: str | None
    browser: str

    def to_dict(self) -> dict[str, Any]:
        return {"desktop": self.desktop, "next": self.next, "browser": self.browser}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HandoffStarted:
        next_path = data.get("next")
        return cls(
            desktop=str(data["desktop"]),
            next=next_path if isinstance(next_path, str) else None,
            browser=str(data["browser"]),
        )


@dataclass(frozen=True)
class HandoffScanned:
    """The phone's login: its identity and its login cookie's hash (who may confirm)."""

    kind: ClassVar[str] = "wechat_handoff_scan"
    phone: str
    identity: WeChatIdentity

    def to_dict(self) -> dict[str, Any]:
        return {"phone": self.phone, "identity": self.identity.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HandoffScanned:
        return cls(phone=str(data["phone"]), identity=WeChatIdentity.from_dict(data["identity"]))


@dataclass(frozen=True)
class HandoffConfirmed:
    """What the desktop is handed: the confirmed identity, for the desktop that started it."""

    kind: ClassVar[str] = "wechat_handoff_ok"
    desktop: str
    next: str | None
    identity: WeChatIdentity

    def to_dict(self) -> dict[str, Any]:
        return {"desktop": self.desktop, "next": self.next, "identity": self.identity.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HandoffConfirmed:
        next_path = data.get("next")
        return cls(
            desktop=str(data["desktop"]),
            next=next_path if isinstance(next_path, str) else None,
            identity=WeChatIdentity.from_dict(data["identity"]),
        )


@dataclass(frozen=True)
class HandoffUsed:
    """The handoff was redeemed: a second redemption finds this."""

    kind: ClassVar[str] = "wechat_handoff_used"

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HandoffUsed:
        return cls()


for _kind in (HandoffStarted, HandoffScanned, HandoffConfirmed, HandoffUsed):
    register_result(_kind.kind, _kind.from_dict)


def expired() -> HandoffExpired:
    return HandoffExpired(
        ErrorReason.HANDOFF_EXPIRED,
        "This QR code has expired: the computer's page shows a new one.",
    )


def not_yours() -> StateRejected:
    return StateRejected(
        ErrorReason.HANDOFF_NOT_YOURS,
        "This login was started in another browser; please start it again here.",
    )


@dataclass(frozen=True)
class Waiting:
    """A handoff found by the poll or the phone: its record and the seconds it has left (by
    the backend's clock, so that workers' clocks need not agree)."""

    started: HandoffStarted
    remaining: float


class HandoffStore:
    """The handoffs of one middleware: its backend (which must be a :class:`TokenStore`), its
    appid, and the lifetime of a handoff (``ttl`` seconds)."""

    def __init__(self, backend: Backend, appid: str, ttl: float) -> None:
        if not isinstance(backend, TokenStore):
            raise TypeError("a handoff needs a backend that can look results up (TokenStore)")
        self.backend = backend
        self._lookup = backend.lookup
        self.appid = appid
        self.ttl = ttl

    def _key(self, handoff: str, part: str) -> str:
        """A hash, as every key is, that never is a code's key (those are 64 hex digits)."""
        return "handoff:" + hashlib.sha256(f"{self.appid}:{handoff}:{part}".encode()).hexdigest()

    async def _find(self, handoff: str, part: str) -> tuple[Outcome, float] | None:
        return await self._lookup(self._key(handoff, part))

    async def _write_once(self, key: str, outcome: Outcome, ttl: float) -> Outcome | None:
        """Store ``outcome`` under ``key`` unless something is stored there already: ``None``
        when this call stored it, else what is stored (written by whoever took the lease first,
        waited for when still being written)."""
        try:
            return await store_once(self.backend, key, outcome, ttl=ttl, wait=_WAIT)
        except TimeoutError:
            raise expired() from None  # never settled: gone, and a new QR code starts over

    async def start(self, desktop: str, next_path: str | None, browser: str) -> str:
        """A new handoff for the desktop whose cookie is ``desktop``: its id."""
        handoff = secrets.token_hex(16)
        record = HandoffStarted(digest(desktop), next_path, browser)
        await self._write_once(self._key(handoff, "start"), record, self.ttl)
        return handoff

    async def waiting(self, handoff: str) -> Waiting:
        """The handoff's record (410 ``handoff_expired`` when it is gone)."""
        found = await self._find(handoff, "start")
        if found is None or not isinstance(found[0], HandoffStarted):
            raise expired()
        return Waiting(found[0], found[1])

    async def scan(self, handoff: str, identity: WeChatIdentity, phone: str) -> Waiting:
        """Record the phone's login (``phone``: its login cookie). The same user again (the
        duplicate callback, a refresh) finds it recorded; another user gets 403
        ``handoff_taken``, and the handoff ends (unless already confirmed)."""
        waiting = await self.waiting(handoff)
        scanned = HandoffScanned(digest(phone), identity)
        key = self._key(handoff, "scan")
        found = await self._write_once(key, scanned, waiting.remaining)
        if found is not None and not (
            isinstance(found, HandoffScanned)
            and found.identity.openid == identity.openid
            and found.phone == scanned.phone
        ):
            # Two people scanned one QR code (one may have read it over the other's shoulder):
            # neither is handed the desktop; its page offers a new QR code.
            await self.backend.forget(
                self._key(handoff, "start"), only_if=lambda o: isinstance(o, HandoffStarted)
            )
            raise StateRejected(
                ErrorReason.HANDOFF_TAKEN,
                "Someone else also scanned this QR code: it no longer logs anyone in. Get a new "
                "one on the computer.",
            )
        return waiting

    async def _scanned_by(self, handoff: str, phone: str | None) -> HandoffScanned:
        found = await self._find(handoff, "scan")
        if found is None or not isinstance(found[0], HandoffScanned):
            raise expired()
        if not _same(found[0].phone, phone):
            raise not_yours()
        return found[0]

    async def confirm(self, handoff: str, phone: str | None) -> Waiting:
        """The phone that scanned confirms: the desktop can now be handed the identity (once).
        Confirming again changes nothing."""
        waiting = await self.waiting(handoff)
        scanned = await self._scanned_by(handoff, phone)
        started = waiting.started
        confirmed = HandoffConfirmed(started.desktop, started.next, scanned.identity)
        key = self._key(handoff, "confirm")
        await self._write_once(key, confirmed, waiting.remaining + CONFIRM_GRACE)
        return waiting

    async def cancel(self, handoff: str, phone: str | None) -> None:
        """The phone that scanned declines: the handoff ends (the desktop's page offers a new
        QR code). Once confirmed, it is too late: nothing changes (the page says the computer
        is logged in)."""
        await self._scanned_by(handoff, phone)
        if await self.is_confirmed(handoff):
            return
        await self.backend.forget(
            self._key(handoff, "start"), only_if=lambda o: isinstance(o, HandoffStarted)
        )

    async def is_confirmed(self, handoff: str) -> bool:
        found = await self._find(handoff, "confirm")
        return found is not None and isinstance(found[0], HandoffConfirmed)

    async def poll(self, handoff: str, desktop: str | None) -> bool:
        """Whether the handoff is confirmed (and so can be redeemed), for the desktop that
        started it: 403 ``handoff_not_yours`` for another, 410 ``handoff_expired`` once gone.
        One look-up once confirmed, two while waiting; never a call to WeChat."""
        found = await self._find(handoff, "confirm")
        if found is not None and isinstance(found[0], HandoffConfirmed):
            if not _same(found[0].desktop, desktop):
                raise not_yours()
            return True
        waiting = await self.waiting(handoff)
        if not _same(waiting.started.desktop, desktop):
            raise not_yours()
        return False

    async def redeem(self, handoff: str, desktop: str | None) -> WeChatIdentity:
        """The confirmed identity, once, for the desktop that started the handoff, with that
        desktop's ``next``. 410 ``handoff_used`` the second time."""
        key = self._key(handoff, "confirm")
        found = await self._lookup(key)
        if found is None or not isinstance(found[0], HandoffConfirmed):
            if await self._find(handoff, "used") is not None:
                raise _used()
            raise expired()
        confirmed, remaining = found[0], found[1]
        if not _same(confirmed.desktop, desktop):
            raise not_yours()
        if await self._write_once(self._key(handoff, "used"), HandoffUsed(), remaining + 1):
            raise _used()
        # The tokens need not wait in the store any longer.
        await self.backend.forget(key, only_if=lambda o: isinstance(o, HandoffConfirmed))
        return dataclasses.replace(confirmed.identity, next=confirmed.next)


def _used() -> HandoffExpired:
    return HandoffExpired(
        ErrorReason.HANDOFF_USED, "This login was already used; please log in again."
    )
