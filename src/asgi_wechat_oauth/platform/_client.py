"""The component code exchange: a code of an authorizer's consent page, traded by the platform."""

from __future__ import annotations

from ..web import AccessToken, WeChatOAuthClient


class ComponentOAuthClient(WeChatOAuthClient):
    """:class:`~asgi_wechat_oauth.WeChatOAuthClient` for a third-party platform: ``appid`` and
    the secret are the platform's (component_appid, component_appsecret), and codes are traded
    at ``sns/oauth2/component/access_token`` with a ``component_access_token`` instead of the
    authorizer's secret. ``sns/userinfo`` is called as for any web login."""

    async def exchange_component_code(
        self, authorizer_appid: str, code: str, component_access_token: str
    ) -> AccessToken:
        """Trade a code the authorizer's consent page issued (once, as any code)."""
        data = await self._get(
            "/sns/oauth2/component/access_token",
            {
                "appid": authorizer_appid,
                "code": code,
                "grant_type": "authorization_code",
                "component_appid": self.appid,
                "component_access_token": component_access_token,
            },
        )
        return self._parsed(AccessToken.from_wechat, data)
