"""Test helpers, public: WeChat and WeCom emulators (WeChat's with a third-party platform's
ticket pushes, :class:`PlatformPush`), the WeChat browser's double callback, a mini-program's
retried login, and a desktop login handed over from a phone.

Use the emulator in your own tests through ``httpx.ASGITransport``::

    emulator = WeChatEmulator()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator))
    app = WeChatOAuthMiddleware(my_app, appid=emulator.appid, secret=emulator.secret,
                                api_base_url="http://wechat.test", http_client=http)

or run it as a server: ``python -m asgi_wechat_oauth emulator --port 8900``. With pytest, the
plugin ``pytest_asgi_wechat_oauth`` (loaded by itself) gives the fixtures ``wechat_emulator``,
``wechat_emulator_server``, ``wechat_login``, ``wechat_platform_login``, ``wechat_handoff_login``,
``wechat_miniprogram_login``, ``wecom_emulator`` and ``wecom_login``.
"""

from ._browser import consent, double_callback, platform_login, web_login, wecom_login
from ._emulator import WeChatEmulator
from ._faults import Fault
from ._handoff import handoff_login
from ._miniprogram import double_login, miniprogram_login
from ._platform import PlatformPush
from ._server import EmulatorServer
from ._tokens import ServerTokens
from ._users import EmulatedUser
from ._wecom import WeComEmulator, WeComMember

__all__ = [
    "EmulatedUser",
    "EmulatorServer",
    "Fault",
    "PlatformPush",
    "ServerTokens",
    "WeChatEmulator",
    "WeComEmulator",
    "WeComMember",
    "consent",
    "double_callback",
    "double_login",
    "handoff_login",
    "miniprogram_login",
    "platform_login",
    "web_login",
    "wecom_login",
]
