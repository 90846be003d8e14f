"""Identity: the bot's own user, other users, and the application (``/users/...``, ``/applications/@me``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .rest import HTTPError, RecordedRequest, Route, json_response, route, snow

if TYPE_CHECKING:
    from .state import FakeState


class Users:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            route("GET", r"/users/@me", self._h_me),
            route("GET", r"/users/" + snow("uid"), self._h_user),
            route("GET", r"/oauth2/applications/@me", self._h_appinfo),
            route("GET", r"/applications/@me", self._h_appinfo),
        ]

    def bot_user_payload(self) -> dict[str, Any]:
        payload = self.state.bot_user.to_payload()
        payload.update(
            {
                "verified": True,
                "mfa_enabled": False,
                "flags": 0,
                "email": None,
                "locale": "en-US",
                "banner": None,
                "accent_color": None,
            }
        )
        return payload

    async def _h_me(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(self.bot_user_payload())

    async def _h_user(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        user = self.state.users.get(int(m["uid"]))
        if user is None:
            raise HTTPError(404, 10013, "Unknown User")
        return json_response(user.to_payload())

    async def _h_appinfo(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(
            {
                "id": str(self.state.application_id),
                "name": self.state.bot_user.name,
                "icon": None,
                "description": "Fake application",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self.state.app_owner.to_payload(),
                "team": None,
                "flags": 0,
                "hook": True,
                "tags": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "approximate_guild_count": len(self.state.guilds),
                "bot": self.bot_user_payload(),
                "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
                "integration_types_config": {str(t): {} for t in sorted(self.state.app_integration_types)},
            }
        )
