"""One access token per app, shared by every caller and every worker on the backend."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar

from .._core.counters import Counters
from .._core.singleflight import SingleFlight
from ..backends import Backend, MemoryBackend, Outcome, TokenStore, check_lease
from ..errors import ServiceUnavailable, WeChatOAuthError
from ._fetchers import FORCE_REFRESH_SPACING, TokenFetcher
from ._grant import TokenGrant

T = TypeVar("T")
logger = logging.getLogger("asgi_wechat_oauth")

#: How long a rejection's mark waits for the fetch that follows: a token's lifetime at WeChat,
#: after which the rejected token has expired anyway and a fetch without force gets a new one.
_MARK_TTL = 7200.0


class _Copy(NamedTuple):
    """The token this process holds, and until when (``time.monotonic()``) it serves it."""

    grant: TokenGrant
    fresh_until: float


class _TokenFlight(SingleFlight):
    def __init__(
        self,
        backend: Backend,
        ttl_for: Callable[[Outcome], float],
        *,
        exchange_timeout: float,
        counters: Counters,
    ) -> None:
        super().__init__(
            backend, exchange_timeout=exchange_timeout, result_ttl=0.0, counters=counters
        )
        self._ttl_for = ttl_for

    def ttl_for(self, outcome: Outcome) -> float:
        # Stored until the refresh is due, so every worker refreshes at the same moment.
        return self._ttl_for(outcome)


class AccessTokenKeeper:
    """``await keeper.get()`` returns the app's access token, fetching it once for all
    concurrent callers and, through a shared backend (a ``RedisBackend``), for all workers:
    one of them takes the lease and fetches, the others wait for it and read the same token.

    The token is stored until ``refresh_margin`` seconds before it expires; the first call after
    that fetches a new one (the old one is still valid meanwhile). A copy in the process makes
    ``get()`` a dictionary read on the hot path. Freshness is judged by the time the backend
    still keeps the token (Redis ``PTTL``) and this process's monotonic clock, never by
    comparing a time another worker wrote with this one's wall clock.

    When an API answers that the token is invalid or expired, :meth:`invalidate` drops it, only
    if it is still the stored one, and leaves a mark in the backend: the one fetch that
    follows, on whichever worker, asks for a new token (``force_refresh``), at most once per
    the fetcher's ``force_refresh_spacing`` across workers. :meth:`call` does that for you and
    retries once. Tokens never reach logs or reprs.

    The backend must be a :class:`~asgi_wechat_oauth.backends.TokenStore` (``MemoryBackend``
    and ``RedisBackend`` are), and its lease must outlast ``exchange_timeout``.
    """

    def __init__(
        self,
        fetcher: TokenFetcher,
        *,
        backend: Backend | None = None,
        refresh_margin: float = 300.0,
        exchange_timeout: float = 10.0,
    ) -> None:
        if refresh_margin < 0:
            raise ValueError("refresh_margin must not be negative")
        if exchange_timeout <= 0:
            raise ValueError("exchange_timeout must be positive")
        store = backend if backend is not None else MemoryBackend()
        if not isinstance(store, TokenStore):
            raise TypeError(
                f"AccessTokenKeeper needs a backend with lookup(), reject() and take_mark() "
                f"(a TokenStore, as MemoryBackend and RedisBackend are); "
                f"{type(store).__name__} has not"
            )
        check_lease(store, exchange_timeout, "exchange_timeout")
        self.fetcher = fetcher
        self._owns_backend = backend is None
        self.backend: Backend = store
        self._store: TokenStore = store
        self.refresh_margin = refresh_margin
        #: ``exchanges`` counts the token fetches this process made.
        self.counters = Counters()
        self._flight = _TokenFlight(
            store, self._ttl_for, exchange_timeout=exchange_timeout, counters=self.counters
        )
        self._key = hashlib.sha256(fetcher.key_material).hexdigest()
        self._copy: _Copy | None = None
        #: The last token this process fetched, fresh until when by this process's clock.
        self._fetched: _Copy | None = None

    def __repr__(self) -> str:
        return f"AccessTokenKeeper(fetcher={self.fetcher!r}, backend={self.backend!r})"

    async def get(self) -> str:
        """The current token (raises a :class:`WeChatOAuthError` if it cannot be fetched)."""
        copy = self._copy
        if copy is not None and time.monotonic() < copy.fresh_until:
            return copy.grant.access_token
        copy = await self._read()
        if copy is None:
            outcome = await self._flight.run(self._key, self._fetch)
            if isinstance(outcome, WeChatOAuthError):
                # Shared with the other callers of this flight: raise a copy of our own.
                raise type(outcome)(outcome.reason, outcome.message, errcode=outcome.errcode)
            if not isinstance(outcome, TokenGrant):
                raise TypeError(f"a {type(outcome).__name__} is stored under an access token key")
            copy = self._fetched
            if copy is None or copy.grant is not outcome:
                # Fetched by another worker: fresh for as long as the backend keeps it.
                copy = await self._read()
                if copy is None or copy.grant.access_token != outcome.access_token:
                    return outcome.access_token  # just fetched; not kept without a TTL
        self._copy = copy
        return copy.grant.access_token

    async def invalidate(self, token: str) -> None:
        """An API rejected ``token``: drop it, here and in the backend, unless it was already
        replaced (many requests failing with one old token cause one refresh, not many); the
        backend then marks the next fetch, whoever makes it, to ask for a new token."""

        def is_token(outcome: Outcome) -> bool:
            return isinstance(outcome, TokenGrant) and hmac.compare_digest(
                outcome.access_token, token
            )

        if self._copy is not None and is_token(self._copy.grant):
            self._copy = None
        await self._store.reject(self._key, only_if=is_token, mark_ttl=_MARK_TTL)

    async def call(self, api: Callable[[str], Awaitable[T]]) -> T:
        """``await api(token)``; when it raises an error whose errcode says the token is
        invalid or expired, invalidate the token, get a fresh one and call once more."""
        token = await self.get()
        try:
            return await api(token)
        except WeChatOAuthError as exc:
            if exc.errcode not in self.fetcher.invalid_token_errcodes:
                raise
        await self.invalidate(token)
        return await api(await self.get())

    async def aclose(self) -> None:
        """Close the fetcher's HTTP client, and the backend if the keeper made it."""
        await self._flight.runner.drain(timeout=self._flight.exchange_timeout)
        await self.fetcher.aclose()
        if self._owns_backend:
            await self.backend.aclose()

    async def _read(self) -> _Copy | None:
        """The stored token, fresh for as long as the backend still keeps it (its own clock),
        counted from before asking: never later than the backend's own expiry."""
        asked = time.monotonic()
        try:
            found = await self._store.lookup(self._key)
        except ServiceUnavailable:
            return None  # the claim that follows waits for the backend (a failover) itself
        if found is None or not isinstance(found[0], TokenGrant) or found[1] <= 0:
            return None
        return _Copy(found[0], asked + found[1])

    async def _fetch(self) -> TokenGrant:
        force = await self._take_force()
        grant = await self.fetcher.fetch(force_refresh=force, margin=self.refresh_margin)
        # refresh_at was set by this machine's clock a moment ago: as a duration it holds.
        self._fetched = _Copy(grant, time.monotonic() + (grant.refresh_at - time.time()))
        return grant

    async def _take_force(self) -> bool:
        """Whether this fetch asks for a new token: a rejection marked it, and no forced
        refresh of this app happened within the fetcher's spacing on any worker."""
        spacing = getattr(self.fetcher, "force_refresh_spacing", FORCE_REFRESH_SPACING)
        mark = await self._store.take_mark(self._key, spacing=spacing)
        if mark == "spaced":
            logger.warning(
                "wechat_oauth.token_force_refresh_spaced fetcher=%r: the token was rejected "
                "again within %g s of the last forced refresh; fetching without force_refresh "
                "(WeChat refreshes at most once in %g s)",
                self.fetcher,
                spacing,
                spacing,
            )
        elif mark == "taken" and spacing > 0:
            logger.info("wechat_oauth.token_force_refresh fetcher=%r", self.fetcher)
        return mark == "taken"

    def _ttl_for(self, outcome: Outcome) -> float:
        fetched = self._fetched
        if fetched is None or fetched.grant is not outcome:
            return 0.0
        return max(fetched.fresh_until - time.monotonic(), 0.0)
