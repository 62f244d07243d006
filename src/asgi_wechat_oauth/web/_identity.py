"""The identity the middleware hands to the app: frozen, typed, and safe to print."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..backends._codec import register_result


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user's profile from ``sns/userinfo``.

    Since 2021-10-20 WeChat returns ``sex`` as 0 and ``province``, ``city`` and ``country`` empty;
    the fields stay for compatibility. Nicknames may hold any Unicode, emoji included.
    """

    openid: str
    nickname: str = ""
    sex: int = 0
    province: str = ""
    city: str = ""
    country: str = ""
    headimgurl: str = ""
    privilege: tuple[str, ...] = ()
    unionid: str | None = None

    @classmethod
    def from_wechat(cls, data: dict[str, Any]) -> UserInfo:
        """Build from WeChat's JSON, tolerating missing or oddly typed optional fields."""
        privilege = data.get("privilege") or ()
        return cls(
            openid=str(data["openid"]),
            nickname=str(data.get("nickname") or ""),
            sex=_as_int(data.get("sex")),
            province=str(data.get("province") or ""),
            city=str(data.get("city") or ""),
            country=str(data.get("country") or ""),
            headimgurl=str(data.get("headimgurl") or ""),
            privilege=tuple(str(p) for p in privilege) if isinstance(privilege, list) else (),
            unionid=str(data["unionid"]) if data.get("unionid") else None,
        )


@dataclass(frozen=True)
class AccessToken:
    """The answer of ``sns/oauth2/access_token`` (and ``sns/oauth2/refresh_token``).

    ``repr`` leaves the tokens out so that logging the object leaks nothing.
    """

    openid: str
    scope: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int = 7200
    unionid: str | None = None
    is_snapshotuser: bool = False

    @property
    def scopes(self) -> frozenset[str]:
        """The granted scopes (WeChat separates several with commas)."""
        return frozenset(s for s in self.scope.split(",") if s)

    @classmethod
    def from_wechat(cls, data: dict[str, Any]) -> AccessToken:
        expires_in = _as_int(data.get("expires_in"), 7200)
        return cls(
            openid=str(data["openid"]),
            # The scope and the usual lifetime are shared objects, not one copy per identity
            # waiting in the result cache.
            scope=_shared(str(data.get("scope") or "")),
            access_token=str(data["access_token"]),
            refresh_token=str(data.get("refresh_token") or ""),
            expires_in=7200 if expires_in == 7200 else expires_in,
            unionid=str(data["unionid"]) if data.get("unionid") else None,
            is_snapshotuser=_as_int(data.get("is_snapshotuser")) == 1,
        )


@dataclass(frozen=True, slots=True)
class WeChatIdentity:
    """Who completed the login, as put in ``scope["wechat"]``.

    ``unionid`` comes from the token answer or, failing that, from the user info. When
    ``is_snapshotuser`` is true the openid and profile are virtual (WeChat's snapshot-page mode):
    do not treat such an identity as a real user. ``state`` is the callback's ``state`` (every
    request served this identity carries the same one). ``next`` is the path the login endpoint
    was asked to return to, taken from the verified state, or None. ``appid`` is the app that
    issued the code and traded it: the official account's ``appid``, or ``website_appid`` for a
    website QR login (the same person has one openid per app; ``unionid`` links them). ``repr``
    leaves the tokens out. Slotted: up to ``max_entries`` of them wait in the result cache for
    late duplicates.
    """

    #: The name of this result type in stored outcomes.
    kind: ClassVar[str] = "wechat"

    openid: str
    scope: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int = 7200
    unionid: str | None = None
    is_snapshotuser: bool = False
    userinfo: UserInfo | None = None
    state: str | None = None
    next: str | None = None
    appid: str | None = None

    @classmethod
    def from_token(
        cls,
        token: AccessToken,
        userinfo: UserInfo | None = None,
        *,
        state: str | None = None,
        next: str | None = None,
        appid: str | None = None,
    ) -> WeChatIdentity:
        unionid = token.unionid or (userinfo.unionid if userinfo else None)
        return cls(
            openid=token.openid,
            scope=token.scope,
            access_token=token.access_token,
            refresh_token=token.refresh_token,
            expires_in=token.expires_in,
            unionid=unionid,
            is_snapshotuser=token.is_snapshotuser,
            userinfo=userinfo,
            state=state,
            next=next,
            appid=appid,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tokens included: store it only where tokens may live)."""
        # Spelled out rather than dataclasses.asdict, which deep-copies field by field: this
        # runs for every result a Redis leader stores.
        info = self.userinfo
        return {
            "openid": self.openid,
            "scope": self.scope,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_in": self.expires_in,
            "unionid": self.unionid,
            "is_snapshotuser": self.is_snapshotuser,
            "userinfo": None
            if info is None
            else {
                "openid": info.openid,
                "nickname": info.nickname,
                "sex": info.sex,
                "province": info.province,
                "city": info.city,
                "country": info.country,
                "headimgurl": info.headimgurl,
                "privilege": list(info.privilege),
                "unionid": info.unionid,
            },
            "state": self.state,
            "next": self.next,
            "appid": self.appid,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeChatIdentity:
        """The inverse of :meth:`to_dict`."""
        info = data.get("userinfo")
        userinfo = None
        if info is not None:
            userinfo = UserInfo(**{**info, "privilege": tuple(info.get("privilege") or ())})
        return cls(**{**data, "userinfo": userinfo})


register_result(WeChatIdentity.kind, WeChatIdentity.from_dict)


#: The scopes WeChat grants, one object each (never a string from upstream, which could be
#: anything).
_SCOPES = {s: s for s in ("snsapi_base", "snsapi_userinfo", "snsapi_login", "snsapi_privateinfo")}


def _shared(scope: str) -> str:
    return _SCOPES.get(scope, scope)


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
