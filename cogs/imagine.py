"""/imagine and the "Imagine with these images" context menu; both end in `cogs.launch.launch`."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.hub import HubError, HubModel
from bot.hub.sizes import QUALITIES, TIERS
from bot.imagine import ImagineRequest
from cogs import embeds, messages
from cogs.checks import in_guild, is_moderator, member_roles, where
from cogs.client import ImageHubBot
from cogs.errors import Denied
from cogs.forms import ImagineModal
from cogs.launch import image_attachments, launch, to_attachment


class Imagine(commands.Cog):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot
        self.context_menu = app_commands.ContextMenu(
            name="Imagine with these images", callback=self.from_message
        )
        # Guild only, declared with `contexts` (dm_permission is deprecated; discord.py still sends it).
        self.context_menu.guild_only = True
        self.context_menu.allowed_contexts = app_commands.AppCommandContext(
            guild=True, dm_channel=False, private_channel=False
        )
        bot.tree.add_command(self.context_menu)

    async def cog_load(self) -> None:
        self.bot.services.catalog.warm()  # fetch the model list in the background before anyone asks

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.context_menu.name, type=self.context_menu.type)

    @app_commands.command(name="imagine", description="Generate images from a prompt")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.describe(
        prompt="What to draw",
        model="Image model (default: the server's)",
        aspect="Aspect ratio, e.g. 1:1 or 16:9",
        resolution="Output resolution tier",
        quality="Rendering quality",
        count="How many images (1-4)",
        reference1="A reference image (PNG, JPEG or WebP)",
        reference2="Another reference image",
        reference3="Another reference image",
        reference4="Another reference image",
    )
    @app_commands.choices(
        resolution=[app_commands.Choice(name=t, value=t) for t in TIERS],
        quality=[app_commands.Choice(name=q, value=q) for q in QUALITIES],
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: str,
        model: str | None = None,
        aspect: str | None = None,
        resolution: str | None = None,
        quality: str | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
        reference1: discord.Attachment | None = None,
        reference2: discord.Attachment | None = None,
        reference3: discord.Attachment | None = None,
        reference4: discord.Attachment | None = None,
    ) -> None:
        here = where(interaction)  # a server, or the member's own space (a DM, a server without the bot)
        refs = tuple(
            to_attachment(a) for a in (reference1, reference2, reference3, reference4) if a is not None
        )
        request = ImagineRequest(
            guild_id=here.scope,
            channel_id=here.channel_id,
            user_id=interaction.user.id,
            role_ids=() if here.personal else member_roles(interaction),
            prompt=prompt,
            model=model,
            aspect=aspect,
            resolution=resolution,
            quality=quality,
            count=count,
            attachments=refs,
            is_moderator=not here.personal and is_moderator(interaction),
        )
        await launch(self.bot, interaction, request)

    @imagine.autocomplete("model")
    async def _model_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        models = await self._models_for_autocomplete()
        return [
            app_commands.Choice(name=embeds.choice_name(f"{m.id} ({m.provider})"), value=m.id)
            for m in models
            if current.lower() in m.id.lower() and len(m.id) <= embeds.CHOICE_MAX
        ][:25]

    @imagine.autocomplete("aspect")
    async def _aspect_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        models = await self._models_for_autocomplete()
        chosen = getattr(interaction.namespace, "model", None)
        model = next((m for m in models if m.id == chosen), models[0] if models else None)
        ratios = model.aspect_ratios if model else []
        return [
            app_commands.Choice(name=embeds.choice_name(r), value=r)
            for r in ratios
            if current in r and len(r) <= embeds.CHOICE_MAX
        ][:25]

    async def _models_for_autocomplete(self) -> list[HubModel]:
        """Autocomplete must answer fast: what is cached, or nothing if the hub is down."""
        catalog = self.bot.services.catalog
        if catalog.cached():
            return catalog.cached()
        try:
            return await catalog.models()
        except HubError:
            return []

    async def from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Context menu: the message's images become references, a form asks for the prompt."""
        here = in_guild(interaction)
        refs = image_attachments(message)
        if not refs:
            raise Denied("denied.message_has_no_images")
        config = await self.bot.services.guilds.get(here.guild_id)
        model = await self.bot.services.catalog.find(config.default_model)  # a HubError is told
        limit = model.reference_image_limit if model else len(refs)
        if limit < 1:
            raise Denied("denied.model_takes_no_references", model=config.default_model)
        await interaction.response.send_modal(
            ImagineModal(self.bot, messages.words(interaction.locale), refs[:limit])
        )


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(Imagine(bot))
