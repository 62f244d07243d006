"""A mini-program whose login request is sent twice with the same code, as retrying clients do."""

from __future__ import annotations

from functools import partial

import httpx

from ._browser import sent_twice


async def double_login(
    client: httpx.AsyncClient,
    code: str,
    *,
    path: str = "/wechat/miniprogram/login",
    abort_after: float = 0.005,
    gap: float = 0.019,
) -> httpx.Response:
    """POST ``{"code": code}`` to ``path``, abort it after ``abort_after`` seconds (a network
    layer or proxy giving up on it), POST the same body again ``gap`` seconds after the first
    started, and return the second response: the one the mini-program sees.

    Pass ``abort_after`` larger than the login takes to get two complete, overlapping requests
    (two pages logging in with one code)."""
    return await sent_twice(
        partial(client.post, path, json={"code": code}), abort_after=abort_after, gap=gap
    )
