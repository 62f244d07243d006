"""Reading the login request's body: at most 4 KiB, JSON or a form, parsed for the app and
replayed to it."""

from __future__ import annotations

import json
from typing import Any

from .._core.asgi import Message, Receive, Scope
from .._core.asgi import read_body as read_request_body
from .._core.callback import check_code, form_pairs
from ..errors import ErrorReason, InvalidCallbackRequest

#: A login body is ``{"code": "..."}`` and perhaps a few fields of the app's own.
MAX_BODY_BYTES = 4096


async def read_body(scope: Scope, receive: Receive) -> bytes | None:
    """The whole body, or ``None`` if the client went away; :class:`RequestTooLarge` past
    :data:`MAX_BODY_BYTES` (by ``Content-Length`` before reading, or while reading)."""
    return await read_request_body(scope, receive, limit=MAX_BODY_BYTES, what="The body")


def parse_body(scope: Scope, body: bytes) -> tuple[str, dict[str, Any]]:
    """The ``code`` of a JSON (``{"code": ...}``) or form (``code=...``) body, checked as the
    web callback checks its code, and the body's other fields: what the app reads in
    ``scope["wechat_fields"]``, whichever of the two the client sent (a JSON object's values as
    JSON has them, a form's as text; a name given twice keeps its last value, as ``json.loads``
    and the frameworks' ``form[name]`` do). :class:`InvalidCallbackRequest` with a reason
    otherwise."""
    media_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    pairs: list[tuple[str, Any]]
    if media_type == "application/json":
        pairs = _json_pairs(body)
    elif media_type == "application/x-www-form-urlencoded":
        try:
            pairs = list(form_pairs(body))
        except ValueError:
            raise _invalid_body() from None
    else:
        raise _invalid_body()
    codes = [value for name, value in pairs if name == "code"]
    if len(codes) > 1:
        raise InvalidCallbackRequest(
            ErrorReason.DUPLICATE_PARAMETER, "The body carries 'code' twice."
        )
    if not codes or codes[0] in (None, ""):
        raise InvalidCallbackRequest(ErrorReason.MISSING_CODE, "The body carries no login code.")
    if not isinstance(codes[0], str):
        raise InvalidCallbackRequest(ErrorReason.MALFORMED_CODE, "The login code is malformed.")
    code = check_code(codes[0])
    # The code stays out: it is spent, and an app that logs its fields must not log it.
    fields = {name: value for name, value in pairs if name != "code"}
    try:  # JSON may carry lone surrogates, which no UTF-8 answer or log line can hold
        json.dumps(fields, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid_body() from None
    return code, fields


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the real messages
    (``http.disconnect``), so the app can read the body itself."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _json_pairs(body: bytes) -> list[tuple[str, Any]]:
    """The top-level object's pairs, in order: a repeated key stays visible (``code`` given
    twice is refused) instead of the last one winning. Nested objects are plain dicts."""
    top: list[tuple[str, Any]] | None = None

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal top
        top = pairs  # objects close inside out: the last one closed is the document's
        return dict(pairs)

    try:
        document = json.loads(body.decode("utf-8"), object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        raise _invalid_body() from None
    if not isinstance(document, dict) or top is None:
        raise _invalid_body()
    return top


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _invalid_body() -> InvalidCallbackRequest:
    return InvalidCallbackRequest(
        ErrorReason.INVALID_BODY,
        'The body must be JSON ({"code": ...}, application/json) or a form '
        "(code=..., application/x-www-form-urlencoded).",
    )
