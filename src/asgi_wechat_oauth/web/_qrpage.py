"""The page a browser outside WeChat gets when only the official account can log in, instead
of WeChat's "请在微信客户端打开链接" dead end.

On a computer: the login link as a QR code, to scan with WeChat on a phone (and as text). On a
phone's own browser, which cannot scan its own screen: the link to copy and open in WeChat, with
a button that copies it. Both say how to get back to the site. The QR code is drawn by
``segno`` as inline SVG, and the copy button is a few lines of inline script: the page makes no
request of its own. A link too long for any QR code is shown as text. A client that asks for
JSON gets the link as JSON.
"""

from __future__ import annotations

import html
import json
from string import Template

import segno

from .._core.asgi import Scope, Send, send_body
from .._core.pages import (
    _HTML_LANG,
    STYLE,
    Language,
    header_value,
    page_source,
    preferred_language,
    quality_weights,
    wants_html,
)

_TEXTS: dict[Language, dict[str, str]] = {
    "zh": {
        "title": "请用微信扫码登录",
        "body": "本网站通过微信公众号登录，只能在微信里完成。请用手机微信扫描下面的二维码，"
        "在微信里继续。",
        "body_no_qr": "本网站通过微信公众号登录，只能在微信里完成。请复制下面的链接，"
        "在微信里打开。",
        "link": "也可以复制这个链接，在微信里打开：",
        "phone_title": "请在微信里打开",
        "phone_body": "本网站通过微信公众号登录，只能在微信里完成。请复制下面的链接，"
        "发到微信的任意聊天（比如“文件传输助手”），再在微信里点开它。",
        "phone_link": "登录链接：",
        "copy": "复制链接",
        "copied": "已复制",
        "back": "返回网站",
    },
    "en": {
        "title": "Scan with WeChat to log in",
        "body": "This site logs in with a WeChat official account, which works only inside "
        "WeChat. Scan the QR code below with WeChat on your phone to continue there.",
        "body_no_qr": "This site logs in with a WeChat official account, which works only "
        "inside WeChat. Copy the link below and open it in WeChat.",
        "link": "Or copy this link and open it in WeChat:",
        "phone_title": "Open this page in WeChat",
        "phone_body": "This site logs in with a WeChat official account, which works only "
        "inside WeChat. Copy the link below, send it to any WeChat chat (File Transfer, for "
        "example), then tap it in WeChat.",
        "phone_link": "The login link:",
        "copy": "Copy link",
        "copied": "Copied",
        "back": "Back to the site",
    },
}

#: Copies the link: the Clipboard API where the page is a secure context, else the link is
#: selected and copied the old way (plain http on a phone); selected either way, for a long press.
_COPY_SCRIPT = """\
(function () {
  var button = document.getElementById("copy"), link = document.getElementById("login-link");
  function select() {
    var range = document.createRange();
    range.selectNodeContents(link);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  function copied() { button.textContent = button.getAttribute("data-copied"); }
  function fallback() { select(); try { if (document.execCommand("copy")) copied(); } catch (e) {} }
  button.onclick = function () {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(link.textContent).then(copied, fallback);
    } else {
      fallback();
    }
  };
})();
"""

_PAGE = Template(
    page_source(
        STYLE
        + """\
p{margin-bottom:24px}
.qr{display:inline-block;margin:0 auto 24px;padding:12px;background:#fff;border-radius:8px}
.qr svg{display:block;width:220px;height:220px}
code{display:block;margin-bottom:16px;padding:12px;border-radius:8px;background:#fff;\
color:#191919;font-size:14px;word-break:break-all;text-align:left;-webkit-user-select:all;\
user-select:all}
button{display:block;box-sizing:border-box;width:100%;padding:12px;border:0;border-radius:8px;\
background:#07c160;color:#fff;font:inherit;font-weight:600;cursor:pointer}
button:active{background:#06ad56}
a.back{margin-top:16px;background:none;color:#576b95;font-weight:400}
""",
        """\
<h1>$title</h1>
<p>$body</p>
$qr
<p class="link">$link_label</p>
<code id="login-link">$link</code>
<button id="copy" type="button" data-copied="$copied">$copy</button>
<a class="back" id="back" href="$back_href">$back</a>
<script>
$script</script>
""",
    )
)


def qr_svg(text: str) -> str | None:
    """``text`` as an inline SVG QR code; None when no QR code holds it (the page then shows
    the link as text: a page that cannot draw its QR code must not 500)."""
    try:
        code = segno.make(text, error="m", micro=False)
    except segno.DataOverflowError:
        return None
    svg: str = code.svg_inline(scale=4, border=2, title="QR", omitsize=True)
    return svg


def render_qr_page(
    link: str, language: Language, *, phone: bool = False, back_href: str = "/"
) -> bytes:
    """The page of ``link`` in ``language``: its QR code and the link, or on a ``phone`` the
    link to open in WeChat; a way back to the site at ``back_href``."""
    texts = _TEXTS[language]
    svg = None if phone else qr_svg(link)
    if phone:
        title, body, label = texts["phone_title"], texts["phone_body"], texts["phone_link"]
    elif svg:
        title, body, label = texts["title"], texts["body"], texts["link"]
    else:
        title, body, label = texts["title"], texts["body_no_qr"], texts["phone_link"]
    values = {
        "lang": _HTML_LANG[language],
        "title": title,
        "body": body,
        "link_label": label,
        "link": link,
        "copy": texts["copy"],
        "copied": texts["copied"],
        "back": texts["back"],
        "back_href": back_href,
    }
    escaped = {name: html.escape(value, quote=True) for name, value in values.items()}
    qr = f'<div class="qr" id="qr">{svg}</div>' if svg else ""
    return _PAGE.substitute(escaped, qr=qr, script=_COPY_SCRIPT).encode()


def on_a_phone(scope: Scope) -> bool:
    """Whether the browser runs on a phone (``Mobi`` in the User-Agent, as every phone browser
    says; an iPad's or another tablet's screen can be scanned by a phone)."""
    agent = header_value(scope, b"user-agent")
    return "Mobi" in agent and "iPad" not in agent


def wants_json(scope: Scope) -> bool:
    """Whether ``Accept`` names JSON itself (not just ``*/*``)."""
    weights = quality_weights(header_value(scope, b"accept"))
    return max(weights.get("application/json", 0.0), weights.get("application/*", 0.0)) > 0


async def send_open_in_wechat(scope: Scope, send: Send, link: str) -> None:
    """200: the page of the link for a browser (its QR code, or on a phone the link to open
    in WeChat), else ``{"open_in_wechat": true, "login_url": link}``."""
    if wants_html(scope):
        body = render_qr_page(
            link,
            preferred_language(scope),
            phone=on_a_phone(scope),
            back_href=f"{scope.get('root_path', '')}/",
        )
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
    await send_body(send, 200, body, content_type, *headers, head=scope["method"] == "HEAD")
