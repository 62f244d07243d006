"""Reading ``code`` and ``state`` from a callback's query string, strictly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ..errors import ErrorReason, InvalidCallbackRequest

MAX_CODE_LENGTH = 128
MAX_STATE_LENGTH = 128
_CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
_STATE_PATTERN = re.compile(r"[\x21-\x7e]*")  # printable ASCII, no spaces or controls
_MAX_FIELDS = 64


@dataclass(frozen=True)
class CallbackParams:
    code: str
    state: str | None


def parse_callback_query(query_string: bytes) -> CallbackParams:
    """Return ``code`` and ``state``, or raise :class:`InvalidCallbackRequest` with a reason.

    Anything WeChat cannot have sent is refused before any call to WeChat: a missing, repeated,
    over-long or oddly formed code; a repeated or malformed state; a query that does not decode.
    """
    try:
        pairs = form_pairs(query_string)
    except ValueError:
        raise InvalidCallbackRequest(
            ErrorReason.INVALID_QUERY, "The callback's query string could not be read."
        ) from None
    codes = [value for name, value in pairs if name == "code"]
    states = [value for name, value in pairs if name == "state"]
    if len(codes) > 1 or len(states) > 1:
        raise InvalidCallbackRequest(
            ErrorReason.DUPLICATE_PARAMETER,
            "The callback carries 'code' or 'state' more than once.",
        )
    if not codes or not codes[0]:
        raise InvalidCallbackRequest(
            ErrorReason.MISSING_CODE,
            "The callback carries no login code (the user may have declined to authorize).",
        )
    code = check_code(codes[0])
    state = states[0] if states else None
    if state is not None and (len(state) > MAX_STATE_LENGTH or not _STATE_PATTERN.fullmatch(state)):
        raise InvalidCallbackRequest(
            ErrorReason.MALFORMED_STATE, "The state parameter is malformed."
        )
    return CallbackParams(code=code, state=state)


def form_pairs(data: bytes) -> list[tuple[str, str]]:
    """Decode ``a=1&b=2`` (a query string or a form body) strictly; ``ValueError`` for
    non-ASCII bytes, bad UTF-8 after unquoting, or more than 64 fields."""
    return parse_qsl(
        data.decode("ascii"),
        keep_blank_values=True,
        encoding="utf-8",
        errors="strict",
        max_num_fields=_MAX_FIELDS,
    )


def check_code(code: str) -> str:
    """Return ``code`` if WeChat can have issued it; raise ``malformed_code`` otherwise."""
    if len(code) > MAX_CODE_LENGTH or not _CODE_PATTERN.fullmatch(code):
        raise InvalidCallbackRequest(ErrorReason.MALFORMED_CODE, "The login code is malformed.")
    return code
