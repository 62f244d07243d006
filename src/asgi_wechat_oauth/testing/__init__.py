"""Test helpers, public: WeChat and WeCom emulators and the WeChat browser's double callback.

Use the emulator in your own tests through ``httpx.ASGITransport``::

    emulator = WeChatEmulator()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator))
    app = WeChatOAuthMiddleware(my_app, appid=emulator.appid, secret=emulator.secret,
                                api_base_url="http://wechat.test", http_client=http)

or run it as a server: ``python -m asgi_wechat_oauth emulator --port 8900``.
"""

from ._browser import consent, double_callback
from ._emulator import EmulatedUser, Fault, WeChatEmulator
from ._tokens import ServerTokens
from ._wecom import WeComEmulator, WeComMember

__all__ = [
    "EmulatedUser",
    "Fault",
    "ServerTokens",
    "WeChatEmulator",
    "WeComEmulator",
    "WeComMember",
    "consent",
    "double_callback",
]
