"""Error pages for people, JSON for programs.

The people who meet an error answer are mostly WeChat users on a phone, reading Chinese. A
request that prefers ``text/html`` (every browser's navigation, WeChat's included) gets a small
self-contained page in Simplified Chinese or English, chosen by ``Accept-Language``, saying what
happened in the user's terms, with one button: log in again, or go back. Requests that prefer
JSON, ``HEAD`` and non-browser clients keep the JSON body. Product-agnostic: any product's
middleware renders its errors here by ``reason``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from string import Template
from types import MappingProxyType
from typing import ClassVar

from .handoff_texts import HANDOFF_TEXTS

# What a request prefers, importable from here as before.
from .negotiation import LANGUAGES as LANGUAGES
from .negotiation import Language as Language
from .negotiation import header_value as header_value
from .negotiation import in_app_browser as in_app_browser
from .negotiation import preferred_language as preferred_language
from .negotiation import quality_weights as quality_weights
from .negotiation import wants_html as wants_html

#: What a page says per ``reason`` and language: ``(title, body)``.
Texts = Mapping[str, Mapping[str, tuple[str, str]]]

_BROKEN_LINK = {
    "zh": ("登录链接无效", "这个登录链接不完整或已损坏，请重新登录。"),
    "en": ("This login link is broken", "The link is incomplete or damaged. Please log in again."),
}
_BAD_LOGIN_LINK = {
    "zh": ("无法开始登录", "这个登录入口的链接有误，请返回后重试。"),
    "en": ("This login link is wrong", "The login could not start. Please go back and try again."),
}
_NO_WECHAT = {
    "zh": ("暂时无法连接微信", "现在无法完成微信登录，请稍后重新登录。"),
    "en": (
        "Could not reach WeChat",
        "The WeChat login could not be completed. Please try again in a moment.",
    ),
}
_SITE_BUSY = {
    "zh": ("网站繁忙", "网站暂时繁忙，请稍后重新登录。"),
    "en": ("The site is busy", "The site is busy right now. Please try again in a moment."),
}

#: The built-in texts, one entry per ``reason``; apps override any of them with ``ErrorPages``.
DEFAULT_TEXTS: Texts = {
    "invalid_state": {
        "zh": (
            "登录已失效",
            "这次登录已过期，或者浏览器没有保存登录所需的 Cookie。"
            "请确认浏览器允许 Cookie（无痕模式可能会阻止），然后重新登录。",
        ),
        "en": (
            "This login has expired",
            "It took too long, or your browser did not keep the cookie the login needs. "
            "Please allow cookies (private mode may block them) and log in again.",
        ),
    },
    "state_mismatch": {
        "zh": ("登录链接已用过", "这个登录链接已经被使用，请重新登录。"),
        "en": ("This login link was already used", "Please log in again."),
    },
    "too_many_codes": {
        "zh": ("登录链接已用过", "这个登录链接已经被使用多次，请重新登录。"),
        "en": ("This login link was used too often", "Please log in again."),
    },
    "code_invalid": {
        "zh": ("授权无效", "这次登录的授权无效或已过期，请重新登录。"),
        "en": (
            "This login's authorization is not valid",
            "It has expired, or is not this site's. Please log in again.",
        ),
    },
    "code_used": {
        "zh": ("授权已被使用", "这次登录的授权已经用过了，不能再用一次，请重新登录。"),
        "en": (
            "This login's authorization was already used",
            "It can be used only once. Please log in again.",
        ),
    },
    "code_expired": {
        "zh": ("登录已超时", "登录等待的时间太长，已经失效，请重新登录。"),
        "en": (
            "Your login has timed out",
            "It waited too long and is no longer valid. Please log in again.",
        ),
    },
    "missing_code": {
        "zh": (
            "没有完成授权",
            "微信没有确认这次登录（可能是取消了授权）。如需继续，请重新登录并允许授权。",
        ),
        "en": (
            "The login was not confirmed",
            "WeChat did not confirm this login (it may have been declined). "
            "To continue, log in again and allow it.",
        ),
    },
    "login_declined": {
        "zh": ("没有完成授权", "这次登录被取消了。如需继续，请重新登录并确认授权。"),
        "en": (
            "The login was declined",
            "This login was cancelled. To continue, log in again and confirm it.",
        ),
    },
    "malformed_code": _BROKEN_LINK,
    "malformed_state": _BROKEN_LINK,
    "invalid_query": _BROKEN_LINK,
    "duplicate_parameter": _BROKEN_LINK,
    "method_not_allowed": _BROKEN_LINK,
    "invalid_next": _BAD_LOGIN_LINK,
    "invalid_scope": _BAD_LOGIN_LINK,
    "invalid_host": _BAD_LOGIN_LINK,
    "snapshot_user": {
        "zh": (
            "请使用完整服务",
            "当前页面处于微信的快照模式，只能浏览。请点击屏幕下方的“使用完整服务”，然后重新登录。",
        ),
        "en": (
            "Please open the full service",
            "WeChat opened this page in snapshot (preview) mode. "
            "Tap “Use full service” at the bottom of the screen, then log in again.",
        ),
    },
    "upstream_busy": {
        "zh": ("微信繁忙", "微信暂时繁忙，请稍等片刻后重新登录。"),
        "en": (
            "WeChat is busy",
            "WeChat is busy right now. Please wait a moment, then log in again.",
        ),
    },
    # WeChat's call quota (45009, 45011; a platform's component token): a minute, not "later".
    "rate_limited": {
        "zh": ("微信登录暂时受限", "微信暂时限制了这个网站的登录请求，请过一分钟再重新登录。"),
        "en": (
            "WeChat is limiting logins",
            "WeChat is limiting this site's logins for now. Please try again in a minute.",
        ),
    },
    "upstream_unavailable": _NO_WECHAT,
    "upstream_bad_response": _NO_WECHAT,
    "upstream_error": _NO_WECHAT,
    "upstream_timeout": _NO_WECHAT,
    "exchange_lost": _NO_WECHAT,
    # The answer carries Retry-After: 5 (RedisBackend), so the page says seconds, not "later".
    "overloaded": {
        "zh": ("网站繁忙", "网站暂时繁忙，请过几秒钟再重新登录。"),
        "en": (
            "The site is busy",
            "The site is busy right now. Please try again in a few seconds.",
        ),
    },
    "shutting_down": _SITE_BUSY,
    "backend_unavailable": _SITE_BUSY,
    "configuration_error": {
        "zh": ("微信登录暂不可用", "网站的微信登录设置有误，问题已记录。请稍后再试。"),
        "en": (
            "WeChat login is unavailable",
            "The site's WeChat login is misconfigured; the problem has been logged. "
            "Please try again later.",
        ),
    },
    "scope_not_supported_here": {
        "zh": (
            "这个浏览器不能用这种方式登录",
            "公众号登录只能在微信里完成，扫码登录只能在微信以外的浏览器里完成。"
            "请返回，用网站的登录按钮重新开始。",
        ),
        "en": (
            "This browser cannot log in this way",
            "Official-account login works only inside WeChat, and QR login only outside it. "
            "Please go back and use the site's login button.",
        ),
    },
    "wxlogin_unavailable": {
        "zh": ("无法显示登录二维码", "网站没有设置微信扫码登录，请在微信里打开网站登录。"),
        "en": (
            "The login QR code is unavailable",
            "This site has no WeChat QR login. Please open the site in WeChat to log in.",
        ),
    },
    "qr_link_expired": {
        "zh": (
            "二维码已过期",
            "这个登录二维码已经过期。请在电脑上刷新页面后重新扫码，或者直接在这里重新登录。",
        ),
        "en": (
            "This QR code has expired",
            "Reload the page on your computer and scan the new code, or log in here instead.",
        ),
    },
    "unknown_app": {
        "zh": (
            "这里没有微信登录",
            "这个网址没有设置微信登录。请确认网址无误，或从网站首页重新登录。",
        ),
        "en": (
            "No WeChat login here",
            "This address has no WeChat login. Check the address, or log in again from the "
            "site's home page.",
        ),
    },
    "app_mismatch": _BROKEN_LINK,
    # A third-party platform waits for WeChat's ticket push (every 10 minutes): minutes, not
    # seconds, and nothing the user did.
    "platform_ticket_pending": {
        "zh": (
            "微信登录还没准备好",
            "网站的微信登录正在开通，一般几分钟内就好。请过几分钟再重新登录。",
        ),
        "en": (
            "WeChat login is not ready yet",
            "The site's WeChat login is still being set up; this usually takes a few minutes. "
            "Please try again in a few minutes.",
        ),
    },
    "platform_ticket_rejected": {
        "zh": (
            "微信登录暂时不可用",
            "网站正在和微信重新确认登录设置，一般几分钟内恢复。请过几分钟再重新登录。",
        ),
        "en": (
            "WeChat login is briefly unavailable",
            "The site is renewing its WeChat login with WeChat; this usually takes a few "
            "minutes. Please try again in a few minutes.",
        ),
    },
    "login_loop": {
        "zh": (
            "无法保持登录",
            "你已经连续登录了几次，但网站没能记住你的登录状态。"
            "请确认浏览器允许 Cookie（无痕模式可能会阻止），过一分钟再试；"
            "如果一直这样，请联系网站。",
        ),
        "en": (
            "You are not being kept logged in",
            "You logged in several times, but the site could not keep you logged in. "
            "Please allow cookies (private mode may block them) and try again in a minute. "
            "If it keeps happening, please contact the site.",
        ),
    },
    **HANDOFF_TEXTS,
}
#: What a page says instead in WeChat's (or WeCom's) browser, where the default's advice does
#: not apply: it has no cookie settings and no private mode. A reason an app's ``texts`` give
#: says the app's text there too.
IN_APP_TEXTS: Texts = {
    "invalid_state": {
        "zh": (
            "登录已失效",
            "这次登录已过期，或者登录链接是从别处打开的（比如聊天里转发的链接）。请重新登录。",
        ),
        "en": (
            "This login has expired",
            "It took too long, or the login link was opened from somewhere else (a link "
            "forwarded in a chat, say). Please log in again.",
        ),
    },
}
_FALLBACK = {
    "zh": ("登录没有完成", "出了点问题，请稍后重新登录。"),
    "en": ("The login did not complete", "Something went wrong. Please try again later."),
}
_LABELS = {
    "login": {"zh": "重新登录", "en": "Log in again"},
    "back": {"zh": "返回", "en": "Back"},
}
#: Reasons a new login cannot fix (the same link or setup would fail again): the button goes back.
_NO_RELOGIN = frozenset(
    {
        "configuration_error",
        "invalid_host",
        "invalid_next",
        "invalid_scope",
        "login_loop",
        "method_not_allowed",
        "scope_not_supported_here",
        "wxlogin_unavailable",
    }
)

#: The pages' look, shared by every page the middleware shows.
STYLE = """\
html{-webkit-text-size-adjust:100%}
body{margin:0;background:#f7f7f7;color:#191919;font:17px/1.6 -apple-system,BlinkMacSystemFont,\
"PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC","WenQuanYi Zen Hei",\
"Helvetica Neue",Arial,sans-serif}
main{box-sizing:border-box;max-width:480px;margin:0 auto;padding:72px 24px 32px;\
text-align:center}
.icon{width:64px;height:64px;margin:0 auto 28px;border-radius:50%;background:#fa9d3b;\
color:#fff;font:700 40px/64px Arial,sans-serif}
h1{margin:0 0 12px;font-size:22px;font-weight:600}
p{margin:0 0 48px;color:#4c4c4c;font-size:16px;text-align:left}
a{display:block;padding:12px;border-radius:8px;background:#07c160;color:#fff;font-weight:600;\
text-decoration:none}
a:active{background:#06ad56}
small{display:block;margin-top:40px;color:#b2b2b2;font-size:12px}
"""


def page_source(style: str, main: str) -> str:
    """The skeleton every page shares (mobile viewport, inline CSS, no external asset), around
    ``main``; ``$lang`` and ``$title`` are left for the template to fill."""
    return (
        '<!doctype html>\n<html lang="$lang">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n<title>$title</title>\n'
        f"<style>\n{style}</style>\n</head>\n<body>\n<main>\n{main}</main>\n</body>\n</html>\n"
    )


DEFAULT_TEMPLATE = page_source(
    STYLE,
    """\
<div class="icon" aria-hidden="true">!</div>
<h1>$title</h1>
<p>$body</p>
<a id="action" href="$action_href">$action_label</a>
<small>$status $reason</small>
""",
)
#: The names a template may use; every value is HTML-escaped before it is put in.
TEMPLATE_FIELDS = frozenset(
    {"lang", "title", "body", "action_href", "action_label", "reason", "status"}
)
_HTML_LANG = {"zh": "zh-CN", "en": "en"}


@dataclass(frozen=True)
class ErrorPages:
    """What the error pages say and look like.

    ``texts`` overrides the built-in ``(title, body)`` per ``reason`` and language (``"zh"``,
    ``"en"``); anything not given keeps the default. ``template`` replaces the whole page: a
    :class:`string.Template` source using any of ``$lang``, ``$title``, ``$body``,
    ``$action_href``, ``$action_label``, ``$reason`` and ``$status``, each HTML-escaped.
    Checked when built, so that a typo fails at startup rather than on a user's phone.
    """

    #: The built-in texts and page, to start a custom one from.
    default_texts: ClassVar[Texts] = DEFAULT_TEXTS
    default_template: ClassVar[str] = DEFAULT_TEMPLATE

    texts: Texts = field(default_factory=dict)
    template: str | None = None
    _texts: Texts = field(init=False, repr=False, compare=False)
    _in_app: Texts = field(init=False, repr=False, compare=False)
    _template: Template = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        merged = {reason: dict(by_language) for reason, by_language in DEFAULT_TEXTS.items()}
        for reason, by_language in self.texts.items():
            if not isinstance(reason, str) or not isinstance(by_language, Mapping):
                raise ValueError("error_pages texts map a reason to {language: (title, body)}")
            for language, text in by_language.items():
                if language not in LANGUAGES:
                    raise ValueError(f"error_pages languages are {LANGUAGES}, not {language!r}")
                if not (
                    isinstance(text, tuple)
                    and len(text) == 2
                    and all(isinstance(part, str) for part in text)
                ):
                    raise ValueError(
                        f"error_pages texts[{reason!r}][{language!r}] must be (title, body)"
                    )
                merged.setdefault(reason, dict(_FALLBACK))[language] = text
        _check_template(self.template)
        in_app = {
            reason: {
                language: text
                for language, text in by_language.items()
                if language not in self.texts.get(reason, {})
            }
            for reason, by_language in IN_APP_TEXTS.items()
        }
        object.__setattr__(self, "_texts", MappingProxyType(merged))
        object.__setattr__(self, "_in_app", MappingProxyType(in_app))
        object.__setattr__(self, "_template", Template(self.template or DEFAULT_TEMPLATE))

    def render(
        self,
        reason: str,
        status: int,
        language: Language,
        *,
        login_href: str | None,
        back_href: str,
        in_app: bool = False,
    ) -> bytes:
        """The page for ``reason``. Its button logs in again at ``login_href`` (``None``: no
        login endpoint) when that can help, else goes back to ``back_href``. ``in_app``: for
        WeChat's (or WeCom's) browser (see :func:`in_app_browser`)."""
        title, body = self._texts.get(reason, _FALLBACK).get(language, _FALLBACK[language])
        if in_app:
            title, body = self._in_app.get(reason, {}).get(language, (title, body))
        action = "login" if login_href is not None and reason not in _NO_RELOGIN else "back"
        values = {
            "lang": _HTML_LANG[language],
            "title": title,
            "body": body,
            "action_href": login_href if action == "login" and login_href else back_href,
            "action_label": _LABELS[action][language],
            "reason": reason,
            "status": str(status),
        }
        escaped = {name: html.escape(value, quote=True) for name, value in values.items()}
        return self._template.substitute(escaped).encode()


def _check_template(template: str | None) -> None:
    if template is None:
        return
    if not isinstance(template, str):
        raise ValueError("error_pages template must be a string.Template source")
    for match in Template.pattern.finditer(template):
        name = match.group("named") or match.group("braced")
        if match.group("invalid") is not None or (name and name not in TEMPLATE_FIELDS):
            raise ValueError(
                f"error_pages template may use ${', $'.join(sorted(TEMPLATE_FIELDS))} "
                "(write $$ for a dollar sign)"
            )


#: The built-in pages: Simplified Chinese or English, the default texts and look.
DEFAULT_ERROR_PAGES = ErrorPages()
