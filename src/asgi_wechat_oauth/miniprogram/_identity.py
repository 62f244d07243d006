"""The session a mini-program login yields: frozen, validated, and safe to print."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .._core.contract import register_result

#: openid, unionid and session_key are short printable ASCII (base64 for the key): anything
#: else is not from WeChat, and must not become an identity an app trusts.
_FIELD = re.compile(r"[\x21-\x7e]{1,256}")


@dataclass(frozen=True)
class MiniProgramIdentity:
    """Who logged in through ``wx.login()``, as put in ``scope["wechat"]``.

    ``session_key`` decrypts the user's encrypted data (``wx.getPhoneNumber``, ...) and must never
    leave the server: ``repr`` leaves it out, and the middleware never sends it. ``unionid`` is
    set when the mini-program is bound to an open platform account; ``appid`` is the
    mini-program's. Construction checks every field (``ValueError`` otherwise).
    """

    #: The name of this result type in stored outcomes.
    kind: ClassVar[str] = "miniprogram"

    openid: str
    session_key: str = field(repr=False)
    unionid: str | None = None
    appid: str | None = None

    def __post_init__(self) -> None:
        for name in ("openid", "session_key", "unionid", "appid"):
            value = getattr(self, name)
            optional = name in ("unionid", "appid")
            if (value is None and optional) or (isinstance(value, str) and _FIELD.fullmatch(value)):
                continue
            raise ValueError(f"{name} is missing or malformed")

    @classmethod
    def from_wechat(cls, data: dict[str, Any], *, appid: str | None = None) -> MiniProgramIdentity:
        """Build from ``jscode2session``'s JSON; ``ValueError`` when a field is missing, null,
        empty or oddly typed (an empty ``unionid`` counts as absent)."""
        return cls(  # every field is checked on construction
            openid=data.get("openid", ""),
            session_key=data.get("session_key", ""),
            unionid=data.get("unionid") or None,
            appid=appid,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``session_key`` included: store it only where secrets may live)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MiniProgramIdentity:
        """The inverse of :meth:`to_dict`."""
        return cls(**data)


register_result(MiniProgramIdentity.kind, MiniProgramIdentity.from_dict)
