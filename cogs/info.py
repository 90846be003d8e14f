"""/models, /credits and /quota: what members and moderators can look up (answered to them only,
in their own language)."""

from __future__ import annotations

from datetime import datetime

import discord
from discord import app_commands
from discord.ext import commands

from bot.hub import Credits
from cogs import embeds, messages
from cogs.checks import in_guild, may_look_at, member_roles, require_manage_server, where
from cogs.client import ImageHubBot
from cogs.errors import Denied


class Info(commands.Cog):
    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot

    @app_commands.command(name="models", description="The hub's image models, aspect ratios and credit costs")
    async def models(self, interaction: discord.Interaction) -> None:
        models = await self.bot.services.catalog.models()  # a HubError is told to the member
        await interaction.response.send_message(
            embed=embeds.models_embed(messages.words(interaction.locale), models), ephemeral=True
        )

    @app_commands.command(name="credits", description="Your own hub balance, or the server's (Manage Server)")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.describe(whose="Your own key's balance, or the server's (needs Manage Server)")
    @app_commands.choices(whose=[app_commands.Choice(name=v, value=v) for v in ("mine", "server")])
    async def credits(self, interaction: discord.Interaction, whose: str | None = None) -> None:
        """No option: the member's own balance when they have a key (no permission needed), else the
        server's. The server's balance always needs Manage Server."""
        w = messages.words(interaction.locale)
        services = self.bot.services
        if whose != "server":
            raw = await services.keys.get_personal_key(interaction.user.id)
            if raw is not None:
                await self._personal_balance(interaction, raw)
                return
            if whose == "mine" or where(interaction).personal:
                raise Denied("denied.credits_no_personal_key")
        require_manage_server(interaction)
        here = in_guild(interaction)
        hub = await services.hubs.for_guild(here.guild_id)
        if hub is None:
            raise Denied("denied.credits_no_key")
        await interaction.response.defer(ephemeral=True, thinking=True)
        balance = await hub.get_credits()  # a HubError is told (as a followup, after the defer)
        policy = await services.quotas.policies.policy(here.guild_id)
        start, _ = policy.bounds()
        spent = await services.quotas.reports.guild_spend(here.guild_id, since=start)
        embed = _balance_embed(w, w("balance.title"), balance)
        embed.add_field(
            name=w("balance.spent", period=embeds.this_period(w, policy.period)),
            value=w("balance.spent.value", count=spent),
            inline=False,
        )
        info = await services.keys.key_info(here.guild_id)
        embed.set_footer(text=w("balance.key", masked=info.masked) if info else w("balance.fallback_key"))
        await interaction.followup.send(embed=embeds.fit(embed), ephemeral=True)  # hub text: clamped

    async def _personal_balance(self, interaction: discord.Interaction, raw: str) -> None:
        """The balance of the member's own key (`/mykey`): theirs to see, no permission needed."""
        services = self.bot.services
        w = messages.words(interaction.locale)
        await interaction.response.defer(ephemeral=True, thinking=True)
        balance = await services.hubs.with_key(raw).get_credits()  # a HubError is told
        embed = _balance_embed(w, w("balance.title.personal"), balance)
        info = await services.keys.personal_key_info(interaction.user.id)
        if info is not None:
            embed.set_footer(text=w("balance.key.personal", masked=info.masked))
        await interaction.followup.send(embed=embeds.fit(embed), ephemeral=True)

    @app_commands.command(name="quota", description="What is left of your image budget")
    @app_commands.guild_only()
    @app_commands.describe(member="Another member (needs Manage Server)")
    async def quota(self, interaction: discord.Interaction, member: discord.Member | None = None) -> None:
        here = in_guild(interaction)
        may_look_at(interaction, member)
        w = messages.words(interaction.locale)
        target_id = member.id if member else interaction.user.id
        roles = tuple(r.id for r in member.roles) if member else member_roles(interaction)
        quotas = self.bot.services.quotas
        budget = await quotas.ledger.budget(here.guild_id, target_id, roles)
        who = embeds.user(target_id)
        period = embeds.this_period(w, budget.period)
        if budget.limit is None:
            description = w("quota.unlimited", user=who, period=period, count=budget.spent)
        else:
            used = budget.spent + budget.reserved
            bar = embeds.bar(used, budget.limit)
            usage = (
                w("quota.used.reserved", bar=bar, used=used, reserved=budget.reserved)
                if budget.reserved
                else w("quota.used", bar=bar, used=used)
            )
            description = "\n".join(
                [
                    w("quota.left", user=who, remaining=budget.remaining, count=budget.limit, period=period),
                    usage,
                    w("quota.resets", when=embeds.ts(budget.resets_at)),
                ]
            )
        embed = discord.Embed(title=w("quota.title"), description=description, colour=embeds.INFO)
        recent = await quotas.reports.recent(here.guild_id, target_id, 5)
        if recent:
            embed.add_field(
                name=w("field.recent"),
                value="\n".join(embeds.ledger_line(w, e.at, e.kind, e.credits) for e in recent if e.credits),
                inline=False,
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)


def _balance_embed(w: messages.Words, title: str, balance: Credits) -> discord.Embed:
    unknown = w("balance.unknown")
    embed = discord.Embed(title=title, colour=embeds.INFO)
    embed.add_field(
        name=w("field.credits"),
        value=w.number(balance.credits) if balance.credits is not None else unknown,
    )
    embed.add_field(name=w("field.account"), value=balance.account_type or unknown)
    embed.add_field(name=w("field.next_expiry"), value=_expiry(w, balance.next_expiration))
    return embed


def _expiry(w: messages.Words, when: str | None) -> str:
    """The hub's next credit expiry (an ISO date) as the member's language writes dates."""
    if not when:
        return w("balance.no_expiry")
    try:
        return w.full_date(datetime.fromisoformat(when.replace("Z", "+00:00")))
    except ValueError:
        return embeds.clip(when, 100)  # not a date: the hub's text, as it is


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(Info(bot))
