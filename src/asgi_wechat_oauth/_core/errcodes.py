"""What WeChat's errcodes mean: the error each one becomes, and a hint for developers.

Kept apart from :mod:`asgi_wechat_oauth.errors`, which holds only the error types (its
``WeChatOAuthError.hint`` reads :func:`errcode_hint` from here).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import (
    CodeRejected,
    CredentialsRejected,
    ErrorReason,
    UpstreamError,
    WeChatOAuthError,
)

#: Reasons saying a code can never be traded, which a fresh login fixes.
UNUSABLE_CODE_REASONS = frozenset(
    {ErrorReason.CODE_INVALID, ErrorReason.CODE_USED, ErrorReason.CODE_EXPIRED}
)
#: errcodes that say this code can never be traded; 40029 and 40163 also mean "already used".
CODE_USED_ERRCODES = frozenset({40029, 40163})
_CODE_ERRORS = {
    40029: ("code_invalid", "The login code is invalid or was already used. Please log in again."),
    40163: ("code_used", "The login code was already used. Please log in again."),
    42003: ("code_expired", "The login code has expired. Please log in again."),
    41008: ("missing_code", "The login code is missing."),
}
_CONFIG_ERRCODES = frozenset({40013, 40125, 41002, 41004, 40164, 40002})

#: A product's own errcodes: errcode -> (error class, reason, message).
ErrcodeTable = Mapping[int, tuple[type[WeChatOAuthError], str, str]]


def configuration_error(service: str, errcode: int, meaning: str) -> CredentialsRejected:
    """A 500 ``configuration_error`` that says what to fix (``meaning``), never a secret."""
    return CredentialsRejected(
        "configuration_error",
        f"{service} rejected the app's configuration (errcode {errcode}: {meaning}).",
        errcode=errcode,
    )


#: A server API's answer to too many calls (per minute, per day).
RATE_LIMITED_ERRCODES = frozenset({45009, 45011})


def server_api_error(
    service: str,
    endpoint: str,
    errcode: int,
    meanings: Mapping[int, str],
    *,
    unknown_is_configuration: bool = False,
) -> WeChatOAuthError:
    """The error of a server API's ``errcode`` (a token or ticket endpoint): -1 busy (a
    retry may help), a rate limit, a configuration errcode ``meanings`` explains (500
    ``configuration_error``, saying what to fix); any other errcode is the endpoint's own
    ``upstream_error``, or a configuration error when ``unknown_is_configuration``."""
    if errcode == -1:
        return UpstreamError(
            ErrorReason.UPSTREAM_BUSY, f"{service} is busy; try again.", errcode=-1
        )
    if errcode in RATE_LIMITED_ERRCODES:
        return UpstreamError(
            ErrorReason.RATE_LIMITED, f"{service} rate-limited {endpoint}.", errcode=errcode
        )
    if errcode in meanings or unknown_is_configuration:
        return configuration_error(
            service, errcode, meanings.get(errcode, "see the error code list")
        )
    return UpstreamError(
        ErrorReason.UPSTREAM_ERROR,
        f"{service} answered errcode {errcode} at {endpoint}.",
        errcode=errcode,
    )


def error_from_errcode(errcode: int, extra: ErrcodeTable | None = None) -> WeChatOAuthError:
    """Map a WeChat ``errcode`` to the error the middleware answers with. ``extra`` holds the
    errcodes only one product's endpoint answers; it is looked up first."""
    if extra is not None and errcode in extra:
        kind, reason, message = extra[errcode]
        return kind(reason, message, errcode=errcode)
    if errcode in _CODE_ERRORS:
        reason, message = _CODE_ERRORS[errcode]
        return CodeRejected(reason, message, errcode=errcode)
    if errcode in _CONFIG_ERRCODES:
        return CredentialsRejected(
            "configuration_error",
            f"WeChat rejected the app's credentials: {errcode_hint(errcode)}.",
            errcode=errcode,
        )
    if errcode == -1:
        return UpstreamError("upstream_busy", "WeChat is busy; try again.", errcode=errcode)
    return UpstreamError(
        "upstream_error", f"WeChat answered {errcode_hint(errcode)}.", errcode=errcode
    )


#: What each errcode means and what fixes it, in English, for logs and developer-facing messages
#: (the Chinese names are in README.zh-CN.md's FAQ). Never for end users: they get ``message``.
_ERRCODE_HINTS: dict[int, tuple[str, str]] = {
    -1: ("WeChat's system is busy", "transient: try again shortly"),
    40001: (
        "the access_token is invalid or not the latest",
        "get a new one (refresh it, or log the user in again); a server token must be "
        "refreshed by one process only",
    ),
    40002: ("the grant_type is invalid", "a bug in the request: please report it"),
    40003: ("the openid is invalid", "use an openid this AppID issued, with its own token"),
    40013: (
        "the AppID is invalid",
        "copy the AppID from the WeChat console into appid= (an official account's AppID "
        "for in-WeChat login, the website app's AppID for QR login)",
    ),
    40014: ("the access_token is invalid", "get a new access_token"),
    40029: (
        "the code is invalid: already used, issued to another AppID, or made up",
        "a code can be traded once; make sure nothing else trades codes and that every worker "
        "shares one backend (RedisBackend), and that the authorize link uses this AppID",
    ),
    40030: ("the refresh_token is invalid", "send the user through login again"),
    40056: ("the agentid is invalid", "copy the app's AgentId from the WeCom console"),
    40125: (
        "the AppSecret is wrong or was reset in the console",
        "copy the current AppSecret from the WeChat console into secret= (resetting it there "
        "invalidates the old one at once)",
    ),
    40163: (
        "the code was already used",
        "a code can be traded once; make sure nothing else trades codes and that every worker "
        "shares one backend (RedisBackend)",
    ),
    40164: (
        "this server's IP address is not on the app's IP allowlist",
        "add the server's outgoing IP address to the IP allowlist in the WeChat console",
    ),
    40226: (
        "WeChat flagged the user as high-risk",
        "nothing to fix on the server: the user cannot log in until WeChat lifts the flag",
    ),
    41002: ("the appid is missing", "set appid="),
    41004: ("the AppSecret is missing", "set secret="),
    41008: ("the code is missing", "the callback needs WeChat's ?code="),
    42001: ("the access_token has expired", "get a new access_token"),
    42002: ("the refresh_token has expired (30 days)", "send the user through login again"),
    42003: (
        "the code has expired (5 minutes, 10 for QR login)",
        "the user must start the login again",
    ),
    42007: (
        "the user's tokens were revoked (password changed)",
        "send the user through login again",
    ),
    45011: (
        "the API's call quota is used up for now (code2Session: 100 calls per user a minute)",
        "try again in a minute, and look for a loop or a retry storm calling the API",
    ),
    48001: (
        "the API is not authorized for this app or scope",
        "sns/userinfo needs scope snsapi_userinfo or snsapi_login; for other APIs, check the "
        "app's permissions in the WeChat console",
    ),
    50001: (
        "the redirect URI is not a trusted domain of the WeCom app",
        "add the callback's domain to the app's trusted domains in the WeCom console",
    ),
    60020: (
        "this server's IP address is not on the WeCom app's allowlist",
        "add the server's outgoing IP address to the app's trusted IPs in the WeCom console",
    ),
}


def errcode_hint(errcode: int | None) -> str | None:
    """``"errcode 40125: the AppSecret is wrong or was reset in the console; fix: ..."``: the
    errcode, what it means and how to fix it, in English. ``None`` for no errcode."""
    if errcode is None:
        return None
    known = _ERRCODE_HINTS.get(errcode)
    if known is None:
        return f"errcode {errcode}: see WeChat's global return codes"
    meaning, fix = known
    return f"errcode {errcode}: {meaning}; fix: {fix}"
