"""What the error pages say for a desktop login handed over from a phone (merged into
:data:`.pages.DEFAULT_TEXTS`; apps override them with ``ErrorPages`` as any other)."""

from __future__ import annotations

HANDOFF_TEXTS = {
    "handoff_expired": {
        "zh": (
            "二维码已过期",
            "这个登录二维码已经过期或被取消了。请回到电脑上，刷新页面获取新的二维码。",
        ),
        "en": (
            "This QR code has expired",
            "It expired or was cancelled. Go back to the computer and get a new QR code.",
        ),
    },
    "handoff_used": {
        "zh": ("这次登录已经完成", "这个登录已经用过了。如需再次登录，请重新打开登录页面。"),
        "en": (
            "This login was already used",
            "It can be used only once. To log in again, open the login page again.",
        ),
    },
    "handoff_not_yours": {
        "zh": (
            "不是这个浏览器发起的登录",
            "这个登录是在另一个浏览器里开始的，不能在这里完成。请在这里重新登录。",
        ),
        "en": (
            "This login belongs to another browser",
            "It was started in another browser and cannot be completed here. "
            "Please log in again here.",
        ),
    },
    "handoff_taken": {
        "zh": (
            "二维码已经被别人扫过",
            "另一个微信用户也扫了这个二维码，为安全起见，它已经作废。请回到电脑上获取新的二维码。",
        ),
        "en": (
            "Someone else scanned this QR code",
            "Another WeChat user scanned it too, so it no longer logs anyone in. Go back to "
            "the computer and get a new QR code.",
        ),
    },
}
