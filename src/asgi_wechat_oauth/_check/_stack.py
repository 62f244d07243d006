"""Find the products in an app: follow what wraps what, as a request would go through it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._core.asgi import inner_app
from ._base import Product

#: How far a chain of wrapped apps is followed.
_MAX_DEPTH = 64


@dataclass(frozen=True)
class Found:
    """A product in an app: the object itself, or (``found is None``) what Starlette's
    ``add_middleware`` recorded and will build when the app starts."""

    product: Product[Any]
    found: object | None
    kind: type
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def config(self) -> Any:
        """The product's config; :class:`~asgi_wechat_oauth.errors.InvalidConfig` for options
        ``add_middleware`` was given that would fail at start-up."""
        if self.found is not None:
            return self.product.config_of(self.found)
        return self.product.from_options(self.kind, self.args, self.kwargs)


def product_of(node: object, products: Iterable[Product[Any]]) -> Product[Any] | None:
    return next((p for p in products if isinstance(node, p.kinds)), None)


def find(app: object, products: Sequence[Product[Any]]) -> Iterator[Found]:
    """Every product in ``app``, outermost first.

    Follows a middleware's ``app`` attribute (the products' own, Starlette's and most others),
    Quart's replaced ``asgi_app``, and Starlette's and FastAPI's middleware: the built
    ``middleware_stack`` once the app has started, else ``user_middleware`` (what
    ``add_middleware`` recorded). Mounted sub-applications and routes are not searched.
    """
    node: object | None = app
    for _ in range(_MAX_DEPTH):
        if node is None:
            return
        product = product_of(node, products)
        if product is not None:
            yield Found(product, node, type(node))
        if getattr(node, "middleware_stack", False) is None:
            # A Starlette app that has not started: read what it will build.
            for middleware in getattr(node, "user_middleware", ()):
                kind = middleware.cls
                product = next(
                    (p for p in products if isinstance(kind, type) and issubclass(kind, p.kinds)),
                    None,
                )
                if product is not None:
                    yield Found(product, None, kind, middleware.args, middleware.kwargs)
            node = getattr(node, "router", None)
            continue
        node = inner_app(node)
