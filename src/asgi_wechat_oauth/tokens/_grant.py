"""An access token as stored in a backend: the token and when it stops being served."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._core.contract import register_result

#: WeChat documents tokens of up to 512 characters; anything much longer is not a token.
_MAX_TOKEN_LENGTH = 2048
#: WeChat's tokens live 7,200 s; an expiry past a year is not WeChat's (and past ~1e308 s no
#: float can hold it).
_MAX_EXPIRES_IN = 366 * 86_400


@dataclass(frozen=True)
class TokenGrant:
    """``access_token`` (never in ``repr``) and ``refresh_at``, the Unix time, by the clock of
    the machine that fetched it, after which a fresh one is due: the token's expiry less the
    keeper's margin. Only that machine may compare it with its clock (the keeper turns it into
    a duration at once); other workers judge freshness by how long the backend still keeps
    the grant, since their wall clocks may differ."""

    kind: ClassVar[str] = "access_token"

    access_token: str = field(repr=False)
    refresh_at: float

    def __post_init__(self) -> None:
        token = self.access_token
        if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN_LENGTH:
            raise ValueError("access_token must be a non-empty string")
        if not token.isascii() or not token.isprintable():
            raise ValueError("access_token must be printable ASCII")
        if not isinstance(self.refresh_at, (int, float)):
            raise ValueError("refresh_at must be a number")

    @classmethod
    def from_answer(cls, data: dict[str, Any], *, margin: float) -> TokenGrant:
        """From ``{"access_token", "expires_in"}``; refreshed ``margin`` seconds early, or at
        half its life when that is shorter."""
        expires_in = data.get("expires_in")
        if not isinstance(expires_in, int) or isinstance(expires_in, bool):
            raise ValueError("expires_in must be an integer")
        if not 0 < expires_in <= _MAX_EXPIRES_IN:
            raise ValueError("expires_in must be positive and at most a year")
        early = min(margin, expires_in / 2)
        return cls(data.get("access_token"), time.time() + expires_in - early)  # type: ignore[arg-type]

    @property
    def ttl(self) -> float:
        """Seconds left before a refresh is due (negative once due), by this machine's clock:
        meaningful only where the grant was made."""
        return self.refresh_at - time.time()

    def to_dict(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "refresh_at": self.refresh_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenGrant:
        return cls(access_token=data["access_token"], refresh_at=data["refresh_at"])


register_result(TokenGrant.kind, TokenGrant.from_dict)
