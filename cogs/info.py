"""/models, /credits and /quota: what members and moderators can look up."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from cogs import embeds
from cogs.checks import in_guild, manage_server, may_look_at, member_roles
from cogs.client import ImageHubBot
from cogs.errors import Denied
from cogs.messages import text


class Info(commands.Cog):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot

    @app_commands.command(name="models", description="The hub's image models, aspect ratios and credit costs")
    async def models(self, interaction: discord.Interaction) -> None:
        models = await self.bot.services.catalog.models()  # a HubError is told to the member
        await interaction.response.send_message(embed=embeds.models_embed(models), ephemeral=True)

    @app_commands.command(name="credits", description="The server's image hub balance")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @manage_server()
    async def credits(self, interaction: discord.Interaction) -> None:
        here = in_guild(interaction)
        services = self.bot.services
        hub = await services.hubs.for_guild(here.guild_id)
        if hub is None:
            raise Denied("denied.credits_no_key")
        await interaction.response.defer(ephemeral=True, thinking=True)
        balance = await hub.get_credits()  # a HubError is told (as a followup, after the defer)
        policy = await services.quotas.policies.policy(here.guild_id)
        start, _ = policy.bounds()
        spent = await services.quotas.reports.guild_spend(here.guild_id, since=start)
        unknown = text("balance.unknown")
        embed = discord.Embed(title=text("balance.title"), colour=embeds.INFO)
        embed.add_field(
            name=text("field.credits"),
            value=f"{balance.credits:,}" if balance.credits is not None else unknown,
        )
        embed.add_field(name=text("field.account"), value=balance.account_type or unknown)
        embed.add_field(
            name=text("field.next_expiry"), value=balance.next_expiration or text("balance.no_expiry")
        )
        embed.add_field(
            name=text("balance.spent", period=embeds.this_period(policy.period)),
            value=text("balance.spent.value", credits=spent),
            inline=False,
        )
        info = await services.keys.key_info(here.guild_id)
        embed.set_footer(
            text=text("balance.key", masked=info.masked) if info else text("balance.fallback_key")
        )
        await interaction.followup.send(embed=embeds.fit(embed), ephemeral=True)  # hub text: clamped

    @app_commands.command(name="quota", description="What is left of your image budget")
    @app_commands.guild_only()
    @app_commands.describe(member="Another member (needs Manage Server)")
    async def quota(self, interaction: discord.Interaction, member: discord.Member | None = None) -> None:
        here = in_guild(interaction)
        may_look_at(interaction, member)
        target_id = member.id if member else interaction.user.id
        roles = tuple(r.id for r in member.roles) if member else member_roles(interaction)
        quotas = self.bot.services.quotas
        budget = await quotas.ledger.budget(here.guild_id, target_id, roles)
        who = embeds.user(target_id)
        period = embeds.this_period(budget.period)
        if budget.limit is None:
            description = text("quota.unlimited", user=who, period=period, spent=budget.spent)
        else:
            used = budget.spent + budget.reserved
            bar = embeds.bar(used, budget.limit)
            usage = (
                text("quota.used.reserved", bar=bar, used=used, reserved=budget.reserved)
                if budget.reserved
                else text("quota.used", bar=bar, used=used)
            )
            description = "\n".join(
                [
                    text(
                        "quota.left", user=who, remaining=budget.remaining, limit=budget.limit, period=period
                    ),
                    usage,
                    text("quota.resets", when=embeds.ts(budget.resets_at)),
                ]
            )
        embed = discord.Embed(title=text("quota.title"), description=description, colour=embeds.INFO)
        recent = await quotas.reports.recent(here.guild_id, target_id, 5)
        if recent:
            embed.add_field(
                name=text("field.recent"),
                value="\n".join(embeds.ledger_line(e.at, e.kind, e.credits) for e in recent if e.credits),
                inline=False,
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(Info(bot))
