"""The ``overloaded`` page tells the user to come back in seconds: the answer carries
``Retry-After: 5`` (issue 31), so "later" would send users away for longer than needed."""

from __future__ import annotations

import pytest

from asgi_wechat_oauth import ErrorPages


@pytest.mark.parametrize(
    ("language", "text"), [("zh", "过几秒钟再重新登录"), ("en", "try again in a few seconds")]
)
def test_the_overloaded_page_says_to_try_again_in_a_few_seconds(language, text):
    body = ErrorPages().render("overloaded", 503, language, login_href="/l", back_href="/")
    assert text in body.decode()
