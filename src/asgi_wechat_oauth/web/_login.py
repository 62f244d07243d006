"""The login endpoint: a redirect to WeChat's consent page with a signed state and its cookie."""

from __future__ import annotations

from .._core.asgi import Scope
from .._core.login import LoginEndpoint as _LoginEndpoint
from .._core.state import StateSigner
from ._authorize import SCOPES, authorize_url


class LoginEndpoint(_LoginEndpoint):
    """Builds the answer to ``GET login_path?scope=...&next=...`` with WeChat's authorize URL."""

    scopes = SCOPES

    def __init__(
        self,
        *,
        appid: str,
        signer: StateSigner,
        callback_path: str,
        redirect_uri: str | None,
        default_scope: str,
        trust_forwarded: bool,
        authorize_base_url: str,
        cookie_name: str,
        connect_redirect: bool,
    ) -> None:
        super().__init__(
            signer=signer,
            callback_path=callback_path,
            redirect_uri=redirect_uri,
            default_scope=default_scope,
            trust_forwarded=trust_forwarded,
            cookie_name=cookie_name,
        )
        self.appid = appid
        self.authorize_base_url = authorize_base_url
        self.connect_redirect = connect_redirect

    def authorize(self, scope: Scope, redirect_uri: str, oauth_scope: str, state: str) -> str:
        return authorize_url(
            self.appid,
            redirect_uri,
            scope=oauth_scope,
            state=state,
            connect_redirect=self.connect_redirect,
            base_url=self.authorize_base_url,
        )
