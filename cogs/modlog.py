"""The server's moderator log: where moderators hear what they must know, at most as often as useful.

Lines go to the channel a server set with `/config modlog`, and only when the bot may post there;
a line about a channel's missing permissions goes once per channel and permissions per
`Timings.report_every` (remembered only that long, so the memory stays bounded). Lines are in the
server's language (`words`: the `/config language` setting, else the server's Discord locale).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import discord

from bot.guild_settings import GuildSettingsStore
from bot.logs import kv
from bot.timings import Timings
from cogs import embeds, messages

log = logging.getLogger(__name__)


class ModLog:
    """See the module docstring."""

    def __init__(self, client: discord.Client, guilds: GuildSettingsStore, timings: Timings) -> None:
        self.client = client
        self.guilds = guilds
        self.timings = timings
        self._reported: dict[tuple[int, tuple[str, ...]], float] = {}  # lines sent, by channel

    async def words(self, guild_id: int) -> messages.Words:
        """The server's language for its moderator log (and any public message without a job)."""
        config = await self.guilds.get(guild_id)
        guild = self.client.get_guild(guild_id)
        return messages.words(messages.public_locale(config.language, guild and guild.preferred_locale))

    async def post(self, guild_id: int, embed: discord.Embed) -> None:
        """Post to the server's moderator log channel, if it set one and the bot may post there."""
        config = await self.guilds.get(guild_id)
        if config.mod_log_channel_id is None:
            return
        guild = self.client.get_guild(guild_id)
        channel = guild.get_channel(config.mod_log_channel_id) if guild is not None else None
        if guild is not None and channel is not None:
            perms = channel.permissions_for(guild.me)
            if not (perms.view_channel and perms.send_messages and perms.embed_links):
                log.warning(kv("modlog.no_permission", guild=guild_id, channel=channel.id))
                return
        try:
            target = self.client.get_partial_messageable(config.mod_log_channel_id, guild_id=guild_id)
            await target.send(embed=embed, allowed_mentions=embeds.NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning(kv("modlog.failed", guild=guild_id, status=exc.status))

    async def report(
        self, guild_id: int, channel_id: int, missing: Sequence[str], line: discord.Embed
    ) -> None:
        """One moderator-log line per channel and missing permissions per `report_every`."""
        key = (channel_id, tuple(missing))
        now = time.monotonic()
        every = self.timings.report_every
        if now - self._reported.get(key, -every) < every:
            return
        if len(self._reported) >= 1024:  # keep only lines still within their hour
            self._reported = {k: at for k, at in self._reported.items() if now - at < every}
        self._reported[key] = now
        log.warning(
            kv("publish.missing_permissions", guild=guild_id, channel=channel_id, missing=list(missing))
        )
        await self.post(guild_id, line)

    async def missing_at_launch(self, guild_id: int, channel_id: int, missing: Sequence[str]) -> None:
        """The line when /imagine is used where the bot can't post results itself."""
        line = embeds.missing_permission_line(await self.words(guild_id), channel_id, missing)
        await self.report(guild_id, channel_id, missing, line)
