"""The emulator served on a loopback port by uvicorn in a background thread.

For tests that drive a real server or a real browser: the app under test reaches the emulator
over the network, while the test still inspects the same :class:`WeChatEmulator` object (its
per-code counters, its faults) in-process.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from ._emulator import WeChatEmulator

if TYPE_CHECKING:
    import uvicorn

UVICORN_MISSING = "serving the WeChat emulator needs uvicorn: pip install 'asgi-wechat-oauth[demo]'"


class EmulatorServer:
    """``with EmulatorServer(emulator) as server:`` serves ``emulator`` on ``server.url``
    (``127.0.0.1``, a free port) and sets ``emulator.url`` to it; leaving the block stops it."""

    def __init__(self, emulator: WeChatEmulator | None = None, *, host: str = "127.0.0.1") -> None:
        self.emulator = emulator if emulator is not None else WeChatEmulator()
        self.host = host
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        return self.emulator.url

    def start(self, timeout: float = 10.0) -> None:
        try:
            import uvicorn
        except ImportError:
            raise RuntimeError(UVICORN_MISSING) from None
        # Bound here, so the port is known and nobody can take it before uvicorn listens.
        self._socket = socket.socket()
        self._socket.bind((self.host, 0))
        port = self._socket.getsockname()[1]
        # No access log: request lines carry codes and the secret, even the emulator's.
        config = uvicorn.Config(
            self.emulator, lifespan="off", log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the WeChat emulator's server did not start")
            time.sleep(0.01)
        self.emulator.url = f"http://{self.host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
