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
from typing import Any, ClassVar

__all__ = [
    "CodeRejected",
    "CredentialsRejected",
    "ErrorReason",
    "ExchangeLost",
    "HandoffExpired",
    "InvalidCallbackRequest",
    "InvalidConfig",
    "LoginDeclined",
    "LoginLoop",
    "MethodNotAllowed",
    "PushRejected",
    "RateLimited",
    "RequestTooLarge",
    "RiskyUserRejected",
    "ServiceUnavailable",
    "SnapshotUserRejected",
    "StateRejected",
    "UnknownApp",
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
    APP_MISMATCH = "app_mismatch"
    DUPLICATE_PARAMETER = "duplicate_parameter"
    EXCHANGE_LOST = "exchange_lost"
    HANDOFF_EXPIRED = "handoff_expired"
    HANDOFF_NOT_YOURS = "handoff_not_yours"
    HANDOFF_TAKEN = "handoff_taken"
    HANDOFF_USED = "handoff_used"
    INVALID_BODY = "invalid_body"
    INVALID_HOST = "invalid_host"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    INVALID_NEXT = "invalid_next"
    INVALID_QUERY = "invalid_query"
    INVALID_SCOPE = "invalid_scope"
    INVALID_STATE = "invalid_state"
    INVALID_URL = "invalid_url"
    LOGIN_DECLINED = "login_declined"
    LOGIN_LOOP = "login_loop"
    MALFORMED_CODE = "malformed_code"
    MALFORMED_STATE = "malformed_state"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    MISSING_CODE = "missing_code"
    MISSING_URL = "missing_url"
    OVERLOADED = "overloaded"
    PLATFORM_TICKET_PENDING = "platform_ticket_pending"
    PLATFORM_TICKET_REJECTED = "platform_ticket_rejected"
    PUSH_SIGNATURE_INVALID = "push_signature_invalid"
    PUSH_STALE = "push_stale"
    PUSH_UNREADABLE = "push_unreadable"
    PUSH_WRONG_APPID = "push_wrong_appid"
    QR_LINK_EXPIRED = "qr_link_expired"
    RATE_LIMITED = "rate_limited"
    RISKY_USER = "risky_user"
    SCOPE_NOT_SUPPORTED_HERE = "scope_not_supported_here"
    SHUTTING_DOWN = "shutting_down"
    SNAPSHOT_USER = "snapshot_user"
    STATE_MISMATCH = "state_mismatch"
    TOO_MANY_CODES = "too_many_codes"
    UNKNOWN_APP = "unknown_app"
    UPSTREAM_BAD_RESPONSE = "upstream_bad_response"
    UPSTREAM_BUSY = "upstream_busy"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    URL_NOT_ALLOWED = "url_not_allowed"
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
        from ._core.errcodes import errcode_hint  # the table of meanings lives with the rest

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


class HandoffExpired(InvalidCallbackRequest):
    """A desktop login handed over from a phone is gone: expired, never issued here, or already
    used (reasons ``handoff_expired``, ``handoff_used``). The desktop page offers a new QR code."""

    status_code = 410


class RequestTooLarge(InvalidCallbackRequest):
    """The request body is larger than the endpoint reads (refused before reading it all)."""

    status_code = 413


class StateRejected(WeChatOAuthError):
    """The callback's state is forged, expired, from another browser, or not the state of the
    request that traded this code (a replayed code). Answered before any exchange."""

    status_code = 403


class PushRejected(WeChatOAuthError):
    """A push to a third-party platform's event URL that is not WeChat's (its ``msg_signature``
    does not match, or its timestamp is outside the replay window) or not for this platform
    (another appid inside the signed, encrypted message). Nothing of it is stored."""

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


class UnknownApp(WeChatOAuthError):
    """The site has no app for this request: the middleware's app resolver named none, or one
    it was not given (reason ``unknown_app``)."""

    status_code = 404


class ServiceUnavailable(WeChatOAuthError):
    """The middleware cannot coordinate the exchange right now (overloaded, backend down)."""

    status_code = 503


_ERROR_TYPES: dict[str, type[WeChatOAuthError]] = {
    cls.__name__: cls
    for cls in (
        WeChatOAuthError,
        InvalidCallbackRequest,
        MethodNotAllowed,
        HandoffExpired,
        RequestTooLarge,
        StateRejected,
        PushRejected,
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
        UnknownApp,
        ServiceUnavailable,
    )
}
