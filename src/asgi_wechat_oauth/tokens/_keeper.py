"""One access token per app, shared by every caller and every worker on the backend."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .._core.counters import Counters
from .._core.errors import WeChatOAuthError
from .._core.singleflight import SingleFlight
from ..backends import Backend, MemoryBackend, Outcome
from ._fetchers import TokenFetcher
from ._grant import TokenGrant

T = TypeVar("T")


class _TokenFlight(SingleFlight):
    def ttl_for(self, outcome: Outcome) -> float:
        # Stored until the refresh is due, so every worker refreshes at the same moment.
        return max(outcome.ttl, 0.0) if isinstance(outcome, TokenGrant) else 0.0


class AccessTokenKeeper:
    """``await keeper.get()`` returns the app's access token, fetching it once for all
    concurrent callers and, through a shared backend (a ``RedisBackend``), for all workers:
    one of them takes the lease and fetches, the others wait for it and read the same token.

    The token is stored until ``refresh_margin`` seconds before it expires; the first call after
    that fetches a new one (the old one is still valid meanwhile). A copy in the process makes
    ``get()`` a dictionary read on the hot path. When an API answers that the token is invalid
    or expired, :meth:`invalidate` drops it, only if it is still the stored one, and
    :meth:`call` does that for you and retries once. Tokens never reach logs or reprs.
    """

    def __init__(
        self,
        fetcher: TokenFetcher,
        *,
        backend: Backend | None = None,
        refresh_margin: float = 300.0,
        fetch_timeout: float = 10.0,
    ) -> None:
        if refresh_margin < 0:
            raise ValueError("refresh_margin must not be negative")
        if fetch_timeout <= 0:
            raise ValueError("fetch_timeout must be positive")
        self.fetcher = fetcher
        self._owns_backend = backend is None
        self.backend: Backend = backend if backend is not None else MemoryBackend()
        self.refresh_margin = refresh_margin
        #: ``exchanges`` counts the token fetches this process made.
        self.counters = Counters()
        self._flight = _TokenFlight(
            self.backend, exchange_timeout=fetch_timeout, result_ttl=0.0, counters=self.counters
        )
        self._key = hashlib.sha256(fetcher.key_material).hexdigest()
        self._grant: TokenGrant | None = None
        self._force_refresh = False

    def __repr__(self) -> str:
        return f"AccessTokenKeeper(fetcher={self.fetcher!r}, backend={self.backend!r})"

    async def get(self) -> str:
        """The current token (raises a :class:`WeChatOAuthError` if it cannot be fetched)."""
        grant = self._grant
        if grant is not None and time.time() < grant.refresh_at:
            return grant.access_token
        outcome = await self._flight.run(self._key, self._fetch)
        if isinstance(outcome, WeChatOAuthError):
            # Shared with the other callers of this flight: raise a copy of our own.
            raise type(outcome)(outcome.reason, outcome.message, errcode=outcome.errcode)
        if not isinstance(outcome, TokenGrant):
            raise TypeError(f"a {type(outcome).__name__} is stored under an access token key")
        self._grant = outcome
        return outcome.access_token

    async def invalidate(self, token: str) -> None:
        """An API rejected ``token``: drop it, here and in the backend, unless it was already
        replaced (many requests failing with one old token cause one refresh, not many)."""

        def is_token(outcome: Outcome) -> bool:
            return isinstance(outcome, TokenGrant) and hmac.compare_digest(
                outcome.access_token, token
            )

        if self._grant is not None and is_token(self._grant):
            self._grant = None
        if await self.backend.forget(self._key, only_if=is_token):
            self._force_refresh = True

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

    async def _fetch(self) -> TokenGrant:
        force, self._force_refresh = self._force_refresh, False
        return await self.fetcher.fetch(force_refresh=force, margin=self.refresh_margin)
