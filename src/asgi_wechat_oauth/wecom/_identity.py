"""The WeCom identity handed to the app: frozen, typed, validated, and safe to print."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .._core.contract import register_result

_MAX_ID = 128
_MAX_TEXT = 1024


def _optional(data: dict[str, Any], name: str, limit: int = _MAX_ID) -> str | None:
    """A field WeCom may leave out; present, it must be a sane string (``str(None)`` and
    numbers are refused, not turned into ``"None"``)."""
    value = data.get(name)
    if value is None or value == "":
        return None
    _check(name, value, limit)
    return str(value)


def _check(name: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise ValueError(f"{name} must be a printable string of at most {limit} characters")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate from JSON
        raise ValueError(f"{name} is not valid Unicode") from None


@dataclass(frozen=True)
class WeComUserDetail:
    """What ``auth/getuserdetail`` returns for a ``user_ticket`` (scope ``snsapi_privateinfo``,
    fields the member consented to). Contact details stay out of ``repr``."""

    userid: str
    gender: str = ""  #: "0" unknown, "1" male, "2" female
    avatar: str = ""
    qr_code: str = ""
    mobile: str = field(default="", repr=False)
    email: str = field(default="", repr=False)
    biz_mail: str = field(default="", repr=False)
    address: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        _check("userid", self.userid, _MAX_ID)
        if not self.userid:
            raise ValueError("userid must not be empty")
        for name in ("gender", "avatar", "qr_code", "mobile", "email", "biz_mail", "address"):
            _check(name, getattr(self, name), _MAX_TEXT)

    @classmethod
    def from_wecom(cls, data: dict[str, Any]) -> WeComUserDetail:
        names = ("gender", "avatar", "qr_code", "mobile", "email", "biz_mail", "address")
        return cls(
            userid=data.get("userid"),  # type: ignore[arg-type]  # checked in __post_init__
            **{name: _optional(data, name, _MAX_TEXT) or "" for name in names},
        )


@dataclass(frozen=True)
class WeComIdentity:
    """Who logged in through WeCom, as put in ``scope["wecom"]``.

    Members of the corp have a ``userid``; others (WeCom users outside it) an ``openid`` and,
    where WeCom gives one, an ``external_userid``. ``user_ticket`` (scope ``snsapi_privateinfo``
    only) fetches the member's details and never appears in ``repr``. ``detail`` holds them when
    the middleware fetched them (``fetch_profile=True``). ``state`` and ``next`` are as in
    :class:`~asgi_wechat_oauth.WeChatIdentity`.
    """

    kind: ClassVar[str] = "wecom"

    corpid: str
    agentid: str
    userid: str | None = None
    openid: str | None = None
    external_userid: str | None = None
    user_ticket: str | None = field(default=None, repr=False)
    detail: WeComUserDetail | None = None
    state: str | None = None
    next: str | None = None

    def __post_init__(self) -> None:
        for name in ("corpid", "agentid"):
            value = getattr(self, name)
            _check(name, value, _MAX_ID)
            if not value:
                raise ValueError(f"{name} must not be empty")
        for name in ("userid", "openid", "external_userid", "user_ticket"):
            value = getattr(self, name)
            if value is not None:
                _check(name, value, _MAX_TEXT if name == "user_ticket" else _MAX_ID)
        if (self.userid is None) == (self.openid is None):
            raise ValueError("exactly one of userid (a member) and openid (a non-member)")

    @property
    def is_member(self) -> bool:
        """Whether the user belongs to the corp (has a ``userid``)."""
        return self.userid is not None

    @classmethod
    def from_wecom(cls, data: dict[str, Any], *, corpid: str, agentid: str) -> WeComIdentity:
        """From ``auth/getuserinfo``'s answer; raises ``ValueError`` for an unusable one."""
        return cls(
            corpid=corpid,
            agentid=agentid,
            userid=_optional(data, "userid"),
            openid=_optional(data, "openid"),
            external_userid=_optional(data, "external_userid"),
            user_ticket=_optional(data, "user_ticket", _MAX_TEXT),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ticket included: store it only where secrets may live)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeComIdentity:
        detail = data.get("detail")
        return cls(**{**data, "detail": WeComUserDetail(**detail) if detail else None})


register_result(WeComIdentity.kind, WeComIdentity.from_dict)
