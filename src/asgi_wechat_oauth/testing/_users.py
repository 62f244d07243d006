"""Who the WeChat emulator logs in, and what it grants them: codes and access tokens."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from ._faults import error


@dataclass
class EmulatedUser:
    """The user the emulator logs in. ``snapshot=True`` answers ``is_snapshotuser: 1``."""

    openid: str = "oEmulatedOpenId0000000000001"
    nickname: str = "微信用户 🐼"
    headimgurl: str = "https://thirdwx.qlogo.cn/mmopen/emulated/132"
    unionid: str | None = None
    snapshot: bool = False
    #: The same person's openid in the website app (one openid per app; ``unionid`` links them).
    website_openid: str = "oEmulatedWebOpenId00000000001"

    def openid_in(self, appid: str, *, main_appid: str, website_appid: str) -> str:
        """This person's openid in ``appid``: one per app, as at WeChat."""
        if appid == main_appid:
            return self.openid
        if appid == website_appid:
            return self.website_openid
        digest = hashlib.sha256(f"{appid}:{self.openid}".encode()).hexdigest()
        return "o" + digest[:27]


@dataclass
class Code:
    """A code issued to ``user`` for ``appid``: valid once, until ``expires_at``."""

    user: EmulatedUser
    scope: str
    appid: str
    expires_at: float
    uses: int = 0
    #: The third-party platform that asked for the code on the authorizer's behalf (its codes
    #: are traded with the platform's token, never with an app's secret).
    component_appid: str | None = None

    def spend(self) -> dict[str, Any] | None:
        """Use the code once: WeChat's answer to a reused (40163, then 40029, as WeChat answers
        both) or expired (42003) one, else None."""
        self.uses += 1
        if self.uses > 1:
            return (
                error(40163, "code been used") if self.uses == 2 else error(40029, "invalid code")
            )
        if time.monotonic() > self.expires_at:
            return error(42003, "code expired")
        return None


@dataclass
class Token:
    """An access token (and its refresh token), as ``sns/oauth2/access_token`` grants it."""

    user: EmulatedUser
    scope: str
    expires_at: float
    appid: str
    openid: str
