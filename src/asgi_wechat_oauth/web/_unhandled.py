"""A callback whose code was traded but whose request the app does not handle is a lost login
that would look like a success in the logs: say so, loudly, once per process and cause."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from .._core.asgi import Message, Scope, Send
from .._core.paths import matches

logger = logging.getLogger("asgi_wechat_oauth")

#: Why a traded code reached no handler: the app answered 404, 405, or redirected the code.
CAUSES = ("not_found", "method_not_allowed", "redirect")
#: The causes already logged by this process.
warned: set[str] = set()


def watch_the_answer(
    scope: Scope, send: Send, callback_path: str, callback_paths: tuple[str, ...]
) -> Send:
    """``send``, checking the app's answer to a callback that got its identity (as it is, once
    every cause has been logged)."""
    if len(warned) == len(CAUSES):
        return send

    async def send_watched(message: Message) -> None:
        if message["type"] == "http.response.start":
            _warn_if_unhandled(scope, message, callback_path, callback_paths)
        await send(message)

    return send_watched


def _warn_if_unhandled(
    scope: Scope, start: Message, callback_path: str, callback_paths: tuple[str, ...]
) -> None:
    status: int = start["status"]
    if status in (404, 405):
        cause = "not_found" if status == 404 else "method_not_allowed"
        advice = (
            f"route your callback handler (GET) at {scope['path']!r}, or set callback_path "
            "to the path your route has"
        )
    elif 300 <= status < 400:
        location = next((v for k, v in start.get("headers", ()) if k.lower() == b"location"), b"")
        target = urlsplit(location.decode("latin-1"))
        if "code=" not in target.query:
            return  # a redirect after login (to next, to /): what a handler should do
        cause = "redirect"
        to = f" to {target.path!r}" if target.path else ""
        if matches({"path": target.path, "root_path": scope.get("root_path", "")}, callback_paths):
            advice = (
                f"the redirect{to} comes back here and is served the stored result while "
                f"result_ttl lasts; set callback_path={target.path!r} to spare it"
            )
        else:
            advice = (
                f"the code went{to}, which the middleware does not intercept: the login is "
                "lost there; set callback_path to the path your route has"
            )
    else:
        return
    if cause in warned:
        return
    warned.add(cause)
    logger.warning(
        "wechat_oauth.callback_unhandled: the code was traded at %r (callback_path=%r), "
        "then the app answered %d: %s",
        scope["path"],
        callback_path,
        status,
        advice,
    )
