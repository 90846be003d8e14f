"""The Discord client: intents, mentions, the extensions, the command sync, and one error path.

`ImageHubBot(services)` holds the core's `Services` (built by `bot.services`, the composition
root) for the extensions to use, and nothing else of its own: commands are the extensions'
(`EXTENSIONS`, loaded by name), the engine's publisher is the delivery extension's, every
command's errors go to `cogs.errors`, and commands are registered with their names and
descriptions in every catalog language (`cogs.translator`).
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.logs import kv
from bot.services import Services
from cogs.errors import on_app_command_error
from cogs.translator import CatalogTranslator

log = logging.getLogger(__name__)

# Loaded in this order; `cogs.delivery` last: it starts the engine once everything is registered.
EXTENSIONS = (
    "cogs.imagine",
    "cogs.buttons",
    "cogs.info",
    "cogs.settings",
    "cogs.mykey",
    "cogs.admin",
    "cogs.history",
    "cogs.delivery",
)


class ImageHubBot(commands.AutoShardedBot):
    """See the module docstring."""

    def __init__(self, services: Services, **options: object) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            **options,  # type: ignore[arg-type]
        )
        self.services = services
        self.translator = CatalogTranslator()
        self.tree.error(on_app_command_error)

    async def setup_hook(self) -> None:
        await self.tree.set_translator(self.translator)
        for name in EXTENSIONS:
            await self.load_extension(name)
        self._fit_installs()
        guild_id = self.services.settings.dev_guild_id
        if guild_id is not None:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()  # a refused sync raises: `cogs.runner` says so in one line

    def _fit_installs(self) -> None:
        """Commands meant for user installs too (`/imagine` in DMs and in servers without the bot)
        are declared so only when the application supports user installs (Developer Portal →
        Installation): Discord refuses the whole command sync otherwise. Without it they stay
        server installs, which still work in DMs with the bot."""
        app = self.application
        if app is None or app.user_integration_config is not None:
            return
        narrowed = []
        for command in self.tree.get_commands():
            installs = command.allowed_installs
            if installs is not None and installs.user:
                command.allowed_installs = app_commands.AppInstallationType(guild=True, user=False)
                narrowed.append(command.name)
        if narrowed:
            log.warning(kv("commands.user_install_off", commands=",".join(sorted(narrowed))))

    async def close(self) -> None:
        await super().close()  # extensions first (the engine stops), then the gateway
        await self.services.close()
