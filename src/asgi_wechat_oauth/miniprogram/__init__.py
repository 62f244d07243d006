"""WeChat mini-program login: ``wx.login()`` codes traded once at ``sns/jscode2session``.

A thin layer over the shared core (single flight, backends, errors): a shared ``RedisBackend``
serves the web flow and this one, with their keys kept apart.
"""

from ._client import MiniProgramClient
from ._config import MiniProgramConfig
from ._identity import MiniProgramIdentity
from ._middleware import MiniProgramMiddleware

__all__ = [
    "MiniProgramClient",
    "MiniProgramConfig",
    "MiniProgramIdentity",
    "MiniProgramMiddleware",
]
