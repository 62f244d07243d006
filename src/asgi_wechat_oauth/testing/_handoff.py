"""A desktop login handed over from a phone, played by two clients: the desktop browser and
the phone's WeChat (the official account's login through the emulator, then the phone's
confirmation)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import partial

import httpx

from ._browser import DESKTOP_USER_AGENT, WECHAT_USER_AGENT, _callback_url, sent_twice
from ._emulator import WeChatEmulator

_HTML = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"
_LINK = re.compile(r'<a [^>]*id="wechat-login-link" href="([^"]+)"')
_POLL = re.compile(r'data-poll-url="([^"]+)"')
_FORM = re.compile(r'<form method="post" action="([^"]+)"')
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class HandoffPages:
    """What the two devices were shown on the way (for tests that look at them)."""

    desktop: httpx.Response
    confirm: httpx.Response
    done: httpx.Response


def _found(pattern: re.Pattern[str], response: httpx.Response, what: str) -> str:
    match = pattern.search(response.text)
    if match is None:
        raise AssertionError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} without {what}: {response.text[:300]}"
        )
    return html.unescape(match.group(1))


async def handoff_login(
    desktop: httpx.AsyncClient,
    phone: httpx.AsyncClient,
    emulator: WeChatEmulator,
    *,
    login_path: str = "/wechat/login",
    next: str | None = None,
    scope: str | None = None,
    confirm: bool = True,
    double: bool = True,
    pages: list[HandoffPages] | None = None,
) -> httpx.Response:
    """Log a desktop browser in through a phone, and return the desktop's answer to the
    redirect its page follows: the app's callback handler (with the login endpoint, usually
    a redirect to ``next``).

    ``desktop`` and ``phone`` reach the app (each keeps its own cookies); the phone opens the
    page's login link (an absolute URL on the app's host) with WeChat's User-Agent, logs in
    through the emulator's consent page (in-process), sends the callback twice with ``double``
    (as WeChat's browser does), and confirms (``confirm=False``: cancels, and the desktop's poll
    answer, 410, is returned). ``pages``, when given, gets the pages shown on the way.
    """
    desktop_headers = {"user-agent": DESKTOP_USER_AGENT, "accept": _HTML}
    params = {name: value for name, value in {"next": next, "scope": scope}.items() if value}
    page = await desktop.get(login_path, params=params, headers=desktop_headers)
    link = _found(_LINK, page, "the handoff page's login link")
    poll_url = _found(_POLL, page, "the handoff page's poll URL")

    phone_headers = {"user-agent": WECHAT_USER_AGENT, "accept": _HTML}
    to_wechat = await phone.get(link, headers=phone_headers)
    if not to_wechat.is_redirect:
        raise AssertionError(
            f"the login link answered {to_wechat.status_code}, not a redirect to WeChat: "
            f"{to_wechat.text[:300]}"
        )
    authorize = to_wechat.headers["location"].split("#")[0]
    async with emulator.http_client() as provider:
        callback = _callback_url(await provider.get(authorize))
    callback_request = partial(phone.get, callback, headers=phone_headers)
    if double:
        asked = await sent_twice(callback_request, abort_after=0.005, gap=0.019)
    else:
        asked = await callback_request()
    action = _found(_FORM, asked, "the confirmation form")
    csrf = _found(_CSRF, asked, "the confirmation's CSRF token")
    answer = "confirm" if confirm else "cancel"
    done = await phone.post(action, data={"csrf": csrf, "answer": answer}, headers=phone_headers)
    if pages is not None:
        pages.append(HandoffPages(page, asked, done))

    polled = await desktop.get(poll_url, headers={"accept": "application/json"})
    if polled.status_code != 200:
        return polled
    return await desktop.get(polled.json()["redirect"], headers=desktop_headers)
