"""The delivery extension: owns the engine's `Publisher` and runs the engine while loaded.

Loaded last of the extensions (every command and button is registered by then) and unloaded
when the client closes, before it disconnects: the engine stops cleanly (steps under way finish
their writes, posts included) while Discord is still reachable.
"""

from __future__ import annotations

from discord.ext import commands

from cogs.client import ImageHubBot
from cogs.publisher import DiscordPublisher


class Delivery(commands.Cog):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot
        self.publisher = DiscordPublisher(bot, bot.services)

    async def cog_load(self) -> None:
        self.bot.services.engine.start(self.publisher)

    async def cog_unload(self) -> None:
        await self.bot.services.engine.stop()


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(Delivery(bot))
