"""/mykey set|clear|show: a member's own image hub key, for generating on their own credits.

The key is typed into a private form (`cogs.forms.PersonalKeyModal`: never a slash option, which
Discord shows in the command log), verified against the hub, stored encrypted by the same vault
as servers' keys (`bot.keys`), and only ever shown masked. It is the member's across servers and
in DMs; a server may refuse to use it (`/config personal_keys deny`). Everything is ephemeral.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.logs import kv
from cogs import embeds, messages
from cogs.client import ImageHubBot
from cogs.forms import PersonalKeyModal

log = logging.getLogger(__name__)


@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
@app_commands.allowed_installs(guilds=True, users=True)
class MyKey(commands.GroupCog, group_name="mykey", group_description="Your own image hub key"):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="set", description="Store your own hub key (typed into a private form)")
    async def set_key(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(PersonalKeyModal(self.bot, messages.words(interaction.locale)))

    @app_commands.command(name="clear", description="Remove your own hub key")
    async def clear_key(self, interaction: discord.Interaction) -> None:
        w = messages.words(interaction.locale)
        removed = await self.bot.services.keys.clear_personal_key(interaction.user.id)
        log.info(kv("mykey.cleared", user=interaction.user.id, removed=removed))
        shown = w("mykey.removed" if removed else "mykey.none_to_remove")
        await interaction.response.send_message(embed=embeds.plain(shown, colour=embeds.OK), ephemeral=True)

    @app_commands.command(name="show", description="Show which key you stored (masked)")
    async def show_key(self, interaction: discord.Interaction) -> None:
        w = messages.words(interaction.locale)
        info = await self.bot.services.keys.personal_key_info(interaction.user.id)
        lines = [
            w("mykey.shown", masked=info.masked, when=embeds.ts(info.set_at)) if info else w("mykey.none")
        ]
        if info is not None and interaction.guild_id is not None:
            config = await self.bot.services.guilds.get(interaction.guild_id)
            if not config.personal_keys_allowed:
                lines.append(w("mykey.forbidden_here"))
        embed = embeds.plain("\n".join(lines), colour=embeds.INFO)
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(MyKey(bot))
