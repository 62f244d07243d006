"""The middleware's part in a desktop login handed over from a phone: which requests are the
handoff's, and the answers around :class:`._handoff_flow.Handoffs` (errors included). A mixin
of :class:`WeChatOAuthMiddleware`, kept apart so that the middleware stays one concept."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from .._core.asgi import Receive, Scope, Send
from .._core.contract import TokenStore
from .._core.endpoints import require_get
from .._core.middleware import Answer, OAuthMiddleware, redirect_answer
from .._core.state import VerifiedState
from ..errors import WeChatOAuthError
from ._authorize import QR_LOGIN_SCOPE
from ._browsers import LoginRoute
from ._config import WeChatOAuthConfig
from ._handoff import HandoffStore, expired
from ._handoff_flow import Handoffs
from ._kept import bodiless_request
from ._login import LoginEndpoint, LoginQuery
from ._qrpage import send_open_in_wechat


class HandoffRoutes(OAuthMiddleware):
    """Desktop login through the official account, for :class:`WeChatOAuthMiddleware`."""

    config: WeChatOAuthConfig
    appid: str
    _login: LoginEndpoint
    #: A desktop's login handed over from a phone (None: the QR page moves it to the phone).
    _handoffs: Handoffs | None = None

    def _handoff_endpoints(self) -> Handoffs | None:
        """The handoff endpoints, when ``desktop_login="handoff"`` can work here: a login
        endpoint with signed states, one official account (no website app, no ``apps``), a
        backend that looks records up."""
        config = self.config
        if (
            config.desktop_login != "handoff"
            or not (self.verify_state and config.login_path)
            or config.website_appid is not None
            or config.apps is not None
            or config.default_scope == QR_LOGIN_SCOPE
            or not isinstance(self.backend, TokenStore)
        ):
            return None
        store = HandoffStore(self.backend, self.appid, config.handoff_ttl)
        return Handoffs(store, self._login, self._signer)

    def _phone_login(
        self, scope: Scope, query: LoginQuery, route: LoginRoute | None, handoff: str
    ) -> Answer:
        """A handoff's login link: in WeChat, the official account's login signed for the
        handoff (while it lasts); elsewhere, the page that says to open it in WeChat."""
        assert self._handoffs is not None
        handoffs = self._handoffs
        if route is None:
            link = handoffs.phone_link(scope, query, handoff)

            async def open_in_wechat(send: Send) -> None:
                await send_open_in_wechat(scope, send, link)

            return open_in_wechat
        found = route
        plain = dataclasses.replace(query, next=None, next_id=None)

        async def start() -> Answer:
            await handoffs.store.waiting(handoff)  # 410 handoff_expired before a trip to WeChat
            begun = self._login.start(scope, plain, found, handoff=handoff)
            return redirect_answer(begun.location, begun.cookie)

        return self._guarded(scope, start)

    def _guarded(
        self,
        scope: Scope,
        build: Callable[[], Awaitable[Answer]],
        event: str = "handoff_refused",
    ) -> Answer:
        """An answer built by ``build`` (backend work first), or the error it raised, counted
        and logged as ``event``."""

        async def answer(send: Send) -> None:
            try:
                built = await build()
            except WeChatOAuthError as exc:
                self._failed(event, exc, None)
                await self._respond_error(scope, bodiless_request(), send, exc)
                return
            await built(send)

        return answer

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        handoffs = self._handoffs
        if handoffs is not None and scope["type"] == "http":
            kind = handoffs.kind(scope, self._callback_paths, self._login_paths)
            if kind is not None:
                if self._login_mark is not None:
                    scope[self._login_mark[0]] = self._login_mark[1]
                await self._handoff_request(kind, handoffs, scope, receive, send)
                return
        await super()._serve(scope, receive, send)

    async def _handoff_request(
        self, kind: str, handoffs: Handoffs, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The desktop's poll and redemption, the phone's answer."""
        answer: Answer | None = None
        try:
            if kind == "confirm":
                answer = await handoffs.answered(scope, receive)
            else:
                require_get(scope, "The handoff endpoint")
                if kind == "poll":
                    answer = await handoffs.poll(scope)
                else:
                    identity = await handoffs.redeem(scope)
        except WeChatOAuthError as exc:
            self._failed("handoff_refused", exc, None)
            await self._respond_error(scope, receive, send, exc)
            return
        if answer is not None:
            await answer(send)
            return
        # Redeemed, as a direct login: the app's callback handler, the login counted.
        await self._deliver(scope, receive, send, identity)

    def _divert(
        self, scope: Scope, receive: Receive, identity: Any, verified: VerifiedState | None
    ) -> Answer | None:
        """A phone's login for a desktop's handoff: recorded there, and the phone asked to
        confirm; the app is not called."""
        handoff = verified.handoff if verified is not None else None
        if handoff is None:
            return None
        handoffs = self._handoffs

        async def scanned() -> Answer:
            if handoffs is None:  # signed while handoffs were on, and they are off now
                raise expired()
            return await handoffs.scanned(scope, identity, handoff)

        return self._guarded(scope, scanned)
