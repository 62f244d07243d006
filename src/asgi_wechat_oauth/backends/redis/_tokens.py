"""The :class:`~asgi_wechat_oauth.backends.TokenStore` operations an access-token keeper needs
besides the backend protocol: read a stored token with its time left, drop a rejected one and
mark it, and take that mark. Each is one script, judged in Redis, never in one process; while
Redis does not answer, what this process kept in its fallback answers instead."""

from __future__ import annotations

from collections.abc import Callable

from ..._core.contract import Mark, Outcome
from ...errors import ErrorReason, ServiceUnavailable
from ._calls import RedisCalls, ms, require_asyncio
from ._failures import Busy, Unavailable

#: TAKE_MARK's answers.
_MARKS: tuple[Mark, Mark, Mark] = ("unmarked", "taken", "spaced")


class RedisTokenStore(RedisCalls):
    """The token-store half of :class:`RedisBackend`."""

    async def lookup(self, key: str) -> tuple[Outcome, float] | None:
        """One round trip (the result and its ``PTTL``, read together). ``None`` only when
        Redis said nothing is stored; when it did not answer (down, a timeout, this process's
        queue full), :class:`ServiceUnavailable`: "not stored" would be a guess."""
        require_asyncio()
        local = await self._local.lookup(key)  # what this process kept while Redis was down
        if local is not None:
            return local
        try:
            if not await self._use_redis():
                raise Unavailable
            # Once: on no answer the keeper claims, which waits out a failover itself.
            answer = await self._call(self._scripts.lookup, self._keys(key)[1:2], [], budget=0)
        except (Unavailable, Busy):
            raise ServiceUnavailable(
                ErrorReason.BACKEND_UNAVAILABLE, "The login service is unavailable; try again soon."
            ) from None
        if answer[0] != 1:
            return None
        return self._load(key, answer[1]), max(int(answer[2]), 0) / 1000

    async def reject(
        self, key: str, *, only_if: Callable[[Outcome], bool], mark_ttl: float
    ) -> bool:
        dropped = await self._local.reject(key, only_if=only_if, mark_ttl=mark_ttl)
        return await self._drop(key, only_if, mark_ttl) or dropped

    async def take_mark(self, key: str, *, spacing: float) -> Mark:
        """The mark in Redis; while Redis does not answer, the one this process may hold."""
        require_asyncio()
        local = await self._local.take_mark(key, spacing=spacing)
        spacing_ms = max(ms(spacing), 1) if spacing > 0 else 0
        try:
            if not await self._use_redis():
                return local
            # Not sent again: taking a mark twice would find it gone.
            take = self._scripts.take_mark
            answer = await self._call(take, self._mark_keys(key), [spacing_ms], retry=False)
        except (Unavailable, Busy, ServiceUnavailable):
            return local
        return _MARKS[int(answer)] if answer else local

    async def _drop(
        self, key: str, only_if: Callable[[Outcome], bool] | None, mark_ttl: float
    ) -> bool:
        """Drop the stored outcome (if ``only_if`` holds), marking it for ``mark_ttl`` seconds
        (0: no mark); ``forget`` is this without the mark."""
        # Read and check in Python (a sealed value is opaque to Lua), then delete only if the
        # stored bytes are still the ones checked: a newer result stored meanwhile stays.
        result_key, mark_key = self._keys(key)[1], self._mark_keys(key)[0]
        try:
            if not await self._use_redis():
                return False
            data = await self._call(self._client.get, result_key, budget=0)
            if data is None or (only_if is not None and not only_if(self._load(key, data))):
                return False
            mark_ms = max(ms(mark_ttl), 1) if mark_ttl > 0 else 0
            forget = self._scripts.forget  # not sent again: a second run would answer "gone"
            return bool(
                await self._call(forget, [result_key, mark_key], [data, mark_ms], retry=False)
            )
        except (Unavailable, Busy, ServiceUnavailable):
            return False
