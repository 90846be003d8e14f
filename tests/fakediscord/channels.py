"""Channels: ``GET /channels/{id}``, DM channels, and the bot's own permissions in a channel, which every REST
call on it is held to (roles and overwrites; 403 50001/50013 as Discord answers). The test's channel knobs:
``delete_channel``, ``deny_send``/``allow_send``, ``set_bot_overwrite``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .models import (
    ATTACH_FILES,
    EMBED_LINKS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    FakeChannel,
    FakeUser,
    now_iso,
)
from .rest import HTTPError, RecordedFile, RecordedRequest, Route, json_response, route, snow

if TYPE_CHECKING:
    from .gateway import Gateway
    from .state import FakeState


class Channels:
    def __init__(self, state: FakeState, gateway: Gateway) -> None:
        self.state = state
        self.gateway = gateway
        self._deleted_channels: set[int] = set()
        #: channels where posts answer 403 50013 whatever the permissions say (``deny_send``)
        self.send_denied: set[int] = set()

    def routes(self) -> list[Route]:
        return [
            route("POST", r"/users/@me/channels", self._h_create_dm),
            route("GET", r"/channels/" + snow("cid"), self._h_channel_get),
            route(
                "GET", r"/channels/" + snow("cid") + r"/thread-members/" + snow("uid"), self._h_thread_member
            ),
        ]

    def channel_for(self, m: re.Match[str]) -> FakeChannel:
        cid = int(m["cid"])
        if cid in self._deleted_channels or cid not in self.state._channel_index:
            raise HTTPError(404, 10003, "Unknown Channel")
        return self.state._channel_index[cid]

    def bot_permissions(self, channel: FakeChannel) -> int | None:
        """The bot's own permissions in a guild channel (roles and overwrites), None outside guilds."""
        if channel.guild_id is None:
            return None
        guild = self.state.guilds[channel.guild_id]
        return guild.channel_permissions(guild.bot_member, channel.id)

    def require(self, channel: FakeChannel, needed: int) -> None:
        """403 as Discord answers a REST call the bot lacks permissions for: 50001 Missing Access without View
        Channel, else 50013 Missing Permissions. (Interaction responses and followups are webhooks: Discord
        does not check the bot's channel permissions for them, and neither does the fake.)"""
        perms = self.bot_permissions(channel)
        if perms is None:
            return
        if not perms & VIEW_CHANNEL:
            raise HTTPError(403, 50001, "Missing Access")
        if perms & needed != needed:
            raise HTTPError(403, 50013, "Missing Permissions")

    def posting_needs(self, payload: dict[str, Any], files: list[RecordedFile], *, create: bool) -> int:
        needed = SEND_MESSAGES if create else 0
        if files:
            needed |= ATTACH_FILES
        if payload.get("embeds"):
            needed |= EMBED_LINKS
        if create and payload.get("message_reference"):
            needed |= READ_MESSAGE_HISTORY
        return needed

    async def delete_channel(self, channel_id: int, *, notify: bool = True) -> None:
        """Delete a channel: later requests on it answer 404 10003 Unknown Channel (CHANNEL_DELETE sent)."""
        channel = self.state._channel_index[channel_id]
        self._deleted_channels.add(channel_id)
        if channel.guild_id is not None:
            guild = self.state.guilds[channel.guild_id]
            guild.channels.pop(channel_id, None)
            if notify:
                await self.gateway.dispatch_guild_event(guild.id, "CHANNEL_DELETE", channel.to_payload())
        self.state._notify()

    async def deny_send(self, channel_id: int, *, update_overwrite: bool = True) -> None:
        """Posts to the channel answer 403 50013 Missing Permissions. ``update_overwrite`` also adds a member
        overwrite denying Send Messages to the bot and sends CHANNEL_UPDATE (so the bot's cache can know)."""
        self.send_denied.add(channel_id)
        if update_overwrite:
            await self._set_bot_send_overwrite(channel_id, deny=True)

    async def set_bot_overwrite(self, channel_id: int, *, allow: int = 0, deny: int = 0) -> None:
        """Set (or with neither, remove) a member overwrite for the bot in a channel and send CHANNEL_UPDATE,
        as when a moderator edits the channel: the fake's REST checks and the bot's cache both follow it."""
        channel = self.state._channel_index[channel_id]
        channel.set_overwrite(self.state.bot_user.id, type=1, allow=allow, deny=deny)
        if channel.guild_id is not None:
            await self.gateway.dispatch_guild_event(channel.guild_id, "CHANNEL_UPDATE", channel.to_payload())

    def dm_channel(self, user_id: int) -> FakeChannel | None:
        """The bot's DM channel with a user, once the bot opened it (``POST /users/@me/channels``)."""
        for ch in self.state._channel_index.values():
            if ch.type == 1 and ch.recipients and ch.recipients[0].id == user_id:
                return ch
        return None

    async def allow_send(self, channel_id: int) -> None:
        self.send_denied.discard(channel_id)
        await self._set_bot_send_overwrite(channel_id, deny=False)

    async def _set_bot_send_overwrite(self, channel_id: int, *, deny: bool) -> None:
        channel = self.state._channel_index[channel_id]
        if channel.guild_id is None:
            return
        channel.set_overwrite(self.state.bot_user.id, type=1, deny=SEND_MESSAGES if deny else 0)
        await self.gateway.dispatch_guild_event(channel.guild_id, "CHANNEL_UPDATE", channel.to_payload())

    async def _h_channel_get(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return json_response(self.channel_for(m).to_payload())

    async def _h_thread_member(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        """A thread's member, or 404 10007 for someone not in it (private threads: ``add_thread``)."""
        channel = self.channel_for(m)
        uid = int(m["uid"])
        if not channel.is_thread or uid not in channel.thread_members:
            raise HTTPError(404, 10007, "Unknown Member")
        member = {"id": str(channel.id), "user_id": str(uid), "join_timestamp": now_iso(), "flags": 0}
        return json_response(member)

    async def _h_create_dm(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        uid = int((rec.json or {}).get("recipient_id", 0))
        user = self.state.users.get(uid)
        if user is None:
            raise HTTPError(400, 50033, "Invalid Recipient(s)")
        return json_response(self.open_dm(user).to_payload())

    def open_dm(self, user: FakeUser) -> FakeChannel:
        """The DM channel between the bot and ``user`` (made on first use, as Discord does)."""
        channel = self.dm_channel(user.id)
        if channel is None:
            channel = FakeChannel(self.state._ids.next(), None, "", type=1, recipients=[user])
            self.state._channel_index[channel.id] = channel
        return channel
