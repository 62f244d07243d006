"""What every emulator gives a test: the URL it answers on, a client that reaches it in-process,
and its exchanges per code, with the codes traded more than once (the pytest plugin's check)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from .._core.asgi import Receive, Scope, Send
from .._core.singleflight import code_hash


class EmulatorBase:
    """Shared by :class:`WeChatEmulator` and :class:`WeComEmulator`: each declares ``url`` and
    ``exchanges`` as fields, and says how a middleware keys a code (:meth:`_flight_key`)."""

    #: The base URL to give the middleware: any host in-process, the loopback address served.
    url: str
    #: Exchanges per code, whatever they answered.
    exchanges: Counter[str]
    #: Faults queued per endpoint (the plugin drops a test's leftovers on a shared server).
    _faults: dict[str, Any]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError

    def _flight_key(self, code: str) -> str:
        """The backend key the middleware that traded ``code`` holds it under."""
        raise NotImplementedError

    def http_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` that reaches this emulator in-process (``ASGITransport``,
        any host), with ``base_url=self.url``: pass it as the middleware's ``http_client``.
        It holds no connections; closing it is optional."""
        kwargs.setdefault("base_url", self.url)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self), **kwargs)

    def duplicate_exchanges(self, since: Counter[str] | None = None) -> dict[str, int]:
        """Codes exchanged more than once (since the ``since`` snapshot of :attr:`exchanges`),
        by the hash the middleware logs as ``code_hash``: at WeChat and WeCom all but the first
        of these fail, which is the bug this package exists for."""
        counts = _copy(self.exchanges)
        if since is not None:
            counts -= since
        return {
            code_hash(self._flight_key(code)): count for code, count in counts.items() if count > 1
        }

    @property
    def total_exchanges(self) -> int:
        return sum(_copy(self.exchanges).values())


def _copy(counts: Counter[str]) -> Counter[str]:
    """A copy of a counter that a served emulator's thread may be writing to."""
    while True:
        try:
            return Counter(dict(counts))
        except RuntimeError:  # changed size during the copy: try again
            continue
