"""The middleware's counters as Prometheus metrics: ``pip install 'asgi-wechat-oauth[prometheus]'``.

::

    from prometheus_client import REGISTRY
    from asgi_wechat_oauth.prometheus import WeChatOAuthCollector

    REGISTRY.register(WeChatOAuthCollector(app))  # the app, the middleware, or its Counters

A custom collector, not ``prometheus_client.Counter`` objects: the middleware already counts in
``middleware.counters``, so a scrape reads those numbers as they are and the request path pays
nothing extra. Exposed, for the default ``prefix``:

- ``wechat_oauth_exchanges_total``: calls to ``sns/oauth2/access_token`` by this process;
- ``wechat_oauth_deduplicated_total``: callbacks that waited for an exchange in flight;
- ``wechat_oauth_cache_hits_total``: callbacks served a stored result;
- ``wechat_oauth_recovered_total``: 40029/40163 answers replaced by another request's result;
- ``wechat_oauth_errors_total{reason="..."}``: error answers, by the error's ``reason``;
- ``wechat_oauth_waiting``: a gauge, callbacks waiting for an exchange in flight right now;

and any counter the middleware adds later (each integer field of :class:`Counters`).

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

from ._core.asgi import ASGIApp, inner_app
from ._core.counters import Counters
from .web import WeChatOAuthMiddleware

logger = logging.getLogger("asgi_wechat_oauth")

#: What the collector can read: the counters themselves, the middleware, or an app that holds
#: the middleware somewhere in its stack (Starlette, FastAPI, Quart with ``app.asgi_app``).
CounterSource = Counters | WeChatOAuthMiddleware | ASGIApp

_HELP = {
    "exchanges": "Calls to sns/oauth2/access_token made by this process.",
    "deduplicated": "Callbacks that waited for the exchange already in flight for their code.",
    "cache_hits": "Callbacks served the result an earlier request stored for their code.",
    "recovered": "40029/40163 answers replaced by the result another request obtained.",
    "reauthorized": "Callbacks with an unusable code sent through login again.",
    "errors": "Error answers of the callback and login endpoints, by reason.",
    "waiting": "Callbacks waiting for an exchange in flight right now.",
}
#: Fields that are a level now, not a count since start.
_GAUGES = frozenset({"waiting"})
#: The label of each mapping counter (``errors`` counts by error reason).
_LABELS = {"errors": "reason"}
_MAX_DEPTH = 64
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class WeChatOAuthCollector(Collector):
    """Expose ``Counters`` to a ``prometheus_client`` registry.

    ``source`` is a :class:`Counters`, a :class:`WeChatOAuthMiddleware`, or an app that holds
    the middleware. An app is searched at every scrape: Starlette and FastAPI build the
    middleware given to ``app.add_middleware`` only when the app starts (the first lifespan or
    request event), so there is no instance to hand over at import time. Until the app has
    started, every counter reads 0, which is the truth; if the started app holds no
    ``WeChatOAuthMiddleware``, a warning is logged once and nothing is exposed.
    """

    def __init__(self, source: CounterSource, *, prefix: str = "wechat_oauth") -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError("prefix must be a Prometheus metric name prefix, such as wechat_oauth")
        self.source = source
        self.prefix = prefix
        self._warned = False

    def __repr__(self) -> str:
        return f"WeChatOAuthCollector({self.source!r}, prefix={self.prefix!r})"

    def describe(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """The metric names (with zero values): lets a registry refuse duplicates on register."""
        return self._families(Counters())

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        counters = self._counters()
        return self._families(counters) if counters is not None else iter(())

    def _families(self, counters: Counters) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for field in dataclasses.fields(counters):
            value = getattr(counters, field.name)
            help_text = _HELP.get(field.name, f"WeChat OAuth middleware counter {field.name}.")
            name = f"{self.prefix}_{field.name}"
            family: CounterMetricFamily | GaugeMetricFamily
            if isinstance(value, Mapping):
                family = CounterMetricFamily(
                    name, help_text, labels=[_LABELS.get(field.name, "key")]
                )
                # A plain-dict copy is taken atomically, so a scrape from another thread never
                # sees the mapping change size halfway through.
                for key, count in sorted(dict(value).items()):
                    family.add_metric([str(key)], float(count))
            elif isinstance(value, int):
                kind = GaugeMetricFamily if field.name in _GAUGES else CounterMetricFamily
                family = kind(name, help_text, value=float(value))
            else:
                continue
            yield family

    def _counters(self) -> Counters | None:
        source: object = self.source
        if isinstance(source, Counters):
            return source
        node: object | None = source
        for _ in range(_MAX_DEPTH):
            if isinstance(node, WeChatOAuthMiddleware):
                return node.counters
            if node is None:
                break
            if getattr(node, "middleware_stack", False) is None:
                return Counters()  # a Starlette app that has not started: nothing counted yet
            node = inner_app(node)
        if not self._warned:
            self._warned = True
            logger.warning(
                "wechat_oauth.metrics_unavailable: no WeChatOAuthMiddleware found in %r", source
            )
        return None
