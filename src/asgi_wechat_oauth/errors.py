"""Every error the package raises, and the reasons the middlewares answer with.

The bottom of the package: it imports nothing of it, and everything else imports it (as httpx's
``_exceptions.py`` and ``starlette.exceptions``). Two families:

- :class:`WeChatOAuthError` and its subclasses: a request failed. Each has the HTTP status the
  middleware answers and a stable, machine-readable :class:`ErrorReason`; ``message`` is for
  people. :class:`CredentialsRejected` is WeChat refusing the app's credentials or console
  setup (a 500: fix it in WeChat's console).
- :class:`InvalidConfig`: an option is wrong where it is written (a ``ValueError``).

Messages never hold the app secret, a code or a token: they are shown to users and logged.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "CodeRejected",
    "CredentialsRejected",
    "ErrorReason",
    "ExchangeLost",
    "InvalidCallbackRequest",
    "InvalidConfig",
    "LoginDeclined",
    "LoginLoop",
    "MethodNotAllowed",
    "RateLimited",
    "RequestTooLarge",
    "RiskyUserRejected",
    "ServiceUnavailable",
    "SnapshotUserRejected",
    "StateRejected",
    "UpstreamError",
    "UpstreamTimeout",
    "WeChatOAuthError",
]


class ErrorReason(str, enum.Enum):
    """The ``reason`` of every error answer: ``{"error": reason, ...}`` in JSON, the error
    page's texts, the ``reason`` label of the error metric. A ``str``, so it compares equal to
    its value (``ErrorReason.CODE_USED == "code_used"``) and prints as it."""

    BACKEND_UNAVAILABLE = "backend_unavailable"
    BODY_TOO_LARGE = "body_too_large"
    CODE_EXPIRED = "code_expired"
    CODE_INVALID = "code_invalid"
    CODE_USED = "code_used"
    CONFIGURATION_ERROR = "configuration_error"
    DUPLICATE_PARAMETER = "duplicate_parameter"
    EXCHANGE_LOST = "exchange_lost"
    INVALID_BODY = "invalid_body"
    INVALID_HOST = "invalid_host"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    INVALID_NEXT = "invalid_next"
    INVALID_QUERY = "invalid_query"
    INVALID_SCOPE = "invalid_scope"
    INVALID_STATE = "invalid_state"
    LOGIN_DECLINED = "login_declined"
    LOGIN_LOOP = "login_loop"
    MALFORMED_CODE = "malformed_code"
    MALFORMED_STATE = "malformed_state"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    MISSING_CODE = "missing_code"
    OVERLOADED = "overloaded"
    QR_LINK_EXPIRED = "qr_link_expired"
    RATE_LIMITED = "rate_limited"
    RISKY_USER = "risky_user"
    SCOPE_NOT_SUPPORTED_HERE = "scope_not_supported_here"
    SHUTTING_DOWN = "shutting_down"
    SNAPSHOT_USER = "snapshot_user"
    STATE_MISMATCH = "state_mismatch"
    TOO_MANY_CODES = "too_many_codes"
    UPSTREAM_BAD_RESPONSE = "upstream_bad_response"
    UPSTREAM_BUSY = "upstream_busy"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    WXLOGIN_UNAVAILABLE = "wxlogin_unavailable"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


class InvalidConfig(ValueError):
    """The options are invalid where they are written; ``problems`` lists each one (each names
    its option, and a misspelt name says which one was meant)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class WeChatOAuthError(Exception):
    """Base class of failed requests. ``reason`` is stable (part of the API); ``message`` is
    for humans."""

    status_code: ClassVar[int] = 500
    #: Whether a duplicate arriving later gets this same error from the result cache. True only
    #: for errors that say the code itself can never be traded (used, invalid, expired).
    definitive: ClassVar[bool] = False
    #: Seconds to send as ``Retry-After``, for errors that say when trying again makes sense.
    retry_after: ClassVar[int | None] = None

    def __init__(
        self, reason: ErrorReason | str, message: str, *, errcode: int | None = None
    ) -> None:
        super().__init__(message)
        #: Raises ``ValueError`` for a reason that is not an :class:`ErrorReason`.
        self.reason = ErrorReason(reason)
        self.message = message
        self.errcode = errcode

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, errcode={self.errcode!r})"

    @property
    def hint(self) -> str | None:
        """For the developer, not the user: what WeChat's errcode means and how to fix it
        (``None`` without an errcode). Logged with the exchange; derived, so it is never stored."""
        return errcode_hint(self.errcode)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "reason": self.reason,
            "message": self.message,
            "errcode": self.errcode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeChatOAuthError:
        """An error as :meth:`to_dict` stored it (``ValueError`` for an unknown reason)."""
        kind = _ERROR_TYPES.get(str(data.get("type")), WeChatOAuthError)
        errcode = data.get("errcode")
        return kind(
            str(data["reason"]),
            str(data.get("message", "")),
            errcode=errcode if isinstance(errcode, int) else None,
        )


class InvalidCallbackRequest(WeChatOAuthError):
    """The request itself is unusable (missing or malformed ``code``, bad query or body)."""

    status_code = 400


class MethodNotAllowed(InvalidCallbackRequest):
    status_code = 405


class RequestTooLarge(InvalidCallbackRequest):
    """The request body is larger than the endpoint reads (refused before reading it all)."""

    status_code = 413


class StateRejected(WeChatOAuthError):
    """The callback's state is forged, expired, from another browser, or not the state of the
    request that traded this code (a replayed code). Answered before any exchange."""

    status_code = 403


class SnapshotUserRejected(WeChatOAuthError):
    """``snapshot_users="reject"`` and WeChat opened the page in snapshot mode (virtual openid)."""

    status_code = 403


class LoginDeclined(WeChatOAuthError):
    """The user declined the login (a QR login that came back with ``state`` and no code)."""

    status_code = 403


class LoginLoop(WeChatOAuthError):
    """The browser completed ``login_loop_limit`` logins within ``login_loop_window``: its
    session is evidently not kept, so the login endpoint stops sending it to WeChat."""

    status_code = 429


class RiskyUserRejected(WeChatOAuthError):
    """WeChat refused to log this user in (mini-program errcode 40226, a high-risk user)."""

    status_code = 403
    definitive = True


class CodeRejected(WeChatOAuthError):
    """WeChat refused the code: invalid (40029), used (40163) or expired (42003)."""

    status_code = 400
    definitive = True


class UpstreamError(WeChatOAuthError):
    """WeChat was busy, unreachable, or answered something unusable."""

    status_code = 502


class UpstreamTimeout(UpstreamError):
    """WeChat did not answer within ``exchange_timeout``."""

    status_code = 504


class RateLimited(UpstreamError):
    """WeChat's call quota is used up for now (errcode 45011): try again in a minute."""

    status_code = 429
    retry_after = 60


class ExchangeLost(UpstreamError):
    """Another worker traded the code and died before sharing the result: the code is spent.

    Stored like a code error, so that retries of the same code get this answer at once."""

    definitive = True


class CredentialsRejected(WeChatOAuthError):
    """WeChat refused the app's credentials or its console setup (40013 invalid appid, 40125
    invalid secret, 40164 an IP not on the allowlist, ...): reason ``configuration_error``."""

    status_code = 500


class ServiceUnavailable(WeChatOAuthError):
    """The middleware cannot coordinate the exchange right now (overloaded, backend down)."""

    status_code = 503


_ERROR_TYPES: dict[str, type[WeChatOAuthError]] = {
    cls.__name__: cls
    for cls in (
        WeChatOAuthError,
        InvalidCallbackRequest,
        MethodNotAllowed,
        RequestTooLarge,
        StateRejected,
        SnapshotUserRejected,
        LoginDeclined,
        LoginLoop,
        RiskyUserRejected,
        CodeRejected,
        UpstreamError,
        UpstreamTimeout,
        RateLimited,
        ExchangeLost,
        CredentialsRejected,
        ServiceUnavailable,
    )
}

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
