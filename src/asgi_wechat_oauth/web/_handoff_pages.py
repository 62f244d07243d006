"""The pages of a desktop login handed over from a phone, in Chinese and English.

The desktop's page: the QR code of the login link (inline SVG), the same link as
``<a id="wechat-login-link">``, and a few lines of inline script that poll ``data-poll-url``
and follow the redirect; once the QR code expires, a link to a fresh one. The phone's pages:
the confirmation (the site, the waiting browser and when it started, a POST form with its CSRF
token), then "the computer is logged in", or "cancelled". No page loads anything from
elsewhere.
"""

from __future__ import annotations

import html
from string import Template

from .._core.pages import _HTML_LANG, STYLE, Language, page_source
from ._qrpage import qr_svg

#: Milliseconds between two polls of the desktop's page.
POLL_INTERVAL_MS = 1500

_TEXTS: dict[Language, dict[str, str]] = {
    "zh": {
        "title": "微信扫码登录",
        "body": "请用手机微信扫描二维码，并在手机上确认登录。确认后，这台电脑会自动登录。",
        "waiting": "等待扫码……",
        "done": "已确认，正在登录……",
        "expired": "二维码已过期。",
        "not_yours": "这个二维码不是在这个浏览器里打开的。",
        "again": "刷新二维码",
        "link": "扫不了码？把这个登录链接发到手机微信里打开",
        "confirm_title": "在电脑上登录？",
        "confirm_body": "你正在用微信登录 $host。等待登录的电脑：$browser，$ago打开了二维码。",
        "warning": "只有当这台电脑就在你面前、登录页面是你自己打开的，才点确认。如果二维码是别人"
        "发给你的，请取消：确认之后，对方的电脑就会以你的身份登录。",
        "confirm": "确认登录",
        "cancel": "取消",
        "done_title": "电脑已登录",
        "done_body": "$host 已经在电脑上登录，回到电脑继续就行。这个页面可以关掉了。",
        "cancelled_title": "已取消",
        "cancelled_body": "电脑没有登录 $host。",
        "browser": "$os 上的 $name 浏览器",
        "unknown": "一个浏览器",
        "just_now": "刚刚",
        "seconds": "$n 秒前",
        "minutes": "$n 分钟前",
    },
    "en": {
        "title": "Log in with WeChat",
        "body": "Scan the QR code with WeChat on your phone and confirm there. This computer "
        "then logs in by itself.",
        "waiting": "Waiting for the scan…",
        "done": "Confirmed, logging in…",
        "expired": "This QR code has expired.",
        "not_yours": "This QR code was not opened in this browser.",
        "again": "Get a new QR code",
        "link": "Cannot scan? Send this login link to WeChat on your phone and open it there",
        "confirm_title": "Log in on a computer?",
        "confirm_body": "You are logging in to $host with WeChat. The computer waiting to be "
        "logged in: $browser, which opened the QR code $ago.",
        "warning": "Confirm only if that computer is in front of you and you opened the login "
        "page yourself. If someone sent you this QR code, cancel: confirming would log their "
        "computer in as you.",
        "confirm": "Log in on the computer",
        "cancel": "Cancel",
        "done_title": "The computer is logged in",
        "done_body": "You are now logged in to $host on the computer: carry on there. You can "
        "close this page.",
        "cancelled_title": "Cancelled",
        "cancelled_body": "The computer was not logged in to $host.",
        "browser": "$name on $os",
        "unknown": "a web browser",
        "just_now": "just now",
        "seconds": "$n seconds ago",
        "minutes": "$n minutes ago",
    },
}

#: Polls the handoff and follows the redirect; stops (offering a new QR code) once it is gone.
_POLL_SCRIPT = """\
(function () {
  var main = document.getElementById("handoff"), status = document.getElementById("status");
  var url = main.getAttribute("data-poll-url"), every = +main.getAttribute("data-interval");
  var until = Date.now() + 1000 * +main.getAttribute("data-ttl") + 5000, timer;
  function stop(name) {
    clearInterval(timer);
    status.textContent = main.getAttribute(name);
    document.getElementById("qr").className = "qr gone";
    document.getElementById("again").hidden = false;
  }
  function poll() {
    if (Date.now() > until) { stop("data-expired"); return; }
    fetch(url, {credentials: "same-origin", cache: "no-store",
                headers: {accept: "application/json"}}).then(function (answer) {
      if (answer.status === 202 || answer.status >= 500) return;
      if (answer.status !== 200) {
        stop(answer.status === 403 ? "data-not-yours" : "data-expired");
        return;
      }
      return answer.json().then(function (data) {
        clearInterval(timer);
        status.textContent = main.getAttribute("data-done");
        window.location.assign(data.redirect);
      });
    }, function () {});
  }
  timer = setInterval(poll, every);
})();
"""

_EXTRA_STYLE = """\
p{margin-bottom:24px}
.qr{display:inline-block;margin:0 auto 16px;padding:12px;background:#fff;border-radius:8px}
.qr svg{display:block;width:220px;height:220px}
.qr.gone{opacity:.15}
#status{text-align:center;color:#191919;font-weight:600}
[hidden]{display:none!important}
a.link{background:none;color:#576b95;font-weight:400;font-size:14px}
.icon.ok{background:#07c160}
.icon.off{background:#b2b2b2}
.warn{padding:12px;border-radius:8px;background:#fff3e0;color:#8a4b00;font-size:15px}
form{margin:0}
button{display:block;box-sizing:border-box;width:100%;margin-bottom:12px;padding:12px;border:0;\
border-radius:8px;background:#07c160;color:#fff;font:inherit;font-weight:600;cursor:pointer}
button.cancel{background:#ededed;color:#191919}
"""

_DESKTOP = Template(
    page_source(
        STYLE + _EXTRA_STYLE,
        """\
<div id="handoff" data-poll-url="$poll_url" data-interval="$interval" data-ttl="$ttl" \
data-done="$done" data-expired="$expired" data-not-yours="$not_yours">
<h1>$title</h1>
<p>$body</p>
<div class="qr" id="qr">$qr</div>
<p id="status" role="status">$waiting</p>
<a id="again" href="$again_href" hidden>$again</a>
<a class="link" id="wechat-login-link" href="$link">$link_label</a>
</div>
<script>
$script</script>
""",
    )
)

_CONFIRM = Template(
    page_source(
        STYLE + _EXTRA_STYLE,
        """\
<h1>$title</h1>
<p id="details">$body</p>
<p class="warn">$warning</p>
<form method="post" action="$action">
<input type="hidden" name="csrf" value="$csrf">
<button type="submit" name="answer" value="confirm" id="confirm">$confirm</button>
<button type="submit" name="answer" value="cancel" id="cancel" class="cancel">$cancel</button>
</form>
""",
    )
)

_MESSAGE = Template(
    page_source(
        STYLE + _EXTRA_STYLE,
        '<div class="icon $icon" aria-hidden="true">$mark</div>\n'
        '<h1 id="title">$title</h1>\n<p>$body</p>\n',
    )
)

#: (marker in the User-Agent, the browser's name), the first that matches wins.
_BROWSERS = (
    ("MicroMessenger", "WeChat"),
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("FxiOS", "Firefox"),
    ("CriOS", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Windows", "Windows"),
    ("iPad", "iPad"),
    ("iPhone", "iPhone"),
    ("Macintosh", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Android", "Android"),
    ("Linux", "Linux"),
)


def describe_browser(user_agent: str) -> str:
    """``name|system`` from a User-Agent ("Chrome|Windows"), empty parts when unknown: stored
    with the handoff and shown on the phone, never the User-Agent itself."""
    name = next((label for marker, label in _BROWSERS if marker in user_agent), "")
    system = next((label for marker, label in _SYSTEMS if marker in user_agent), "")
    return f"{name}|{system}"


def _browser_text(described: str, language: Language) -> str:
    texts = _TEXTS[language]
    name, _, system = described.partition("|")
    if name and system:
        return Template(texts["browser"]).substitute(name=name, os=system)
    return name or system or texts["unknown"]


def _ago(seconds: float, language: Language) -> str:
    texts = _TEXTS[language]
    if seconds < 5:
        return texts["just_now"]
    if seconds < 120:
        return Template(texts["seconds"]).substitute(n=int(seconds))
    return Template(texts["minutes"]).substitute(n=int(seconds // 60))


def _escaped(values: dict[str, str]) -> dict[str, str]:
    return {name: html.escape(value, quote=True) for name, value in values.items()}


def render_desktop_page(
    link: str, poll_url: str, again_href: str, ttl: float, language: Language
) -> bytes:
    """The desktop's page: the QR code of ``link``, polling ``poll_url`` every
    :data:`POLL_INTERVAL_MS`, and ``again_href`` for a fresh QR code once ``ttl`` is over."""
    texts = _TEXTS[language]
    values = {
        "lang": _HTML_LANG[language],
        "title": texts["title"],
        "body": texts["body"],
        "waiting": texts["waiting"],
        "done": texts["done"],
        "expired": texts["expired"],
        "not_yours": texts["not_yours"],
        "again": texts["again"],
        "again_href": again_href,
        "link": link,
        "link_label": texts["link"],
        "poll_url": poll_url,
        "interval": str(POLL_INTERVAL_MS),
        "ttl": str(int(ttl)),
    }
    # The link is a few dozen characters (an id, no next): a QR code always holds it.
    svg = qr_svg(link) or ""
    return _DESKTOP.substitute(_escaped(values), qr=svg, script=_POLL_SCRIPT).encode()


def render_confirm_page(
    host: str, browser: str, elapsed: float, action: str, csrf: str, language: Language
) -> bytes:
    """The phone's confirmation: the site (``host``), the waiting ``browser`` and how long
    ago it started (``elapsed`` seconds), and the form that POSTs to ``action``."""
    texts = _TEXTS[language]
    body = Template(texts["confirm_body"]).substitute(
        host=host, browser=_browser_text(browser, language), ago=_ago(elapsed, language)
    )
    values = {
        "lang": _HTML_LANG[language],
        "title": texts["confirm_title"],
        "body": body,
        "warning": texts["warning"],
        "confirm": texts["confirm"],
        "cancel": texts["cancel"],
        "action": action,
        "csrf": csrf,
    }
    return _CONFIRM.substitute(_escaped(values)).encode()


def render_message_page(what: str, host: str, language: Language) -> bytes:
    """The phone's page after its answer: ``what`` is ``"done"`` or ``"cancelled"``."""
    texts = _TEXTS[language]
    values = {
        "lang": _HTML_LANG[language],
        "title": texts[f"{what}_title"],
        "body": Template(texts[f"{what}_body"]).substitute(host=host),
    }
    icon, mark = ("ok", "\u2713") if what == "done" else ("off", "\u00d7")
    return _MESSAGE.substitute(_escaped(values), icon=icon, mark=mark).encode()
