"""The ASGI entry point: Django's application, wrapped by the middleware.

    pip install asgi-wechat-oauth django uvicorn
    WECHAT_APPID=wx... WECHAT_SECRET=... uvicorn examples.django_app.asgi:application

Configured from the environment (``WeChatOAuthConfig.from_env``: ``WECHAT_APPID``,
``WECHAT_SECRET``, ``WECHAT_API_BASE_URL``, ``WECHAT_AUTHORIZE_BASE_URL``, ...), built here, at
import: a bad option fails before the server starts. The callback path ends with a slash, like
the Django route; a link to the other spelling would still work (the middleware matches both).
Django has no lifespan: the middleware answers the server's lifespan events itself and closes
its HTTP client at shutdown.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from asgi_wechat_oauth import WeChatOAuthConfig, WeChatOAuthMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")

DEFAULTS = {
    "WECHAT_CALLBACK_PATH": "/wechat/callback/",
    "WECHAT_LOGIN_PATH": "/wechat/login/",
    "WECHAT_DEFAULT_SCOPE": "snsapi_userinfo",  # to show the nickname; snsapi_base is silent
}
config = WeChatOAuthConfig.from_env(environ={**DEFAULTS, **os.environ})
application = WeChatOAuthMiddleware(get_asgi_application(), config=config)
