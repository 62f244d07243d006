"""Every product's counters as Prometheus metrics: ``pip install 'asgi-wechat-oauth[prometheus]'``.

::

    from prometheus_client import REGISTRY
    from asgi_wechat_oauth.prometheus import WeChatOAuthCollector

    REGISTRY.register(WeChatOAuthCollector(app))  # the app, a middleware, a keeper, Counters

A custom collector, not ``prometheus_client.Counter`` objects: every middleware (web, WeCom,
mini-program) and every ``AccessTokenKeeper`` already counts in its ``counters``, so a scrape
reads those numbers as they are and the request path pays nothing extra. Exposed, for the
default ``prefix``:

- ``wechat_oauth_exchanges_total``: codes traded (tokens fetched) by this process;
- ``wechat_oauth_deduplicated_total``: requests that waited for an exchange in flight;
- ``wechat_oauth_cache_hits_total``: requests served a stored result;
- ``wechat_oauth_recovered_total``: 40029/40163 answers replaced by another request's result;
- ``wechat_oauth_errors_total{reason="..."}``: error answers, by the error's ``reason``;
- ``wechat_oauth_waiting``: a gauge, requests waiting for an exchange in flight right now;

and any counter added later (each integer field of :class:`Counters`). When one collector
exposes several products, each sample has a ``product`` label as well. The products are those
``python -m asgi_wechat_oauth check`` knows (``asgi_wechat_oauth._check``): one added there is
collected here too.

Counters live in the process: with several workers each one exposes its own, and Prometheus
adds them up (``sum by (reason) (rate(wechat_oauth_errors_total[5m]))``). The collector does not
work with ``prometheus_client``'s multiprocess mode, which only aggregates its own metric types.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator, Mapping

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "asgi_wechat_oauth.prometheus needs prometheus_client: "
        "pip install 'asgi-wechat-oauth[prometheus]'"
    ) from exc

from ._check import PRODUCTS, find
from ._core.asgi import ASGIApp
from ._core.counters import Counters
from .miniprogram import MiniProgramMiddleware
from .tokens import AccessTokenKeeper
from .web import WeChatOAuthMiddleware
from .wecom import WeComOAuthMiddleware

logger = logging.getLogger("asgi_wechat_oauth")

#: What the collector can read: the counters themselves, a product's middleware, a token
#: keeper, or an app that holds middlewares somewhere in its stack (Starlette, FastAPI, Quart
#: with ``app.asgi_app``).
CounterSource = (
    Counters
    | WeChatOAuthMiddleware
    | WeComOAuthMiddleware
    | MiniProgramMiddleware
    | AccessTokenKeeper
    | ASGIApp
)

__all__ = ["PRODUCT_LABEL", "WeChatOAuthCollector"]

_HELP = {
    "exchanges": (
        "Codes traded (or access tokens fetched) by this process: sns/oauth2/access_token, "
        "cgi-bin/auth/getuserinfo, sns/jscode2session, the token endpoints."
    ),
    "deduplicated": "Requests that waited for the exchange already in flight for their code.",
    "cache_hits": "Requests served the result an earlier request stored for their code.",
    "recovered": "40029/40163 answers replaced by the result another request obtained.",
    "reauthorized": "Callbacks with an unusable code sent through login again.",
    "errors": "Error answers of the callback and login endpoints, by reason.",
    "waiting": "Requests waiting for an exchange in flight right now.",
}
#: Fields that are a level now, not a count since start.
_GAUGES = frozenset({"waiting"})
#: The label of each mapping counter (``errors`` counts by error reason).
_LABELS = {"errors": "reason"}
#: The label that tells products apart when one collector exposes several.
PRODUCT_LABEL = "product"
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Family = CounterMetricFamily | GaugeMetricFamily


class WeChatOAuthCollector(Collector):
    """Expose the counters of every product to a ``prometheus_client`` registry.

    ``source`` is a :class:`Counters`, a product's middleware (``WeChatOAuthMiddleware``,
    ``WeComOAuthMiddleware``, ``MiniProgramMiddleware``), an ``AccessTokenKeeper``, an app that
    holds middlewares, or a list of these. An app is searched at every scrape: Starlette and
    FastAPI build the middleware given to ``app.add_middleware`` only when the app starts (the
    first lifespan or request event), so there is no instance to hand over at import time.
    Until the app has started, every counter reads 0, which is the truth; if a source holds no
    product, a warning is logged once and it exposes nothing.

    One product, the metrics carry no product label (the names and labels of the web flow's
    metrics are as they always were). Several (an app with the web and the mini-program
    middlewares, a WeCom middleware and its corp token keeper, a list of sources), every sample
    carries ``product="web"``, ``"wecom"``, ``"miniprogram"`` or ``"tokens"``; the counters of
    two middlewares of one product add up.
    """

    def __init__(
        self,
        source: CounterSource | list[CounterSource] | tuple[CounterSource, ...],
        *,
        prefix: str = "wechat_oauth",
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError("prefix must be a Prometheus metric name prefix, such as wechat_oauth")
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        if len(sources) > 1 and any(isinstance(s, Counters) for s in sources):
            raise ValueError(
                "a Counters in a list of sources has no product: pass the middleware or the "
                "keeper that counts in it"
            )
        self.source = source
        self.prefix = prefix
        self._sources = sources
        self._warned: set[int] = set()

    def __repr__(self) -> str:
        return f"WeChatOAuthCollector({self.source!r}, prefix={self.prefix!r})"

    def describe(self) -> Iterator[Family]:
        """The metric names (with zero values): lets a registry refuse duplicates on register."""
        return self._families([(None, Counters())])

    def collect(self) -> Iterator[Family]:
        sets = self._counter_sets()
        return self._families(sets) if sets else iter(())

    def _families(self, sets: list[tuple[str | None, Counters]]) -> Iterator[Family]:
        labelled = sets[0][0] is not None
        for field in dataclasses.fields(Counters):
            help_text = _HELP.get(field.name, f"WeChat OAuth middleware counter {field.name}.")
            name = f"{self.prefix}_{field.name}"
            products = [PRODUCT_LABEL] if labelled else []
            values = [(product, getattr(counters, field.name)) for product, counters in sets]
            family: Family
            if isinstance(values[0][1], Mapping):
                family = CounterMetricFamily(
                    name, help_text, labels=[*products, _LABELS.get(field.name, "key")]
                )
                for product, value in values:
                    # A plain-dict copy is taken atomically, so a scrape from another thread
                    # never sees the mapping change size halfway through.
                    for key, count in sorted(dict(value).items()):
                        family.add_metric([*_label(product), str(key)], float(count))
            elif isinstance(values[0][1], int):
                kind = GaugeMetricFamily if field.name in _GAUGES else CounterMetricFamily
                family = kind(name, help_text, labels=products)
                for product, value in values:
                    family.add_metric(_label(product), float(value))
            else:
                continue
            yield family

    def _counter_sets(self) -> list[tuple[str | None, Counters]]:
        """The counters to expose: ``(None, counters)`` when there is one product, else one
        ``(product, counters)`` per product (two middlewares of a product added up)."""
        found: list[tuple[str, Counters]] = []
        for source in self._sources:
            if isinstance(source, Counters):
                return [(None, source)]
            sets = _sets_in(source)
            if not sets and id(source) not in self._warned:
                self._warned.add(id(source))
                logger.warning(
                    "wechat_oauth.metrics_unavailable: no product middleware or token keeper "
                    "found in %r",
                    source,
                )
            found += sets
        unique = {id(counters): (product, counters) for product, counters in found}
        by_product: dict[str, list[Counters]] = {}
        for product, counters in unique.values():
            by_product.setdefault(product, []).append(counters)
        if len(by_product) == 1:
            [only] = by_product.values()
            return [(None, _sum(only))]
        return [(product, _sum(sets)) for product, sets in by_product.items()]


def _sets_in(source: object) -> list[tuple[str, Counters]]:
    """Every product's counters in ``source``; zeros for those an app will build on start."""
    sets: list[tuple[str, Counters]] = []
    for found in find(source, PRODUCTS):
        if found.found is not None:
            sets += found.product.counters(found.found)
        else:
            labels = found.product.labels or (found.product.name,)
            sets += [(label, Counters()) for label in labels]
    return sets


def _sum(sets: list[Counters]) -> Counters:
    if len(sets) == 1:
        return sets[0]
    total = Counters()
    for counters in sets:
        for field in dataclasses.fields(Counters):
            value = getattr(counters, field.name)
            if isinstance(value, Mapping):
                getattr(total, field.name).update(dict(value))
            else:
                setattr(total, field.name, getattr(total, field.name) + value)
    return total


def _label(product: str | None) -> list[str]:
    return [] if product is None else [product]
