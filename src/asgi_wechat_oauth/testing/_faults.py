"""Faults the emulators inject, and how an answer is sent: JSON labelled ``text/plain`` after the
emulator's latency, as WeChat sends it, or spoiled by a fault (an errcode, an HTTP error, a body
that is not JSON, a connection cut halfway). Shared by the WeChat and WeCom emulators."""

from __future__ import annotations

import enum
import json
import secrets
from typing import Any

import anyio
from starlette.responses import PlainTextResponse, Response

from .._core.asgi import Receive, Scope, Send


class Fault(str, enum.Enum):
    """Faults the emulator can inject into its next answers of an endpoint."""

    BUSY = "busy"  #: errcode -1, before the code is used
    HTTP_500 = "http_500"  #: HTTP 500, before the code is used
    HTTP_502 = "http_502"  #: HTTP 502, before the code is used
    MALFORMED_JSON = "malformed_json"  #: the code is used, the answer is not JSON
    TRUNCATED = "truncated"  #: the code is used, the body stops halfway, the connection drops
    DROP = "drop"  #: the code is used, the connection drops after the status line
    RATE_LIMITED = "rate_limited"  #: errcode 45011 (minute quota reached), before the code is used
    RISKY_USER = "risky_user"  #: errcode 40226 (high-risk user), before the code is used
    #: errcode 40001 (the access token is invalid or not the latest), as a server API answers
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - a fault's name
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - errcode 42001 (the access token expired)


#: Faults that strike before the request is processed (the code stays unused).
BEFORE_USE = frozenset(
    {
        Fault.BUSY,
        Fault.HTTP_500,
        Fault.HTTP_502,
        Fault.RATE_LIMITED,
        Fault.RISKY_USER,
        Fault.TOKEN_INVALID,
        Fault.TOKEN_EXPIRED,
    }
)
#: Faults answered with a WeChat errcode.
_ERRCODE_FAULTS = {
    Fault.BUSY: (-1, "system error"),
    Fault.RATE_LIMITED: (45011, "api minute-quota reach limit"),
    Fault.RISKY_USER: (40226, "high risk user"),
    Fault.TOKEN_INVALID: (40001, "invalid credential, access_token is invalid or not latest"),
    Fault.TOKEN_EXPIRED: (42001, "access_token expired"),
}


class EmulatedConnectionDrop(ConnectionResetError):
    """Raised by the emulator to cut a connection (a real server then closes the socket)."""


async def answer_with(answer: dict[str, Any], fault: Fault | None, latency: float) -> Response:
    """``answer`` as JSON labelled ``text/plain``, after ``latency``, spoiled by ``fault``."""
    await anyio.sleep(latency)
    try:
        body = json.dumps(answer, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate in a field: sent \u-escaped, as JSON can
        body = json.dumps(answer).encode()
    if fault is Fault.MALFORMED_JSON:
        return PlainTextResponse("<html>502 Bad Gateway</html>")
    if fault in (Fault.TRUNCATED, Fault.DROP):
        return _BrokenResponse(body, truncate=fault is Fault.TRUNCATED)
    return Response(body, media_type="text/plain")


async def answer_fault(fault: Fault, latency: float) -> Response:
    """The answer of a fault that strikes before the request is processed."""
    await anyio.sleep(latency)
    if fault in _ERRCODE_FAULTS:
        errcode, errmsg = _ERRCODE_FAULTS[fault]
        return Response(json.dumps(error(errcode, errmsg)), media_type="text/plain")
    return PlainTextResponse("upstream error", status_code=500 if fault is Fault.HTTP_500 else 502)


def error(errcode: int, errmsg: str) -> dict[str, Any]:
    """An error answer, with a request id as WeChat appends one."""
    return {"errcode": errcode, "errmsg": f"{errmsg}, rid: {secrets.token_hex(4)}"}


class _BrokenResponse(Response):
    """Starts a response and then cuts the connection, halfway through the body or before it."""

    def __init__(self, body: bytes, *, truncate: bool) -> None:
        super().__init__(body, media_type="text/plain")
        self._truncate = truncate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        if self._truncate:
            half = self.body[: len(self.body) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
        raise EmulatedConnectionDrop("connection dropped by the WeChat emulator")
