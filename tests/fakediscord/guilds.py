"""Guilds: building them (``add_guild``, ``setup_default``), the bot joining or leaving one after READY,
and the guild REST routes (the guild, its channels, roles and members)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .gateway import INTENT_GUILD_PRESENCES
from .models import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MODERATE_MEMBERS,
    DefaultSetup,
    FakeGuild,
    FakeMember,
    FakeRole,
    _perm_value,
)
from .rest import HTTPError, RecordedRequest, Route, json_response, route, snow

if TYPE_CHECKING:
    from .gateway import Gateway
    from .state import FakeState


class Guilds:
    def __init__(self, state: FakeState, gateway: Gateway) -> None:
        self.state = state
        self.gateway = gateway

    def routes(self) -> list[Route]:
        g = r"/guilds/" + snow("gid")
        return [
            route("GET", g, self._h_guild_get),
            route("GET", g + r"/channels", self._h_guild_channels),
            route("GET", g + r"/roles", self._h_guild_roles),
            route("GET", g + r"/members", self._h_guild_members),
            route("GET", g + r"/members/" + snow("uid"), self._h_guild_member),
        ]

    def add_guild(
        self,
        name: str = "Test Guild",
        *,
        premium_tier: int = 0,
        owner: str | None = "owner",
        shard: tuple[int, int] | None = None,
        bot_permissions: Any = DEFAULT_BOT_PERMISSIONS,
        everyone_permissions: Any = DEFAULT_EVERYONE_PERMISSIONS,
        upload_limit: int | None = None,
        locale: str = "en-US",
    ) -> FakeGuild:
        """A guild with @everyone, the bot's managed role and the bot member; ``owner`` names an owner member
        to create (``None``: none yet, make one with ``add_member(..., owner=True)``). ``shard=(id, count)``
        picks a guild id Discord would route to that shard."""
        gid = self.state._ids.next(shard=shard)
        guild = FakeGuild(
            self.state,
            gid,
            name,
            owner_id=0,
            premium_tier=premium_tier,
            upload_limit_override=upload_limit,
            preferred_locale=locale,
        )
        guild.roles[gid] = FakeRole(gid, gid, "@everyone", _perm_value(everyone_permissions), position=0)
        bot_role = self.state._ids.next()
        guild.roles[bot_role] = FakeRole(
            bot_role,
            gid,
            self.state.bot_user.name,
            _perm_value(bot_permissions),
            position=1,
            managed=True,
            bot_id=self.state.bot_user.id,
        )
        guild.members[self.state.bot_user.id] = FakeMember(self.state.bot_user, guild, [bot_role])
        self.state.guilds[gid] = guild
        if owner is not None:
            guild.add_member(owner, owner=True)
        return guild

    def setup_default(self, *, premium_tier: int = 0) -> DefaultSetup:
        """One guild: owner, admin (Manage Server), moderator, alice and bob; #general, #images, #mod-log."""
        guild = self.add_guild("Image Hub Test", premium_tier=premium_tier)
        admin_role = guild.add_role("Admin", MANAGE_GUILD | MANAGE_MESSAGES, color=0xE74C3C, hoist=True)
        mod_role = guild.add_role("Moderator", MANAGE_MESSAGES | MODERATE_MEMBERS, color=0x3498DB)
        setup = DefaultSetup(
            guild=guild,
            owner=guild.owner,
            admin=guild.add_member("admin", roles=[admin_role]),
            moderator=guild.add_member("moderator", roles=[mod_role]),
            alice=guild.add_member("alice"),
            bob=guild.add_member("bob"),
            admin_role=admin_role,
            moderator_role=mod_role,
            general=guild.add_channel("general"),
            images=guild.add_channel("images"),
            mod_log=guild.add_channel("mod-log"),
        )
        self.state.default = setup
        return setup

    async def join_guild(self, guild: FakeGuild) -> None:
        """Send GUILD_CREATE for a guild added after READY (the bot "joins" it)."""
        session = self.gateway.live_session_for(guild.id)
        presences = session is not None and bool(session.intents & INTENT_GUILD_PRESENCES)
        await self.gateway.dispatch_guild_event(
            guild.id, "GUILD_CREATE", guild.to_payload(all_members=presences)
        )

    async def remove_guild(self, guild_id: int) -> None:
        """The bot is removed from a guild: GUILD_DELETE."""
        self.state.guilds.pop(guild_id)
        await self.gateway.dispatch_guild_event(
            guild_id, "GUILD_DELETE", {"id": str(guild_id), "unavailable": False}, shard_guild=guild_id
        )

    def _guild_for(self, m: re.Match[str]) -> FakeGuild:
        guild = self.state.guilds.get(int(m["gid"]))
        if guild is None:
            raise HTTPError(404, 10004, "Unknown Guild")
        return guild

    async def _h_guild_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        payload = self._guild_for(m).to_payload()
        for key in (
            "channels",
            "members",
            "threads",
            "voice_states",
            "presences",
            "joined_at",
            "large",
            "member_count",
            "stage_instances",
            "guild_scheduled_events",
            "soundboard_sounds",
            "lazy",
        ):
            payload.pop(key, None)
        return json_response(payload)

    async def _h_guild_channels(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response([c.to_payload() for c in self._guild_for(m).channels.values()])

    async def _h_guild_roles(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response([r.to_payload() for r in self._guild_for(m).roles.values()])

    async def _h_guild_members(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        members = sorted(self._guild_for(m).members.values(), key=lambda x: x.id)
        after = int(rec.query.get("after", 0))
        limit = int(rec.query.get("limit", 1))
        return json_response([x.to_payload() for x in members if x.id > after][:limit])

    async def _h_guild_member(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        member = self._guild_for(m).members.get(int(m["uid"]))
        if member is None:
            raise HTTPError(404, 10007, "Unknown Member")
        return json_response(member.to_payload())
