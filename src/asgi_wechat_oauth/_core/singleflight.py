"""One exchange per code: the loop every callback request runs over a backend."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial

import anyio

from ..errors import (
    CodeRejected,
    CredentialsRejected,
    ErrorReason,
    ExchangeLost,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
    WeChatOAuthError,
)
from .contract import Backend, Claim, Outcome, Peekable, Result
from .counters import Counters
from .detached import Answer, DetachedRunner, answers_early
from .errcodes import CODE_USED_ERRCODES

logger = logging.getLogger("asgi_wechat_oauth")

#: The exchange bounds itself by ``exchange_timeout``; this backstop, a little later, ends an
#: exchange that does not, and waiters allow the same again beyond the leader's bound.
_GRACE = 1.0


class _Led:
    """A flight this process leads. Its followers in this process wait on ``done`` and take
    ``outcome``, with no call to the backend: no timeout scope and no round trip each. The
    wait needs no bound of its own: the leader ends every flight it starts (its exchange and
    its hand-over to the backend are bounded, and run shielded)."""

    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.outcome: Outcome | None = None

    def release(self, outcome: Outcome) -> None:
        """Hand the followers ``outcome`` (once: the first one given stands)."""
        if not self.done.is_set():
            self.outcome = outcome
            self.done.set()


class SingleFlight:
    """Claims a key, and either serves the stored outcome, leads the exchange, or waits for it.

    The leader's exchange runs detached from its request (see :mod:`._detached`), so a client
    that aborts the first callback does not abort the exchange its duplicate is waiting for.
    Outcomes are stored for ``result_ttl`` when they are final for the code: an identity, or an
    error saying the code can never be traded. Transient errors reach the waiters of that flight
    and are not stored, so the next request tries again.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        exchange_timeout: float,
        result_ttl: float,
        counters: Counters,
    ) -> None:
        self.backend = backend
        self.exchange_timeout = exchange_timeout
        self.result_ttl = result_ttl
        self.counters = counters
        self.runner = DetachedRunner()
        self._led: dict[str, _Led] = {}
        #: The backend's synchronous look-up, where it has one (see ``MemoryBackend.peek``).
        self._peek: Callable[[str], Claim | None] | None = (
            backend.peek if isinstance(backend, Peekable) else None
        )

    async def run(self, key: str, exchange: Callable[[], Awaitable[Result]]) -> Outcome:
        """Return the outcome for ``key``, trading it with ``exchange`` at most once."""
        deadline = 0.0
        while True:
            # A stored outcome, or a flight this process runs, is served in the request's own
            # task: only a claim that may grant a lease needs the detached unit.
            claim = self._peek(key) if self._peek is not None else None
            if claim is None:
                led: Outcome | None
                claim, led = await self.runner.run(partial(self._claim_and_lead, key, exchange))
                if led is not None:
                    return led
            if claim.outcome is not None:
                self.counters.cache_hits += 1
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "wechat_oauth.cache_hit code_hash=%s",
                        code_hash(key),
                        extra=_fields(key, "cache_hit"),
                    )
                return claim.outcome
            now = anyio.current_time()
            if not deadline:
                deadline = now + self.exchange_timeout + self.backend.lease_ttl + 2 * _GRACE
            if deadline <= now:
                return UpstreamTimeout(
                    ErrorReason.UPSTREAM_TIMEOUT, "The login is taking too long; please try again."
                )
            outcome = await self._wait(key, deadline - now)
            if outcome is not None:
                self.counters.deduplicated += 1
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "wechat_oauth.deduplicated code_hash=%s",
                        code_hash(key),
                        extra=_fields(key, "deduplicated"),
                    )
                return outcome

    def knows(self, key: str) -> bool:
        """Whether this process answers ``key`` without the backend: a flight it runs, or an
        outcome it holds (where the backend can tell: see ``peek``)."""
        return self._peek is not None and self._peek(key) is not None

    def ttl_for(self, outcome: Outcome) -> float:
        """How long a final outcome is stored: ``result_ttl``, unless a subclass knows better
        (an access token lives as long as its own expiry)."""
        return self.result_ttl

    async def _wait(self, key: str, timeout: float) -> Outcome | None:
        """Wait for the flight on ``key``: the leader's own hand-over when this process leads
        it, else through the backend."""
        led = self._led.get(key)
        counters = self.counters
        counters.waiting += 1
        try:
            if led is not None:
                await led.done.wait()
                return led.outcome
            return await self.backend.wait(key, timeout=timeout)
        finally:
            counters.waiting -= 1

    async def _claim_and_lead(
        self,
        key: str,
        exchange: Callable[[], Awaitable[Result]],
        answer: Answer[tuple[Claim, Outcome | None]],
    ) -> tuple[Claim, Outcome | None]:
        """Claim, and lead when the lease is ours, as one unit the request cannot cancel: a lease
        granted to a request cancelled before it could lead would hold every duplicate until
        the lease expired."""
        claim = await self.backend.claim(key)
        if claim.lease is None:
            return claim, None
        handed_over = answers_early(answer)
        lead = self._lead(key, claim.lease, exchange, partial(_answer, answer, claim), handed_over)
        return claim, await lead

    async def _exchange_bounded(
        self, key: str, exchange: Callable[[], Awaitable[Result]]
    ) -> Outcome:
        outcome: Outcome = UpstreamTimeout(
            ErrorReason.UPSTREAM_TIMEOUT, "WeChat did not answer in time."
        )
        with anyio.move_on_after(self.exchange_timeout + _GRACE):
            try:
                outcome = await exchange()
            except WeChatOAuthError as exc:
                # Stored for result_ttl: drop the traceback and context, which would keep the
                # exchange's frames (response, request parameters) alive as long.
                exc.__traceback__ = exc.__context__ = exc.__cause__ = None
                outcome = exc
            except Exception as exc:  # the flight must end with an outcome, whatever happens
                logger.error(
                    "wechat_oauth.exchange_crashed code_hash=%s error=%s",
                    code_hash(key),
                    type(exc).__name__,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
                outcome = UpstreamError(
                    ErrorReason.UPSTREAM_UNAVAILABLE,
                    "The login could not be completed; please try again.",
                )
        return outcome

    async def _lead(
        self,
        key: str,
        lease: str,
        exchange: Callable[[], Awaitable[Result]],
        answer: Answer[Outcome],
        handed_over: bool = False,
    ) -> Outcome:
        """Trade the code and end the flight. ``handed_over``: ``answer`` resumes the
        leader's request before this returns (asyncio)."""
        started = anyio.current_time()
        # The followers here wait for this flight with no deadline of their own: it ends
        # within theirs (see run()), whatever the exchange, recover() and the backend do.
        deadline = started + self.exchange_timeout + self.backend.lease_ttl + 2 * _GRACE
        # Whatever happens below, even cancellation at shutdown, the flight ends with an
        # outcome: waiters are released and the lease is given back.
        outcome: Outcome = ServiceUnavailable(
            ErrorReason.SHUTTING_DOWN, "The server is shutting down; please try again."
        )
        result = "shutting_down"
        led = self._led[key] = _Led()
        try:
            outcome = await self._exchange_bounded(key, exchange)
            self.counters.exchanges += 1
            result = outcome.reason if isinstance(outcome, WeChatOAuthError) else "ok"
            if isinstance(outcome, CodeRejected) and outcome.errcode in CODE_USED_ERRCODES:
                recovered = None
                left = max(deadline - _GRACE - anyio.current_time(), 0.0)
                with anyio.move_on_after(left):
                    recovered = await self.backend.recover(
                        key, timeout=min(left, self.exchange_timeout)
                    )
                if recovered is not None and not isinstance(recovered, WeChatOAuthError):
                    self.counters.recovered += 1
                    logger.debug("wechat_oauth.recovered code_hash=%s", code_hash(key))
                    outcome, result = recovered, "recovered"
                elif recovered is not None:
                    outcome, result = recovered, recovered.reason
        finally:
            # The leader's request goes on with the outcome first, then the flight ends.
            answer(outcome)
            try:
                with anyio.CancelScope(shield=True):
                    await self._end(key, lease, outcome, led, handed_over, deadline)
            finally:
                if self._led.get(key) is led:
                    del self._led[key]
        if isinstance(outcome, CredentialsRejected):
            level = logging.ERROR  # loud: every login fails until appid/secret are fixed
        elif isinstance(outcome, UpstreamError):
            level = logging.WARNING  # WeChat or the network failed the users of this flight
        elif result == "recovered":
            level = logging.DEBUG  # expected: the duplicate the middleware exists for
        else:
            level = logging.INFO  # a login, or a code WeChat refused (the user's side)
        fields = {
            "wechat_code_hash": code_hash(key),
            "wechat_outcome": result,
            "wechat_duration_ms": round((anyio.current_time() - started) * 1000, 1),
            "wechat_deduplicated": False,
        }
        # WeChat's errcode, what it means and the fix: the line to read when logins fail.
        hint = outcome.hint if isinstance(outcome, WeChatOAuthError) else None
        logger.log(
            level,
            "wechat_oauth.exchange code_hash=%s outcome=%s duration_ms=%.1f%s",
            fields["wechat_code_hash"],
            result,
            fields["wechat_duration_ms"],
            f" ({hint})" if hint else "",
            extra=fields,
        )
        return outcome

    async def _end(
        self,
        key: str,
        lease: str,
        outcome: Outcome,
        led: _Led,
        handed_over: bool,
        deadline: float,
    ) -> None:
        """Release the followers here and hand the outcome to the backend. An identity, or an
        error nobody stores, is what the followers get whatever the backend does: they go
        first, one scheduling round after the leader's request (asyncio queues them behind
        everything they wake otherwise), and before the backend's work. A stored error may
        yield to an earlier result the backend kept: they get what it answers, or the error
        itself if the backend has not answered by their ``deadline``."""
        try:
            try:
                ttl = self.ttl_for(outcome) if _final(outcome) else 0.0
            except Exception as exc:  # a bug: the flight must still end, and store nothing
                logger.error("wechat_oauth.ttl_failed error=%s", type(exc).__name__)
                ttl = 0.0
            if ttl <= 0 or not isinstance(outcome, WeChatOAuthError):
                # On asyncio this runs in a task of its own: the leader's request goes first,
                # then the followers, then the backend's own work for the outcome (a Redis
                # COMPLETE encodes it and sends a command: client work they need not wait for).
                # On trio this is the leader's request itself, which goes on at once.
                yields = handed_over and led.done.statistics().tasks_waiting > 0
                if yields:
                    await anyio.lowlevel.checkpoint()
                led.release(outcome)
                if yields:
                    await anyio.lowlevel.checkpoint()
            # A backend bounds its own calls (Redis by redis_timeout); one that does not
            # is given until the followers' deadline, and a little more if that has passed.
            with anyio.move_on_after(max(deadline - anyio.current_time(), _GRACE)):
                outcome = await self._complete(key, lease, outcome, ttl)
        finally:
            led.release(outcome)  # whatever went wrong above: nobody waits for ever

    async def _complete(self, key: str, lease: str, outcome: Outcome, ttl: float) -> Outcome:
        """Hand the outcome to the backend; return what the flight's waiters get. A backend
        that raises (an outcome it cannot encode, a bug) must neither replace the outcome nor
        strand anyone: the lease is given back with an answer any backend can store."""
        taken, delivered = await self._try_complete(key, lease, outcome, ttl)
        if not taken and not isinstance(outcome, WeChatOAuthError):
            # The code is spent and its identity cannot be shared: later duplicates elsewhere
            # get a prompt answer instead of waiting for the lease to expire.
            lost = ExchangeLost(
                ErrorReason.EXCHANGE_LOST, "The login could not be completed; please log in again."
            )
            await self._try_complete(key, lease, lost, self.ttl_for(lost))
        if delivered is not None and (
            isinstance(delivered, WeChatOAuthError) or hasattr(delivered, "to_dict")
        ):
            return delivered  # what the backend kept instead (a backend may return nothing)
        return outcome

    async def _try_complete(
        self, key: str, lease: str, outcome: Outcome, ttl: float
    ) -> tuple[bool, Outcome | None]:
        """Whether the backend took the outcome, and what it says the waiters get."""
        try:
            return True, await self.backend.complete(key, lease, outcome, ttl=ttl)
        except Exception as exc:
            # The type only: the exception may hold the outcome, tokens included (a codec's
            # UnicodeEncodeError carries the whole serialised identity). No traceback either.
            logger.error(
                "wechat_oauth.complete_failed code_hash=%s error=%s",
                code_hash(key),
                type(exc).__name__,
            )
            return False, None


def _final(outcome: Outcome) -> bool:
    """Whether the outcome is the code's for good (stored for late duplicates)."""
    return not isinstance(outcome, WeChatOAuthError) or outcome.definitive


def _answer(answer: Answer[tuple[Claim, Outcome | None]], claim: Claim, outcome: Outcome) -> None:
    answer((claim, outcome))


def _fields(key: str, outcome: str) -> dict[str, object]:
    """The structured fields of a record about a request served without an exchange of its
    own (``wechat_deduplicated`` tells them from the exchange's own record)."""
    return {
        "wechat_code_hash": code_hash(key),
        "wechat_outcome": outcome,
        "wechat_deduplicated": True,
    }


#: The namespace of mini-program codes' keys (web OAuth's have none).
MINIPROGRAM_NAMESPACE = "mp"


def flight_key(namespace: str, appid: str, code: str) -> str:
    """The backend key of ``code``: a hash, never the code. ``namespace`` keeps the products
    apart on a shared backend (``""`` for web OAuth, ``"mp"`` for mini-programs), and the appid
    keeps apps apart, so the same string used as a code twice never shares a result."""
    prefix = f"{namespace}:" if namespace else ""
    return hashlib.sha256(f"{prefix}{appid}:{code}".encode()).hexdigest()


def code_hash(key: str) -> str:
    """The part of a code's hash that logs show: enough to correlate, useless to an attacker."""
    return key[:16]
