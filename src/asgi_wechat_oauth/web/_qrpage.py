"""The page a desktop browser gets when only the official account can log in: the login link
as a QR code, to scan with WeChat, instead of WeChat's "请在微信客户端打开链接" dead end.

The QR code is drawn by ``segno`` (the ``qr`` extra) as inline SVG: the page makes no request
of its own. Without ``segno``, or for a link too long for any QR code, the page shows the link as
text to open in WeChat. A client that asks for JSON gets the link as JSON.
"""

from __future__ import annotations

import html
import json
from string import Template

from .._core.asgi import Scope, Send
from .._core.pages import (
    _HTML_LANG,
    STYLE,
    Language,
    _header,
    _weights,
    page_source,
    preferred_language,
    wants_html,
)

_TEXTS: dict[Language, dict[str, str]] = {
    "zh": {
        "title": "请用微信扫码登录",
        "body": "本网站通过微信公众号登录，只能在微信里完成。请用手机微信扫描下面的二维码，"
        "在微信里继续。",
        "body_no_qr": "本网站通过微信公众号登录，只能在微信里完成。请复制下面的链接，"
        "在微信里打开。",
        "link": "或在微信中打开这个链接：",
        "no_qr": "网站管理员：安装 asgi-wechat-oauth[qr] 即可在此显示二维码。",
    },
    "en": {
        "title": "Scan with WeChat to log in",
        "body": "This site logs in with a WeChat official account, which works only inside "
        "WeChat. Scan the QR code below with WeChat on your phone to continue there.",
        "body_no_qr": "This site logs in with a WeChat official account, which works only "
        "inside WeChat. Copy the link below and open it in WeChat.",
        "link": "Or open this link in WeChat:",
        "no_qr": "Site admin: install asgi-wechat-oauth[qr] to show a QR code here.",
    },
}

_PAGE = Template(
    page_source(
        STYLE
        + """\
p{margin-bottom:24px}
.qr{display:inline-block;margin:0 auto 24px;padding:12px;background:#fff;border-radius:8px}
.qr svg{display:block;width:220px;height:220px}
code{display:block;padding:12px;border-radius:8px;background:#fff;color:#191919;\
font-size:14px;word-break:break-all;text-align:left}
""",
        """\
<h1>$title</h1>
<p>$body</p>
$qr
<p class="link">$link_label</p>
<code id="login-link">$link</code>
<small>$note</small>
""",
    )
)


def qr_svg(text: str) -> str | None:
    """``text`` as an inline SVG QR code; None without ``segno`` or when no QR code holds it
    (the page then shows the link as text: a page that cannot draw its QR code must not 500)."""
    try:
        import segno
    except ImportError:
        return None
    try:
        code = segno.make(text, error="m", micro=False)
    except segno.DataOverflowError:
        return None
    svg: str = code.svg_inline(scale=4, border=2, title="QR", omitsize=True)
    return svg


def render_qr_page(link: str, language: Language) -> bytes:
    """The page with ``link`` as a QR code (and as text), in ``language``."""
    texts = _TEXTS[language]
    svg = qr_svg(link)
    values = {
        "lang": _HTML_LANG[language],
        "title": texts["title"],
        "body": texts["body"] if svg else texts["body_no_qr"],
        "link_label": texts["link"],
        "link": link,
        "note": texts["no_qr"] if svg is None and _segno_missing() else "",
    }
    escaped = {name: html.escape(value, quote=True) for name, value in values.items()}
    qr = f'<div class="qr" id="qr">{svg}</div>' if svg else ""
    return _PAGE.substitute(escaped, qr=qr).encode()


def _segno_missing() -> bool:
    """Whether the ``qr`` extra is missing (not a link too long: no install would help)."""
    try:
        import segno  # noqa: F401
    except ImportError:
        return True
    return False


def wants_json(scope: Scope) -> bool:
    """Whether ``Accept`` names JSON itself (not just ``*/*``)."""
    weights = _weights(_header(scope, b"accept"))
    return max(weights.get("application/json", 0.0), weights.get("application/*", 0.0)) > 0


async def send_open_in_wechat(scope: Scope, send: Send, link: str) -> None:
    """200: the QR page for a browser, else ``{"open_in_wechat": true, "login_url": link}``."""
    if wants_html(scope):
        body = render_qr_page(link, preferred_language(scope))
        vary = (b"vary", b"accept, accept-language, user-agent")
        await _send(scope, send, body, b"text/html; charset=utf-8", vary)
        return
    data = {"open_in_wechat": True, "login_url": link}
    await send_json(scope, send, data, (b"vary", b"accept, user-agent"))


async def send_json(
    scope: Scope, send: Send, data: dict[str, object], *headers: tuple[bytes, bytes]
) -> None:
    """200 with ``data`` as JSON, never cached."""
    await _send(scope, send, json.dumps(data).encode(), b"application/json", *headers)


async def _send(
    scope: Scope, send: Send, body: bytes, content_type: bytes, *headers: tuple[bytes, bytes]
) -> None:
    start = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": start})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
