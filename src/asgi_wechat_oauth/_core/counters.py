"""Counters the middleware keeps, readable in code (``middleware.counters``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Counters:
    """What happened to logins since start.

    - ``exchanges``: codes traded with WeChat by this process (``sns/oauth2/access_token``
      for web OAuth, ``sns/jscode2session`` for mini-programs);
    - ``deduplicated``: requests that waited for an exchange already in flight;
    - ``cache_hits``: requests served a result stored by an earlier request;
    - ``recovered``: 40029/40163 answers replaced by a result another request obtained;
    - ``reauthorized``: callbacks with an unusable code sent through login again;
    - ``errors``: error responses by ``reason``;
    - ``waiting``: requests waiting for an exchange in flight right now (a gauge, not a
      count since start).
    """

    exchanges: int = 0
    deduplicated: int = 0
    cache_hits: int = 0
    recovered: int = 0
    reauthorized: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    waiting: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "exchanges": self.exchanges,
            "deduplicated": self.deduplicated,
            "cache_hits": self.cache_hits,
            "recovered": self.recovered,
            "reauthorized": self.reauthorized,
            "errors": dict(self.errors),
            "waiting": self.waiting,
        }
