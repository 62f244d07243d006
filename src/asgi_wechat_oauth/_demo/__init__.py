"""``python -m asgi_wechat_oauth demo``: the duplicate callback, with and without the middleware.

Everything runs over real loopback HTTP, in one process: the WeChat emulator and a small
Starlette app each under their own uvicorn server, and a "phone" that logs in the way the WeChat
in-app browser does (callback #1 aborted after a few milliseconds, callback #2 with the same code
~19 ms after #1). The app answers the callback twice over: a naive handler that trades the code
itself, and the same app behind :class:`~asgi_wechat_oauth.WeChatOAuthMiddleware`. The tallies
show what users see and how often WeChat was asked.

The emulator uses a code on *arrival* and answers after ``latency``, so the naive handler's two
exchanges really race: #1's arrives first and wins, #2's gets 40163, and #2's answer is the page
the user sees. uvicorn does not cancel a request's task when its client disconnects, so the
aborted #1 still completes its trade, exactly as in production.

One concern per module: ``_model`` (the settings and the tallies), ``_servers`` (the app both
ways, uvicorn), ``_phones`` (the logins), ``_output`` (progress and report, drawn by rich) and
``_run`` (the whole run and the command's exit status).
"""

from ._model import DemoConfig, DemoResult, Tally
from ._run import DemoInterrupted, main, run_demo

__all__ = ["DemoConfig", "DemoInterrupted", "DemoResult", "Tally", "main", "run_demo"]
