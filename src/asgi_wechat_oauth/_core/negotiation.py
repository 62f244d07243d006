"""What a request prefers: a page or JSON (``Accept``), Chinese or English
(``Accept-Language``), and whether it comes from WeChat's (or WeCom's) browser."""

from __future__ import annotations

from typing import Literal

from .asgi import Scope

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")


def wants_html(scope: Scope) -> bool:
    """Whether the request prefers a page: ``text/html`` named in ``Accept`` with a higher
    weight than JSON gets (``*/*`` alone, as non-browser clients send, means JSON). ``HEAD``
    never gets a page."""
    if scope.get("method") == "HEAD":
        return False
    weights = quality_weights(header_value(scope, b"accept"))
    html_weight = weights.get("text/html", 0.0)
    json_weight = next(
        (weights[r] for r in ("application/json", "application/*", "*/*") if r in weights), 0.0
    )
    return html_weight > json_weight


def in_app_browser(scope: Scope) -> bool:
    """Whether the request comes from WeChat's browser, or WeCom's (``MicroMessenger`` in the
    User-Agent of both): no cookie settings, no private mode, links opened from chats."""
    return "micromessenger" in header_value(scope, b"user-agent").lower()


def preferred_language(scope: Scope) -> Language:
    """``zh`` when ``Accept-Language`` weighs some ``zh`` (``zh-CN``, ``zh_CN``, ``zh-TW``, ...)
    above every English or wildcard entry; English otherwise."""
    best: Language = "en"
    best_weight = 0.0
    for tag, weight in quality_weights(header_value(scope, b"accept-language")).items():
        primary = tag.replace("_", "-").split("-", 1)[0]
        language: Language | None = "zh" if primary == "zh" else None
        if primary in ("en", "*"):
            language = "en"
        if language is not None and weight > best_weight:
            best, best_weight = language, weight
    return best


def header_value(scope: Scope, name: bytes) -> str:
    values = [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]
    return ",".join(values)


def quality_weights(header: str) -> dict[str, float]:
    """``{value: q}`` of an ``Accept``-style header, lower-cased; the first mention wins."""
    weights: dict[str, float] = {}
    for item in header.split(",")[:64]:
        value, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(number)
                except ValueError:
                    weight = 0.0
                if not 0.0 <= weight <= 1.0:  # NaN too
                    weight = 0.0
        if value:
            weights.setdefault(value.lower(), weight)
    return weights
