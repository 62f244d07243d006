"""The identity the middleware hands to the app: frozen, typed, and safe to print."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._core.contract import register_result


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
        """Build from WeChat's JSON. ``openid`` (and ``unionid`` when present) must be proper
        identifiers (``ValueError`` otherwise); profile fields that are missing or oddly typed
        fall back to their defaults."""
        privilege = data.get("privilege")
        return cls(
            openid=_identifier(data, "openid"),
            nickname=_text(data, "nickname"),
            sex=_small_int(data.get("sex")),
            province=_text(data, "province"),
            city=_text(data, "city"),
            country=_text(data, "country"),
            headimgurl=_text(data, "headimgurl"),
            privilege=(
                tuple(p for p in privilege if isinstance(p, str))
                if isinstance(privilege, list)
                else ()
            ),
            unionid=_optional_identifier(data, "unionid"),
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
        """Build from WeChat's JSON, strictly: an identity is made of these fields, so a
        missing, null, empty or mistyped identifier or token, or a number out of range, raises
        ``ValueError`` rather than becoming ``"None"``, a shared account or an overflow."""
        scope = data.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise ValueError("scope is not a string")
        return cls(
            openid=_identifier(data, "openid"),
            # The scope is a shared object, not one copy per identity in the result cache.
            scope=_shared(scope or ""),
            access_token=_identifier(data, "access_token"),
            refresh_token=_identifier(data, "refresh_token"),
            expires_in=_expires_in(data.get("expires_in")),  # 7200: a cached small int
            unionid=_optional_identifier(data, "unionid"),
            is_snapshotuser=_flag(data.get("is_snapshotuser")),
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


#: WeChat's identifiers and tokens are short printable ASCII; anything else is not from WeChat.
_MAX_IDENTIFIER = 512
#: Access tokens live 2 hours; a lifetime beyond a year (or below 0) is not a WeChat answer.
_MAX_EXPIRES_IN = 366 * 24 * 3600


def _identifier(data: dict[str, Any], name: str) -> str:
    """A required identifier or token: a non-empty string of printable ASCII, no spaces."""
    value = data.get(name)
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= _MAX_IDENTIFIER
        or not all("!" <= char <= "~" for char in value)
    ):
        raise ValueError(f"{name} is missing or not an identifier")
    return value


def _optional_identifier(data: dict[str, Any], name: str) -> str | None:
    """``None`` when absent, null or empty; otherwise it must be a proper identifier."""
    if data.get(name) in (None, ""):
        return None
    return _identifier(data, name)


def _text(data: dict[str, Any], name: str) -> str:
    """Optional profile text: anything but a string becomes ``""``."""
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _is_int(value: Any) -> bool:
    # bool is an int in Python, but ``true`` is not a number in WeChat's answers.
    return isinstance(value, int) and not isinstance(value, bool)


def _small_int(value: Any) -> int:
    """An optional small number (``sex``): anything odd becomes 0."""
    return value if _is_int(value) and 0 <= value <= 2 else 0


def _expires_in(value: Any) -> int:
    if value is None:
        return 7200
    if isinstance(value, float) and value.is_integer():  # 7200.0; never inf or nan
        value = int(value)
    if not _is_int(value) or not 0 <= value <= _MAX_EXPIRES_IN:
        raise ValueError("expires_in is not a number of seconds")
    return int(value)


def _flag(value: Any) -> bool:
    """``is_snapshotuser``: absent, null or 0 is False, 1 is True; anything else is refused,
    so that an odd answer can never pass a virtual user as a real one."""
    if value is None or (_is_int(value) and value == 0):
        return False
    if _is_int(value) and value == 1:
        return True
    raise ValueError("is_snapshotuser is neither 0 nor 1")


#: The scopes WeChat grants, one object each (never a string from upstream, which could be
#: anything).
_SCOPES = {s: s for s in ("snsapi_base", "snsapi_userinfo", "snsapi_login", "snsapi_privateinfo")}


def _shared(scope: str) -> str:
    return _SCOPES.get(scope, scope)
