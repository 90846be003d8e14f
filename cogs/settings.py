"""/settings: a member's own defaults in this server (or in their own space: DMs, servers without
the bot), and where each value of their next /imagine comes from.

With options it stores them (checked against the hub's models, bounded like every input); `reset`
forgets one setting or all. Without options it shows the effective values, each with its origin
(your setting → the server's default → the model's default), computed by the same chain /imagine
uses (`bot.member_settings.resolve`). Everything here is ephemeral.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.hub.sizes import QUALITIES, TIERS
from bot.member_settings import (
    SETTING_NAMES,
    VISIBILITIES,
    Options,
    ServerDefaults,
    SettingInvalid,
    check_setting,
    resolve,
)
from cogs import embeds, messages
from cogs.checks import where
from cogs.client import ImageHubBot
from cogs.errors import Denied
from cogs.messages import echo


class Settings(commands.Cog):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description="Your own defaults for /imagine on this server")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.describe(
        model="Your default model",
        aspect="Your default aspect ratio, e.g. 1:1 or 16:9",
        resolution="Your default resolution tier",
        quality="Your default quality",
        count="Your default number of images (1-4)",
        visibility="Post your results in the channel, or only to you",
        reset="Forget one of your settings, or all of them",
    )
    @app_commands.choices(
        resolution=[app_commands.Choice(name=t, value=t) for t in TIERS],
        quality=[app_commands.Choice(name=q, value=q) for q in QUALITIES],
        visibility=[app_commands.Choice(name=v, value=v) for v in VISIBILITIES],
        reset=[app_commands.Choice(name=n, value=n) for n in ("all", *SETTING_NAMES)],
    )
    async def settings(
        self,
        interaction: discord.Interaction,
        model: app_commands.Range[str, 1, 100] | None = None,
        aspect: app_commands.Range[str, 1, 20] | None = None,
        resolution: str | None = None,
        quality: str | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
        visibility: str | None = None,
        reset: str | None = None,
    ) -> None:
        w = messages.words(interaction.locale)
        here = where(interaction)  # in a DM (or where only you installed the app): your own space
        services = self.bot.services
        given: dict[str, Any] = {
            name: value
            for name, value in (
                ("model", model),
                ("aspect", aspect),
                ("resolution", resolution),
                ("quality", quality),
                ("count", count),
                ("visibility", visibility),
            )
            if value is not None
        }
        if reset is not None and reset != "all" and reset not in SETTING_NAMES:
            raise Denied("denied.setting_invalid", name=w("settings.name.reset"), value=echo(reset))
        models = await services.catalog.models()  # a HubError is told to the member
        changes: dict[str, Any] = {}
        if reset == "all":
            changes = dict.fromkeys(SETTING_NAMES)
        elif reset is not None:
            changes[reset] = None
        for name, value in given.items():
            try:
                changes[name] = check_setting(name, value, models)
            except SettingInvalid:
                raise Denied(
                    "denied.setting_invalid", name=w(f"settings.name.{name}"), value=echo(str(value))
                ) from None
        if changes:
            mine = await services.members.update(here.scope, interaction.user.id, **changes)
        else:
            mine = await services.members.get(here.scope, interaction.user.id)
        config = await services.guilds.get(here.scope)
        server = ServerDefaults(
            model=config.default_model,
            aspect=config.default_aspect,
            resolution=config.default_resolution,
            quality=config.default_quality,
        )
        resolved = resolve(Options(), mine, server, models)
        embed = embeds.settings_embed(w, resolved, saved=bool(changes), reset=reset)
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(Settings(bot))
