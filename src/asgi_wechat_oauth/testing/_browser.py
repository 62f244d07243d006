"""The WeChat in-app browser's duplicate callback, reproduced."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import httpx

from ..web._authorize import authorize_url
from ._emulator import WeChatEmulator


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
    return _callback_url(await client.get(url))


async def web_login(
    client: httpx.AsyncClient,
    emulator: WeChatEmulator,
    *,
    login_path: str = "/wechat/login",
    next: str | None = None,
    scope: str | None = None,
    double: bool = True,
) -> httpx.Response:
    """Log in through the app's ``login_path`` as a user of the WeChat browser, and return the
    callback's response (the page the user sees; with the login endpoint, a redirect to
    ``next``).

    ``client`` reaches the app and keeps its cookies (the nonce cookie the login endpoint sets);
    the consent page is answered by ``emulator`` in-process, whatever host the app's
    ``authorize_base_url`` names. With ``double`` (the default) the callback is sent twice
    with the same code, the first request cut off, as the WeChat browser does.
    """
    params = {name: value for name, value in {"next": next, "scope": scope}.items() if value}
    to_wechat = await client.get(login_path, params=params)
    if not to_wechat.is_redirect:
        raise AssertionError(
            f"GET {login_path} answered {to_wechat.status_code}, not a redirect to WeChat: "
            f"{to_wechat.text[:200]}"
        )
    if emulator.double_navigation:
        raise RuntimeError(
            "the emulator's double_navigation page is for real browsers: web_login sends the "
            "double callback itself (double=True)"
        )
    authorize = to_wechat.headers["location"].split("#")[0]
    async with emulator.http_client() as wechat:
        callback = _callback_url(await wechat.get(authorize))
    if double:
        return await double_callback(client, callback)
    return await client.get(callback)


def _callback_url(consent_answer: httpx.Response) -> str:
    """The callback URL the consent page redirects to."""
    location: str = consent_answer.headers.get("location", "")
    if consent_answer.status_code != 302 or "code=" not in location:
        raise RuntimeError(
            f"the emulator's consent page answered {consent_answer.status_code}: "
            f"{consent_answer.text[:200]}"
        )
    return location
