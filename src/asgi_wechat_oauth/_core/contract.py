"""The backend contract: claim a code, complete it, wait for it.

One callback request runs: ``claim`` → (stored outcome: serve it) | (lease: trade the code, then
``complete``) | (neither: ``wait``, and claim again if the wait ends without an outcome). The
single-flight loop lives in the middleware; a backend only stores and signals, so the memory and
Redis backends are two implementations of the same four calls (and ``note_code``, which counts
the codes traded under one state).

The contract sits in the core, under the engine and the backends: the single flight
(:mod:`.singleflight`) drives any backend through it, and :mod:`asgi_wechat_oauth.backends`
implements it (and re-exports it for backend authors). Results are rebuilt by ``kind`` from
what a product registered (:func:`register_result`).

Optional capabilities are protocols of their own, checked with ``isinstance``:
:class:`Peekable` (answer duplicates in the request's own task) and :class:`TokenStore` (what
the access-token keeper needs).

:class:`TokenStore` is what an access-token keeper needs besides: a stored outcome with the time
the backend still keeps it, and a mark that a rejection leaves for the one fetch that follows.
:func:`check_lease` refuses a lease shorter than the work it guards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import anyio

from ..errors import WeChatOAuthError


class Result(Protocol):
    """What a successful exchange yields, whatever the product: a web identity, a
    mini-program session, a WeCom identity, an access token.

    ``kind`` names the type in stored outcomes (see :func:`register_result`), and ``to_dict``
    must round-trip through JSON with the class's ``from_dict``, so that a backend outside the
    process can store it."""

    kind: ClassVar[str]
    # Optional: ``unbidden: ClassVar[bool] = True`` on a result any request can make without a
    # code (a desktop's handoff, a QR link's ``next``): a bounded backend keeps such records
    # apart, so that a flood of them cannot push out the results of real logins.

    def to_dict(self) -> dict[str, Any]: ...


#: What an exchange ends with: the result, or the error every request for that code gets.
Outcome = Result | WeChatOAuthError

#: ``kind`` -> the function that rebuilds a stored result of that kind.
_RESULT_TYPES: dict[str, Callable[[dict[str, Any]], Result]] = {}


def register_result(kind: str, load: Callable[[dict[str, Any]], Result]) -> None:
    """Teach every backend to rebuild stored results of ``kind`` (each product registers its
    own result types when imported)."""
    _RESULT_TYPES[kind] = load


def result_loader(kind: str) -> Callable[[dict[str, Any]], Result] | None:
    """The function that rebuilds a stored result of ``kind``, if a product registered it."""
    return _RESULT_TYPES.get(kind)


@dataclass(frozen=True)
class Claim:
    """The answer to :meth:`Backend.claim`.

    Exactly one of three cases: ``outcome`` is set (a stored result: serve it); ``lease`` is set
    (this request leads: trade the code, then call :meth:`Backend.complete` with the lease);
    neither is set (another request leads: :meth:`Backend.wait`).
    """

    outcome: Outcome | None = None
    lease: str | None = None


@runtime_checkable
class Backend(Protocol):
    """Where flights and results live. ``key`` is a hash of appid and code, never the code."""

    #: Seconds a lease outlives a leader that stopped answering (0 where leaders cannot vanish
    #: without their process). Waiters give up after ``exchange_timeout + lease_ttl``.
    lease_ttl: float

    async def claim(self, key: str) -> Claim:
        """Return the stored outcome, or take the lease, or neither (someone else leads)."""
        ...

    async def complete(
        self, key: str, lease: str, outcome: Outcome, *, ttl: float
    ) -> Outcome | None:
        """Publish ``outcome`` to the waiters, store it for ``ttl`` seconds (0: do not store),
        and release the lease if ``lease`` still holds it. Must not raise for a lost lease.

        Returns what the flight's waiters are given when that is not ``outcome`` (a stored
        error yields to a result another process stored first), else ``None``. The waiters
        that share the leader's middleware are handed it by the leader, not through
        :meth:`wait`; any other waiter (another process, another middleware on this backend)
        must still be woken by ``complete``."""
        ...

    async def wait(self, key: str, *, timeout: float) -> Outcome | None:
        """Wait up to ``timeout`` seconds for the outcome of the flight on ``key``.

        ``None`` means the flight ended (or its lease expired) without an outcome for this
        waiter: claim again."""
        ...

    async def recover(self, key: str, *, timeout: float) -> Outcome | None:
        """WeChat said the code was used: return a result someone else obtained for ``key``,
        waiting up to ``timeout`` for one still in flight elsewhere; ``None`` if nobody else
        traded it (the code really was used or invalid). An error outcome may explain a loss
        (:class:`~asgi_wechat_oauth.ExchangeLost`: the other holder died mid-exchange)."""
        ...

    async def forget(self, key: str, *, only_if: Callable[[Outcome], bool] | None = None) -> bool:
        """Drop the outcome stored under ``key`` (only if ``only_if(outcome)`` holds), so the
        next claim leads again; return whether it was dropped. For results that go stale
        before their ``ttl``, such as an access token the server revoked: checking what is
        stored means a caller holding an old token cannot drop its fresh replacement."""
        ...

    async def note_code(self, group: str, key: str, *, limit: int, ttl: float) -> bool:
        """Count ``key`` (a code's hash) in ``group`` (a state's hash) for ``ttl`` seconds.

        False when ``group`` already counts ``limit`` other keys; a key already counted stays
        allowed and is not counted again. Bounds how many codes one signed state may trade."""
        ...

    async def aclose(self) -> None:
        """Release connections and tasks. The middleware calls it on lifespan shutdown."""
        ...


@runtime_checkable
class Peekable(Protocol):
    """Optional: answer a duplicate without a round trip and without taking a lease."""

    def peek(self, key: str) -> Claim | None:
        """Synchronously: the stored outcome, ``Claim()`` for a flight running in this process
        (wait for it), or ``None`` (claim). Duplicates it answers are served in the request's
        own task; without it every request goes through the detached claim."""
        ...


#: What :meth:`TokenStore.take_mark` finds: no mark; a mark, now taken; a mark, but another was
#: taken less than ``spacing`` seconds ago (the mark is gone all the same).
Mark = Literal["unmarked", "taken", "spaced"]


@runtime_checkable
class TokenStore(Protocol):
    """Optional: what :class:`~asgi_wechat_oauth.tokens.AccessTokenKeeper` needs besides
    :class:`Backend`, so that what workers share about a token is judged and changed in the
    backend, never in one process. :class:`MemoryBackend` and ``RedisBackend`` have it; on
    Redis the keys of one ``key`` share its hash tag (Redis Cluster)."""

    async def lookup(self, key: str) -> tuple[Outcome, float] | None:
        """The outcome stored under ``key`` and the seconds the backend still keeps it, by the
        backend's own clock (Redis ``PTTL``, the memory backend's monotonic expiry), without
        taking a lease; ``None`` if nothing is stored. Freshness judged by that relative time
        does not depend on the wall clocks of the workers agreeing. A backend that cannot tell
        now (Redis not answering) raises :class:`~asgi_wechat_oauth.errors.ServiceUnavailable`
        rather than guess ``None``."""
        ...

    async def reject(
        self, key: str, *, only_if: Callable[[Outcome], bool], mark_ttl: float
    ) -> bool:
        """:meth:`Backend.forget` and, in the same step and only if it dropped the outcome,
        leave a mark on ``key`` for ``mark_ttl`` seconds that the next :meth:`take_mark`
        finds, whichever worker makes it. Whether it dropped the outcome."""
        ...

    async def take_mark(self, key: str, *, spacing: float) -> Mark:
        """Take the mark :meth:`reject` left on ``key`` (once: whoever takes it, nobody else
        finds it). ``"spaced"`` if another mark of ``key`` was taken less than ``spacing``
        seconds ago, across workers (a limit such as WeChat's one forced refresh per 30 s)."""
        ...


async def store_once(
    backend: Backend, key: str, outcome: Outcome, *, ttl: float, wait: float, attempts: int = 3
) -> Outcome | None:
    """Store ``outcome`` under ``key`` unless something is stored there already, through the
    contract every backend has (claim, complete): ``None`` when this call stored it, else what
    is stored (waited for, up to ``wait`` seconds a time, while another writer holds the
    lease). For records other than a code's outcome (a QR link's ``next``, a desktop's
    handoff, a platform's ticket). ``TimeoutError`` when the key never settles."""
    for _ in range(attempts):
        # Shielded: a lease taken must be completed, or it would block the key (and, in the
        # memory backend, count as a login in progress) for good. Every call is bounded.
        with anyio.CancelScope(shield=True):
            claim = await backend.claim(key)
            if claim.lease is not None:
                await backend.complete(key, claim.lease, outcome, ttl=ttl)
                return None
        if claim.outcome is not None:
            return claim.outcome
        found = await backend.wait(key, timeout=wait)
        if found is not None:
            return found
    raise TimeoutError(f"{key} never settled")


#: A leader's work is ended this long after its own timeout at the latest (the single flight's
#: backstop), so a lease must last that much longer than the timeout.
LEASE_GRACE = 1.0


def check_lease(backend: Backend, timeout: float, option: str) -> None:
    """Refuse a backend whose lease (``lease_ttl``, ``RedisBackend``'s ``lease_ttl``) is shorter
    than the work it guards, ``timeout`` (named ``option``) plus :data:`LEASE_GRACE`: a
    leader still working when its lease expires is taken over by another worker, which does
    the same work again (a second token, a code traded twice). A lease of 0 never expires
    under a live leader (the memory backend)."""
    lease = getattr(backend, "lease_ttl", 0.0)
    if lease > 0 and lease < timeout + LEASE_GRACE:
        raise ValueError(
            f"the backend's lease (lease_ttl={lease!r}) is shorter than the work it guards "
            f"({option}={timeout!r}, plus {LEASE_GRACE:g} s to hand over): a slow leader would "
            f"be taken over and its work done twice. Make lease_ttl at least "
            f"{timeout + LEASE_GRACE:g}, or {option} shorter."
        )
