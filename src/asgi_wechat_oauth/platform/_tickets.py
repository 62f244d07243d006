"""Where a third-party platform keeps WeChat's ``component_verify_ticket``: in the backend, so
that every worker sharing it has the ticket and, on Redis, a restart keeps it.

WeChat pushes a new ticket every 10 minutes; each lives 12 hours. The ticket is stored as a
result under a key of its own (the backend contract every backend has: ``forget``, ``claim``,
``complete``), read with :meth:`~asgi_wechat_oauth.backends.TokenStore.lookup`, and a newer
push replaces it (judged by the push's ``CreateTime``, so a late retry of an older push never
replaces a newer ticket).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio

from .._core.contract import register_result, store_once
from ..backends import Backend, Outcome, TokenStore
from ..errors import ErrorReason, ServiceUnavailable, WeChatOAuthError

logger = logging.getLogger("asgi_wechat_oauth")

#: WeChat's tickets live 12 hours.
TICKET_TTL = 12 * 3600.0
#: A ticket is ``ticket@@@`` and some 90 base64url characters; far longer is not a ticket.
MAX_TICKET_LENGTH = 512
#: Tries to replace the stored ticket while another worker is storing one at the same moment.
_ATTEMPTS = 3
#: Seconds to wait for that other worker (a store is two backend calls).
_WAIT = 2.0


@dataclass(frozen=True)
class VerifyTicket:
    """A ``component_verify_ticket`` (never in ``repr``) and its push's ``CreateTime``."""

    kind: ClassVar[str] = "platform_verify_ticket"

    ticket: str = field(repr=False)
    created_at: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.ticket, str) or not 0 < len(self.ticket) <= MAX_TICKET_LENGTH:
            raise ValueError("a ticket is a non-empty string of at most 512 characters")
        if not self.ticket.isascii() or not self.ticket.isprintable() or " " in self.ticket:
            raise ValueError("a ticket is printable ASCII without spaces")
        if not isinstance(self.created_at, int) or isinstance(self.created_at, bool):
            raise ValueError("created_at is an integer")

    def to_dict(self) -> dict[str, Any]:
        return {"ticket": self.ticket, "created_at": self.created_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifyTicket:
        return cls(ticket=data["ticket"], created_at=data.get("created_at", 0))


register_result(VerifyTicket.kind, VerifyTicket.from_dict)


def is_ticket(value: object) -> bool:
    """Whether ``value`` can be stored as a ticket (checked before anything is stored)."""
    try:
        VerifyTicket(value)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


class TicketStore:
    """The current ``component_verify_ticket`` of ``component_appid``, kept in ``backend``
    (a :class:`~asgi_wechat_oauth.backends.TokenStore`: ``MemoryBackend``, ``RedisBackend``)
    for ``ttl`` seconds (WeChat's 12 hours).

    The key is a hash of the appid. The process that stored a ticket keeps a copy, which
    answers when the backend lost it before its time (a memory backend's bounded cache evicting
    it under a burst of logins, Redis evicting under ``maxmemory``): a ticket stays valid its
    12 hours wherever it is kept. :meth:`drop` forgets both.
    """

    def __init__(self, backend: Backend, component_appid: str, *, ttl: float = TICKET_TTL) -> None:
        if not isinstance(backend, TokenStore):
            raise TypeError(
                f"TicketStore needs a backend with lookup() (a TokenStore, as MemoryBackend and "
                f"RedisBackend are); {type(backend).__name__} has not"
            )
        if not 0 < ttl <= TICKET_TTL:
            raise ValueError("ttl must be positive and at most 12 hours (a ticket's life)")
        self.backend = backend
        self._store: TokenStore = backend
        self.component_appid = component_appid
        self.ttl = ttl
        digest = hashlib.sha256(f"component_verify_ticket:{component_appid}".encode())
        self.key = "platform_ticket:" + digest.hexdigest()
        #: The last ticket this process stored, and until when (``time.monotonic()``).
        self._copy: tuple[VerifyTicket, float] | None = None

    def __repr__(self) -> str:
        return f"TicketStore(component_appid={self.component_appid!r}, backend={self.backend!r})"

    async def save(self, ticket: str, *, created_at: int = 0) -> bool:
        """Store ``ticket`` (from a push made at ``created_at``, Unix seconds) for every worker;
        ``False`` when a ticket of a later push is stored already (kept). ``ValueError`` for
        what is not a ticket; the backend's own error (503) when it cannot store it."""
        new = VerifyTicket(ticket, created_at)

        def older(outcome: Outcome) -> bool:
            return not isinstance(outcome, VerifyTicket) or outcome.created_at <= created_at

        for _ in range(_ATTEMPTS):
            with anyio.CancelScope(shield=True):  # a forget is not left half done
                found = await self._store.lookup(self.key)
                if found is not None and not older(found[0]):
                    return False
                if found is not None:
                    await self.backend.forget(self.key, only_if=older)
            try:
                stored = await store_once(self.backend, self.key, new, ttl=self.ttl, wait=_WAIT)
            except TimeoutError:
                continue  # another worker was storing one: look again
            if stored is None:
                self._copy = (new, time.monotonic() + self.ttl)
                return True
            if not older(stored):
                return False
        raise ServiceUnavailable(
            ErrorReason.OVERLOADED, "The ticket could not be stored now; WeChat pushes it again."
        )

    async def current(self) -> str | None:
        """The ticket to use now, or ``None`` before the first push (or 12 hours after the
        last). Raises the backend's own error when it cannot answer."""
        found = await self._store.lookup(self.key)
        if found is not None and isinstance(found[0], VerifyTicket) and found[1] > 0:
            return found[0].ticket
        copy = self._copy
        if copy is not None and time.monotonic() < copy[1]:
            return copy[0].ticket
        return None

    async def drop(self, ticket: str) -> None:
        """WeChat refused ``ticket`` (expired, invalid): forget it, here and in the backend,
        unless a newer one replaced it meanwhile, so that no call is made with it again."""

        def is_it(outcome: Outcome) -> bool:
            return isinstance(outcome, VerifyTicket) and hmac.compare_digest(
                outcome.ticket.encode(), ticket.encode()
            )

        copy = self._copy
        if copy is not None and is_it(copy[0]):
            self._copy = None
        try:
            await self.backend.forget(self.key, only_if=is_it)
        except WeChatOAuthError as exc:  # the next push replaces it anyway
            logger.warning("wechat_oauth.platform_ticket_not_dropped reason=%s", exc.reason)
