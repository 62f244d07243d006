"""The error pages' texts where WeCom's pages must not say "WeChat"."""

from __future__ import annotations

from .._core.pages import ErrorPages, Texts

_NO_WECOM = {
    "zh": ("暂时无法连接企业微信", "现在无法完成企业微信登录，请稍后重新登录。"),
    "en": (
        "Could not reach WeCom",
        "The WeCom login could not be completed. Please try again in a moment.",
    ),
}

#: Overrides of the built-in texts for WeCom; start your own ``ErrorPages(texts=...)`` from it.
WECOM_TEXTS: Texts = {
    "missing_code": {
        "zh": ("没有完成授权", "企业微信没有确认这次登录。如需继续，请重新登录并允许授权。"),
        "en": (
            "The login was not confirmed",
            "WeCom did not confirm this login. To continue, log in again and allow it.",
        ),
    },
    "upstream_busy": {
        "zh": ("企业微信繁忙", "企业微信暂时繁忙，请稍等片刻后重新登录。"),
        "en": (
            "WeCom is busy",
            "WeCom is busy right now. Please wait a moment, then log in again.",
        ),
    },
    "upstream_unavailable": _NO_WECOM,
    "upstream_bad_response": _NO_WECOM,
    "upstream_error": _NO_WECOM,
    "upstream_timeout": _NO_WECOM,
    "exchange_lost": _NO_WECOM,
    "configuration_error": {
        "zh": ("企业微信登录暂不可用", "网站的企业微信登录设置有误，问题已记录。请稍后再试。"),
        "en": (
            "WeCom login is unavailable",
            "The site's WeCom login is misconfigured; the problem has been logged. "
            "Please try again later.",
        ),
    },
}

DEFAULT_WECOM_ERROR_PAGES = ErrorPages(texts=WECOM_TEXTS)
