"""The WeCom login endpoint: WeCom's authorize page inside its browser, QR login elsewhere."""

from __future__ import annotations

from .._core.asgi import Scope
from .._core.login import LoginEndpoint
from .._core.state import StateSigner
from ._authorize import SCOPES, in_wecom_browser, wecom_authorize_url, wecom_qr_login_url


class WeComLoginEndpoint(LoginEndpoint):
    scopes = SCOPES

    def __init__(
        self,
        *,
        corpid: str,
        agentid: str,
        signer: StateSigner,
        callback_path: str,
        redirect_uri: str | None,
        default_scope: str,
        trust_forwarded: bool,
        cookie_name: str,
        authorize_base_url: str,
        qr_login_base_url: str,
    ) -> None:
        super().__init__(
            signer=signer,
            callback_path=callback_path,
            redirect_uri=redirect_uri,
            default_scope=default_scope,
            trust_forwarded=trust_forwarded,
            cookie_name=cookie_name,
        )
        self.corpid = corpid
        self.agentid = agentid
        self.authorize_base_url = authorize_base_url
        self.qr_login_base_url = qr_login_base_url

    def authorize(self, scope: Scope, redirect_uri: str, oauth_scope: str, state: str) -> str:
        if in_wecom_browser(scope):
            return wecom_authorize_url(
                self.corpid,
                self.agentid,
                redirect_uri,
                scope=oauth_scope,
                state=state,
                base_url=self.authorize_base_url,
            )
        # QR login has no scope: it identifies the member (snsapi_base), never with a ticket.
        return wecom_qr_login_url(
            self.corpid, self.agentid, redirect_uri, state=state, base_url=self.qr_login_base_url
        )
