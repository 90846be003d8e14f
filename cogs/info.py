"""/models, /credits and /quota: what members and moderators can look up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.hub import HubError
from cogs import render
from cogs.imagine import member_roles, server_permissions

if TYPE_CHECKING:
    from bot.client import ImageHubBot


async def require_manage_guild(interaction: discord.Interaction) -> bool:
    """Our own Manage Server check: Discord's defaults can be changed by a server's admins.
    Server-wide permissions only (no channel overwrite can grant it)."""
    perms = server_permissions(interaction)
    if perms.manage_guild or perms.administrator:
        return True
    await interaction.response.send_message(
        embed=render.refusal("You need the Manage Server permission for this."), ephemeral=True
    )
    return False


async def may_look_at(interaction: discord.Interaction, member: discord.Member | None) -> bool:
    """Anyone may look at themselves; looking at another member needs Manage Server."""
    if member is None or member.id == interaction.user.id:
        return True
    return await require_manage_guild(interaction)


class Info(commands.Cog):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot

    @app_commands.command(name="models", description="The hub's image models, aspect ratios and credit costs")
    async def models(self, interaction: discord.Interaction) -> None:
        try:
            models = await self.bot.services.catalog.models()
        except HubError as exc:
            await interaction.response.send_message(
                embed=render.refusal(render.hub_error_text(exc)), ephemeral=True
            )
            return
        await interaction.response.send_message(embed=render.models_embed(models), ephemeral=True)

    @app_commands.command(name="credits", description="The server's image hub balance")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    async def credits(self, interaction: discord.Interaction) -> None:
        if not await require_manage_guild(interaction):
            return
        assert interaction.guild_id is not None
        services = self.bot.services
        hub = await services.hubs.for_guild(interaction.guild_id)
        if hub is None:
            await interaction.response.send_message(
                embed=render.refusal("This server has no image hub key yet. Set one with `/config key set`."),
                ephemeral=True,
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            balance = await hub.get_credits()
        except HubError as exc:
            await interaction.followup.send(embed=render.refusal(render.hub_error_text(exc)), ephemeral=True)
            return
        policy = await services.quotas.policies.policy(interaction.guild_id)
        start, _ = policy.bounds()
        spent = await services.quotas.reports.guild_spend(interaction.guild_id, since=start)
        embed = discord.Embed(title="Image hub balance", colour=render.INFO)
        embed.add_field(
            name="Credits", value=f"{balance.credits:,}" if balance.credits is not None else "unknown"
        )
        embed.add_field(name="Account", value=balance.account_type or "unknown")
        embed.add_field(name="Next expiry", value=balance.next_expiration or "none")
        embed.add_field(
            name=f"Spent by members {render.this_period(policy.period)}",
            value=f"{spent:,} credits",
            inline=False,
        )
        info = await services.keys.key_info(interaction.guild_id)
        embed.set_footer(text=f"key {info.masked}" if info else "using the operator's fallback key")
        await interaction.followup.send(embed=render.fit(embed), ephemeral=True)  # hub text: clamped

    @app_commands.command(name="quota", description="What is left of your image budget")
    @app_commands.guild_only()
    @app_commands.describe(member="Another member (needs Manage Server)")
    async def quota(self, interaction: discord.Interaction, member: discord.Member | None = None) -> None:
        assert interaction.guild_id is not None
        if not await may_look_at(interaction, member):
            return
        target_id = member.id if member else interaction.user.id
        roles = tuple(r.id for r in member.roles) if member else member_roles(interaction)
        quotas = self.bot.services.quotas
        budget = await quotas.ledger.budget(interaction.guild_id, target_id, roles)
        who = f"<@{target_id}>"
        if budget.limit is None:
            period = render.this_period(budget.period)
            text = f"{who} has no credit limit here. Used {period}: {budget.spent:,} credits."
            embed = discord.Embed(title="Image budget", description=text, colour=render.INFO)
        else:
            used = budget.spent + budget.reserved
            text = (
                f"{who}: **{budget.remaining:,}** of {budget.limit:,} credits left "
                f"{render.this_period(budget.period)}\n"
                f"`{render.bar(used, budget.limit)}` {used:,} used"
                + (f" ({budget.reserved:,} reserved for running jobs)" if budget.reserved else "")
                + f"\nResets {render.ts(budget.resets_at)}"
            )
            embed = discord.Embed(title="Image budget", description=text, colour=render.INFO)
        recent = await quotas.reports.recent(interaction.guild_id, target_id, 5)
        if recent:
            embed.add_field(
                name="Recent",
                value="\n".join(render.ledger_line(e.at, e.kind, e.credits) for e in recent if e.credits),
                inline=False,
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(Info(bot))
