"""The WeChat in-app browser's duplicate callback, reproduced."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import httpx

from ..web._authorize import authorize_url


async def double_callback(
    client: httpx.AsyncClient,
    url: str,
    *,
    abort_after: float = 0.005,
    gap: float = 0.019,
) -> httpx.Response:
    """Send callback #1 and abort it after ``abort_after`` seconds, send callback #2 with the
    same URL ``gap`` seconds after #1 started, and return #2's response: the page the user sees.

    Over a real connection the abort closes the socket; through ``httpx.ASGITransport`` it
    cancels the app's task, which is harsher. If #1 finishes before ``abort_after`` it simply
    completes, as it would in the browser.
    """

    return await sent_twice(partial(client.get, url), abort_after=abort_after, gap=gap)


async def sent_twice(
    request: Callable[[], Awaitable[httpx.Response]], *, abort_after: float, gap: float
) -> httpx.Response:
    """Start ``request``, abort it after ``abort_after`` seconds, start it again ``gap``
    seconds after the first began, and return the second response."""

    async def first() -> None:
        with anyio.move_on_after(abort_after):
            await request()

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await anyio.sleep(gap)
        second = await request()
    return second


async def consent(
    client: httpx.AsyncClient,
    emulator_url: str,
    *,
    appid: str,
    redirect_uri: str,
    scope: str = "snsapi_base",
    state: str = "",
) -> str:
    """Open the emulator's consent page, as a user who agrees, and return the callback URL it
    redirects to (with a fresh code). The redirect is read, not followed: following it is the
    (double) callback's job."""
    url = authorize_url(appid, redirect_uri, scope=scope, state=state, base_url=emulator_url)
    response = await client.get(url)
    location: str = response.headers.get("location", "")
    if response.status_code != 302 or "code=" not in location:
        raise RuntimeError(f"the emulator's consent page answered {response.status_code}")
    return location
