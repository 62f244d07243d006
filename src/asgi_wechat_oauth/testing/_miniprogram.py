"""A mini-program whose login request is sent twice with the same code, as retrying clients do."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import httpx

from ._browser import sent_twice
from ._emulator import WeChatEmulator
from ._users import EmulatedUser

DEFAULT_PATH = "/wechat/miniprogram/login"


async def double_login(
    client: httpx.AsyncClient,
    code: str,
    *,
    path: str = DEFAULT_PATH,
    abort_after: float = 0.005,
    gap: float = 0.019,
    form: bool = False,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST ``{"code": code}`` to ``path``, abort it after ``abort_after`` seconds (a network
    layer or proxy giving up on it), POST the same body again ``gap`` seconds after the first
    started, and return the second response: the one the mini-program sees.

    Pass ``abort_after`` larger than the login takes to get two complete, overlapping requests
    (two pages logging in with one code). ``form`` sends ``code=...`` as a form instead of
    JSON; ``headers`` go with both requests (an ``Idempotency-Key``, as a retry repeats it)."""
    return await sent_twice(
        partial(_post, client, path, code, form=form, headers=headers),
        abort_after=abort_after,
        gap=gap,
    )


async def miniprogram_login(
    client: httpx.AsyncClient,
    emulator: WeChatEmulator,
    *,
    path: str = DEFAULT_PATH,
    code: str | None = None,
    user: EmulatedUser | None = None,
    double: bool = True,
    form: bool = False,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Log in as a mini-program does: take a ``wx.login()`` code from ``emulator`` (for
    ``user``, default the emulator's; or use ``code``), POST it to the app's ``path`` and
    return the response the mini-program sees. With ``double`` (the default) the login is
    sent twice with the same code, the first request cut off (:func:`double_login`), as a
    retrying network layer or proxy does. ``form`` and ``headers`` as for
    :func:`double_login`."""
    if code is not None and user is not None:
        raise TypeError("miniprogram_login takes a code or a user, not both")
    if code is None:
        code = emulator.issue_miniprogram_code(user)
    if double:
        return await double_login(client, code, path=path, form=form, headers=headers)
    return await _post(client, path, code, form=form, headers=headers)


async def _post(
    client: httpx.AsyncClient,
    path: str,
    code: str,
    *,
    form: bool,
    headers: Mapping[str, str] | None,
) -> httpx.Response:
    if form:
        return await client.post(path, data={"code": code}, headers=headers)
    return await client.post(path, json={"code": code}, headers=headers)
