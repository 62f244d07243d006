"""``python -m asgi_wechat_oauth check``, and what it and the Prometheus collector know of each
product.

One module per product (``web``, ``wecom``, ``miniprogram``, ``platform``, ``tokens``), each a
:class:`Product`: the classes that are the product in an app, its config from the environment
or from ``add_middleware``'s options, what to print, how to try its credentials, its counters.
A product added later is one more such module, listed in :data:`PRODUCTS`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from . import miniprogram, platform, tokens, web, wecom
from ._base import Product, Verdict
from ._run import run as _run
from ._stack import Found, find

#: Every product, in the order ``check`` reports them.
PRODUCTS: tuple[Product[Any], ...] = (
    web.PRODUCT,
    wecom.PRODUCT,
    miniprogram.PRODUCT,
    platform.PRODUCT,
    tokens.PRODUCT,
)

__all__ = ["PRODUCTS", "Found", "Product", "Verdict", "find", "run"]


async def run(app: str | None, prefixes: Sequence[str], online: bool) -> int:
    """``python -m asgi_wechat_oauth check``; returns the exit status."""
    return await _run(
        PRODUCTS,
        app=app,
        prefixes=prefixes,
        online=online,
        environ=os.environ,
        out=sys.stdout,
        err=sys.stderr,
    )
