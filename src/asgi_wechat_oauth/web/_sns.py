"""What a login traded at WeChat's ``sns`` endpoints does after the exchange, whoever traded
the code (the official account or website app, or a third-party platform on an official
account's behalf): the profile, fetched without losing the login, and the snapshot policy."""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

import anyio

from .._core.state import require_same_state
from ..errors import ErrorReason, SnapshotUserRejected, WeChatOAuthError
from ._client import WeChatOAuthClient
from ._identity import AccessToken, UserInfo, WeChatIdentity

logger = logging.getLogger("asgi_wechat_oauth")

#: Scopes whose grant lets the app read ``sns/userinfo``.
USERINFO_SCOPES = frozenset({"snsapi_userinfo", "snsapi_login"})


class SnsLogin:
    """Mixed into a middleware whose identities are :class:`WeChatIdentity`."""

    fetch_profile: bool | None
    snapshot_users: Literal["allow", "reject"]
    log_prefix: ClassVar[str]

    def _admit(self, identity: WeChatIdentity, state: str | None) -> None:
        require_same_state(identity.state, state)
        if identity.is_snapshotuser and self.snapshot_users == "reject":
            raise SnapshotUserRejected(
                ErrorReason.SNAPSHOT_USER,
                "This page is open in WeChat's snapshot mode. Tap the button at the bottom to "
                "use the full service, then log in again.",
            )

    async def _fetch_userinfo(
        self, client: WeChatOAuthClient, token: AccessToken, deadline: float
    ) -> UserInfo | None:
        """The profile, or None: the code is spent by now, so failing the login would lose it
        for good. The app gets the tokens and can fetch the profile later."""
        reason, errcode = "upstream_timeout", None
        with anyio.move_on_after(deadline - anyio.current_time()):
            try:
                info = await client.get_userinfo(token.access_token, token.openid)
            except WeChatOAuthError as exc:  # any errcode, 40029 included: not the code's fate
                reason, errcode = exc.reason, exc.errcode
            except Exception as exc:  # whatever it is, it must not lose the login now
                reason = f"unexpected_{type(exc).__name__}"
            else:
                if info.openid == token.openid:
                    return info
                reason = "openid_mismatch"  # another user's profile: never attach it
        logger.warning(
            "%s.userinfo_unavailable reason=%s errcode=%s", self.log_prefix, reason, errcode
        )
        return None

    def _wants_userinfo(self, token: AccessToken) -> bool:
        if self.fetch_profile is not None:
            return self.fetch_profile
        return bool(token.scopes & USERINFO_SCOPES)
