"""Keep the app secret, codes, tokens and session keys out of httpx's own request log.

httpx logs every request URL at INFO (``HTTP Request: GET https://...?secret=...&code=...``) on
the ``httpx`` logger, so any app that turns on INFO logging would log WeChat credentials. The
filter rewrites those URLs in place, for every client, before any handler sees the record.
"""

from __future__ import annotations

import logging
import re

import httpx

SENSITIVE_PARAMETERS = (
    "secret",
    "corpsecret",
    "code",
    "js_code",
    "access_token",
    "component_access_token",  # a third-party platform's token, in its code exchange's URL
    "refresh_token",
    "session_key",
    "ticket",  # a jsapi_ticket, when a URL carries one
)
_PATTERN = re.compile(r"([?&](?:" + "|".join(SENSITIVE_PARAMETERS) + r")=)[^&#\s\"']*")


def redact(text: str) -> str:
    return _PATTERN.sub(r"\1[redacted]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact(str(arg)) if isinstance(arg, (httpx.URL, str)) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install() -> None:
    """Attach the filter to httpx's logger once."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())
