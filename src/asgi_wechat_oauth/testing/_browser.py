"""The WeChat in-app browser's duplicate callback, reproduced, and logins that end with it (WeChat
and WeCom, whose browser doubles callbacks too)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import httpx

from ..web import authorize_url
from ._base import EmulatorBase
from ._emulator import WeChatEmulator
from ._wecom import WeComEmulator

#: WeChat's and WeCom's built-in browsers (login endpoints look for ``MicroMessenger`` and
#: ``wxwork/``), and a desktop browser.
WECHAT_USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
    "Safari/537.36 MicroMessenger/8.0.47.2560(0x28002F30) NetType/WIFI Language/zh_CN"
)
WECOM_USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
    "Safari/537.36 MicroMessenger/8.0.40 wxwork/4.1.22 Language/zh_CN"
)
DESKTOP_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 "
    "Safari/537.36"
)


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
    in_wechat: bool = True,
    double: bool = True,
) -> httpx.Response:
    """Log in through the app's ``login_path`` as a user of the WeChat browser, and return the
    callback's response (the page the user sees; with the login endpoint, a redirect to
    ``next``).

    ``in_wechat`` (the default) sends WeChat's browser's User-Agent, which takes the official
    account's route; ``in_wechat=False`` a desktop browser's, which takes the website app's QR
    login when the app has one (``website_appid``).

    ``client`` reaches the app and keeps its cookies (the nonce cookie the login endpoint sets);
    the consent page is answered by ``emulator`` in-process, whatever host the app's
    ``authorize_base_url`` names. With ``double`` (the default) the callback is sent twice
    with the same code, the first request cut off, as the WeChat browser does.
    """
    if emulator.double_navigation:
        raise RuntimeError(
            "the emulator's double_navigation page is for real browsers: web_login sends the "
            "double callback itself (double=True)"
        )
    user_agent = WECHAT_USER_AGENT if in_wechat else DESKTOP_USER_AGENT
    return await _login(
        client, emulator, login_path, next, scope, double=double, headers={"user-agent": user_agent}
    )


async def platform_login(
    client: httpx.AsyncClient,
    emulator: WeChatEmulator,
    *,
    login_path: str = "/wechat/platform/login",
    ticket_path: str | None = "/wechat/platform/ticket",
    next: str | None = None,
    scope: str | None = None,
    double: bool = True,
) -> httpx.Response:
    """Log in through a third-party platform's ``login_path`` (``PlatformOAuthMiddleware``) as
    a user of the WeChat browser, and return the callback's response.

    First the emulator pushes a ticket to ``ticket_path``, as WeChat does every 10 minutes, so
    that the platform can fetch its component token (``ticket_path=None``: push none, the app
    has one). The consent page is the authorizer's, asked on the platform's behalf; with
    ``double`` the callback is sent twice with the same code, the first request cut off.
    """
    if ticket_path is not None:
        pushed = await emulator.push_ticket(ticket_path, client=client)
        if pushed.status_code != 200:
            raise AssertionError(
                f"the ticket push to {ticket_path} answered {pushed.status_code}: "
                f"{pushed.text[:200]} (do the platform's token, encoding_aes_key and "
                "component_appid match the emulator's?)"
            )
    return await web_login(
        client, emulator, login_path=login_path, next=next, scope=scope, double=double
    )


async def wecom_login(
    client: httpx.AsyncClient,
    emulator: WeComEmulator,
    *,
    login_path: str = "/wecom/login",
    next: str | None = None,
    scope: str | None = None,
    in_wecom: bool = True,
    double: bool = True,
) -> httpx.Response:
    """Log in through the app's WeCom ``login_path`` and return the callback's response.

    With ``in_wecom`` (the default) as a user of WeCom's browser (its User-Agent; WeCom's
    authorize page, where ``scope`` applies), else as a desktop browser (the QR login page,
    scanned and confirmed; with the emulator's ``decline_qr_login`` the callback comes back
    with ``state`` only). With ``double`` the callback is sent twice with the same code, the
    first request cut off, as WeCom's browser does.
    """
    user_agent = WECOM_USER_AGENT if in_wecom else DESKTOP_USER_AGENT
    return await _login(
        client,
        emulator,
        login_path,
        next,
        scope,
        double=double,
        headers={"user-agent": user_agent},
        declinable=not in_wecom,
    )


async def _login(
    client: httpx.AsyncClient,
    emulator: EmulatorBase,
    login_path: str,
    next: str | None,
    scope: str | None,
    *,
    double: bool,
    headers: dict[str, str] | None = None,
    declinable: bool = False,
) -> httpx.Response:
    """The app's login endpoint, the emulator's consent (in-process, whatever host the app
    redirects to), then the callback, sent twice with ``double``."""
    params = {name: value for name, value in {"next": next, "scope": scope}.items() if value}
    to_provider = await client.get(login_path, params=params, headers=headers)
    if not to_provider.is_redirect:
        raise AssertionError(
            f"GET {login_path} answered {to_provider.status_code}, not a redirect to the "
            f"consent page: {to_provider.text[:200]}"
        )
    authorize = to_provider.headers["location"].split("#")[0]
    async with emulator.http_client() as provider:
        callback = _callback_url(await provider.get(authorize), declinable=declinable)
    callback_request = partial(client.get, callback, headers=headers)
    if double:
        return await sent_twice(callback_request, abort_after=0.005, gap=0.019)
    return await callback_request()


def _callback_url(consent_answer: httpx.Response, *, declinable: bool = False) -> str:
    """The callback URL the consent page redirects to (with a code, unless the user may have
    declined)."""
    location: str = consent_answer.headers.get("location", "")
    has_code = "code=" in location or (declinable and "state=" in location)
    if consent_answer.status_code != 302 or not has_code:
        raise RuntimeError(
            f"the emulator's consent page answered {consent_answer.status_code}: "
            f"{consent_answer.text[:200]}"
        )
    return location
