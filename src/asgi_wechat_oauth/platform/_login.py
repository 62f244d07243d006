"""The platform's login endpoint: the authorizer's consent page, on behalf of the platform."""

from __future__ import annotations

from typing import Any

from .._core.asgi import Scope
from .._core.login import LoginEndpoint
from ..web._authorize import OFFICIAL_ACCOUNT_SCOPES, authorize_url


class PlatformLoginEndpoint(LoginEndpoint):
    """``connect/oauth2/authorize?appid=<authorizer>&...&component_appid=<platform>``: the
    official account's consent page, which WeChat opens for the platform."""

    scopes = OFFICIAL_ACCOUNT_SCOPES

    def __init__(
        self,
        *,
        authorizer: str,
        component_appid: str,
        authorize_base_url: str,
        connect_redirect: bool,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.authorizer = authorizer
        self.component_appid = component_appid
        self.authorize_base_url = authorize_base_url
        self.connect_redirect = connect_redirect

    def authorize(self, scope: Scope, redirect_uri: str, oauth_scope: str, state: str) -> str:
        return authorize_url(
            self.authorizer,
            redirect_uri,
            scope=oauth_scope,
            state=state,
            connect_redirect=self.connect_redirect,
            base_url=self.authorize_base_url,
            component_appid=self.component_appid,
        )
