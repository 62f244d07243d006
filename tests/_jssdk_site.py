"""A site with a page that calls ``wx.config`` with what ``jssdk_path`` answered, served by
uvicorn for tests/test_browser_jssdk.py (``--app-dir tests``; options from ``WECHAT_*``).

The page's ``wx`` is a stub, inline: it records what ``wx.config`` received, and the page
loads nothing from elsewhere (no network but the site's own endpoint).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>JS-SDK</title></head>
<body><p id="status">waiting</p>
<script>
// The stub of WeChat's jweixin.js: what wx.config received, for the test to read.
window.wx = {
  config: function (options) {
    window.wxConfigReceived = options;
    document.getElementById("status").textContent = "configured";
  }
};
// The page-side snippet of the docs: the page URL without its fragment.
fetch("/wechat/jssdk?url=" + encodeURIComponent(location.href.split("#")[0]))
  .then(function (response) { return response.json(); })
  .then(function (c) {
    wx.config({
      debug: false,
      appId: c.appId,
      timestamp: c.timestamp,
      nonceStr: c.nonceStr,
      signature: c.signature,
      jsApiList: ["updateAppMessageShareData"]
    });
  });
</script></body></html>
"""


async def article(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


app = WeChatOAuthMiddleware(
    Starlette(routes=[Route("/articles/{id}", article)]), config=WeChatOAuthConfig.from_env()
)
