"""/config: a server's hub key, quotas, channels and defaults. Manage Server only, all ephemeral.

The key is typed into a modal (never a slash option, which Discord shows in the channel's
command log), verified against the hub, stored encrypted, and only ever shown masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.charts import usage_chart
from bot.filters import check_pattern, check_patterns, check_word, usable_patterns
from bot.hub import HubError, InvalidApiKey, MissingApiKey
from bot.hub.sizes import QUALITIES, TIERS
from bot.logs import kv
from bot.quotas import Period
from cogs import render
from cogs.info import require_manage_guild

if TYPE_CHECKING:
    from bot.client import ImageHubBot

log = logging.getLogger(__name__)

PERIODS = [app_commands.Choice(name=p.value, value=p.value) for p in Period]
FILTER_KINDS = [app_commands.Choice(name=k, value=k) for k in ("word", "regex")]


async def _reply(interaction: discord.Interaction, text: str, *, ok: bool = True) -> None:
    embed = render.plain(text, colour=render.OK) if ok else render.refusal(text)
    if interaction.response.is_done():
        await interaction.followup.send(embed=embed, ephemeral=True)
    else:
        await interaction.response.send_message(embed=embed, ephemeral=True)


class KeyModal(discord.ui.Modal, title="Set the image hub key"):
    # A Label (type 18) holding the text input: the current modal layout, not an action row.
    key: discord.ui.Label[KeyModal] = discord.ui.Label(
        text="API key (gih_live_…)",
        component=discord.ui.TextInput(placeholder="gih_live_…", min_length=8, max_length=200),
    )

    def __init__(self, bot: ImageHubBot) -> None:
        super().__init__(timeout=bot.services.timings.key_form_timeout)
        self.bot = bot

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        if not await require_manage_guild(interaction):
            return
        field = self.key.component
        assert isinstance(field, discord.ui.TextInput)
        raw = field.value.strip()
        services = self.bot.services
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            balance = await services.hubs.with_key(raw).get_credits()
        except (InvalidApiKey, MissingApiKey):
            await _reply(interaction, "The hub doesn't recognise that key. Nothing was saved.", ok=False)
            return
        except HubError as exc:
            await _reply(interaction, f"{render.hub_error_text(exc)} Nothing was saved.", ok=False)
            return
        await services.keys.set_key(interaction.guild_id, raw, interaction.user.id)
        info = await services.keys.key_info(interaction.guild_id)
        log.info(kv("config.key_set", guild=interaction.guild_id, user=interaction.user.id))
        masked = info.masked if info else "saved"
        await _reply(interaction, f"Key `{masked}` saved. The hub reports {balance.credits:,} credits.")


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Config(
    commands.GroupCog, group_name="config", group_description="Server settings for image generation"
):
    key = app_commands.Group(name="key", description="The server's image hub key")
    quota = app_commands.Group(name="quota", description="Members' credit budgets")
    filter = app_commands.Group(name="filter", description="Prompt filters: blocked words and patterns")

    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await require_manage_guild(interaction)

    # -- key -----------------------------------------------------------------------------------

    @key.command(name="set", description="Set the hub key (typed into a private form)")
    async def key_set(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(KeyModal(self.bot))

    @key.command(name="clear", description="Remove the server's hub key")
    async def key_clear(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        removed = await self.bot.services.keys.clear_key(interaction.guild_id)
        log.info(kv("config.key_cleared", guild=interaction.guild_id, user=interaction.user.id))
        await _reply(interaction, "Key removed." if removed else "This server had no key.")

    @key.command(name="show", description="Show which key is set (masked)")
    async def key_show(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        info = await self.bot.services.keys.key_info(interaction.guild_id)
        if info is None:
            fallback = self.bot.services.settings.hub_api_key is not None
            text = "No key is set." + (" The operator's fallback key is used." if fallback else "")
        else:
            text = f"Key `{info.masked}`, set by <@{info.set_by}> {render.ts(info.set_at)}."
        await _reply(interaction, text)

    # -- quota ---------------------------------------------------------------------------------

    @quota.command(name="default", description="Every member's budget per period (empty = unlimited)")
    @app_commands.choices(period=PERIODS)
    async def quota_default(
        self,
        interaction: discord.Interaction,
        credits: app_commands.Range[int, 0, 10_000_000] | None = None,
        period: str = "day",
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.quotas.policies.set_default(interaction.guild_id, credits, Period(period))
        text = "unlimited" if credits is None else f"{credits:,} credits per {period}"
        await _reply(interaction, f"Default budget: {text}.")

    @quota.command(name="role", description="A role's budget (the most generous role wins; empty removes)")
    async def quota_role(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        credits: app_commands.Range[int, 0, 10_000_000] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.quotas.policies.set_role(interaction.guild_id, role.id, credits)
        text = "removed" if credits is None else f"{credits:,} credits per period"
        await _reply(interaction, f"Budget for {role.mention}: {text}.")

    @quota.command(name="user", description="One member's budget (wins over roles; empty removes)")
    async def quota_user(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        credits: app_commands.Range[int, 0, 10_000_000] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.quotas.policies.set_member(interaction.guild_id, member.id, credits)
        text = "removed" if credits is None else f"{credits:,} credits per period"
        await _reply(interaction, f"Budget for {member.mention}: {text}.")

    @quota.command(name="exempt", description="Members with this role have no limit")
    async def quota_exempt(
        self, interaction: discord.Interaction, role: discord.Role, exempt: bool = True
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.quotas.policies.set_exempt(interaction.guild_id, role.id, exempt)
        await _reply(
            interaction, f"{role.mention} is {'now' if exempt else 'no longer'} exempt from budgets."
        )

    @quota.command(name="show", description="The server's budget rules")
    async def quota_show(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        policy = await self.bot.services.quotas.policies.policy(interaction.guild_id)
        lines = [
            f"**Default**: {'unlimited' if policy.default is None else f'{policy.default:,}'} "
            f"credits per {policy.period}"
        ]
        lines += [f"<@&{role}>: {credits:,}" for role, credits in sorted(policy.roles.items())]
        lines += [f"<@{user}>: {credits:,}" for user, credits in sorted(policy.members.items())]
        if policy.exempt_roles:  # kept above the overrides, which may be cut short
            exempt = ", ".join(f"<@&{r}>" for r in sorted(policy.exempt_roles))
            lines.insert(1, render.clip(f"**Exempt**: {exempt}", 1000))
        await _reply(interaction, render.capped_lines(lines, render.DESCRIPTION_MAX))

    # -- channels, defaults, limits, usage -----------------------------------------------------

    @app_commands.command(name="channels", description="Where /imagine may be used (an allow-list)")
    @app_commands.choices(
        action=[app_commands.Choice(name=a, value=a) for a in ("add", "remove", "clear", "show")]
    )
    async def channels(
        self, interaction: discord.Interaction, action: str, channel: discord.TextChannel | None = None
    ) -> None:
        assert interaction.guild_id is not None
        store = self.bot.services.guilds
        current = list((await store.get(interaction.guild_id)).allowed_channel_ids)
        if action in ("add", "remove") and channel is None:
            await _reply(interaction, "Pick a channel to add or remove.", ok=False)
            return
        if action == "add" and channel is not None and channel.id not in current:
            current.append(channel.id)
        elif action == "remove" and channel is not None and channel.id in current:
            current.remove(channel.id)
        elif action == "clear":
            current = []
        if action != "show":
            await store.set_channels(interaction.guild_id, current)
        text = ", ".join(f"<#{c}>" for c in current) if current else "every channel"
        await _reply(interaction, f"/imagine works in: {text}.")

    @app_commands.command(name="defaults", description="Default model, aspect, resolution and quality")
    @app_commands.choices(
        resolution=[app_commands.Choice(name=t, value=t) for t in TIERS],
        quality=[app_commands.Choice(name=q, value=q) for q in QUALITIES],
    )
    async def defaults(
        self,
        interaction: discord.Interaction,
        model: str | None = None,
        aspect: str | None = None,
        resolution: str | None = None,
        quality: str | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        services = self.bot.services
        config = await services.guilds.get(interaction.guild_id)
        try:
            found = await services.catalog.find(model or config.default_model)
        except HubError as exc:
            await _reply(interaction, render.hub_error_text(exc), ok=False)
            return
        if found is None:
            await _reply(interaction, f"There is no model called `{model}`. See /models.", ok=False)
            return
        if aspect is not None and aspect not in found.aspect_ratios:
            await _reply(interaction, f"`{found.id}` doesn't support the aspect `{aspect}`.", ok=False)
            return
        changes: dict[str, str] = {}
        if model is not None:
            changes["default_model"] = found.id
        if aspect is not None:
            changes["default_aspect"] = aspect
        if resolution is not None:
            changes["default_resolution"] = resolution
        if quality is not None:
            changes["default_quality"] = quality
        config = await services.guilds.update(interaction.guild_id, **changes) if changes else config
        await _reply(
            interaction,
            f"Defaults: `{config.default_model}` · {config.default_aspect} · {config.default_resolution} · "
            f"quality {config.default_quality}.",
        )

    @app_commands.command(
        name="limits", description="Generations running at once, and waiting in the queue, per member/server"
    )
    @app_commands.describe(
        per_member="Generations one member may have running at once",
        per_server="Generations the server may have running at once",
        queue_per_member="Generations one member may have waiting in the queue",
        queue_per_server="Generations the server may have waiting in the queue",
    )
    async def limits(
        self,
        interaction: discord.Interaction,
        per_member: app_commands.Range[int, 1, 50] | None = None,
        per_server: app_commands.Range[int, 1, 500] | None = None,
        queue_per_member: app_commands.Range[int, 1, 100] | None = None,
        queue_per_server: app_commands.Range[int, 1, 1000] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        changes: dict[str, int] = {}
        if per_member is not None:
            changes["max_concurrent_per_member"] = per_member
        if per_server is not None:
            changes["max_concurrent_per_guild"] = per_server
        if queue_per_member is not None:
            changes["max_queued_per_member"] = queue_per_member
        if queue_per_server is not None:
            changes["max_queued_per_guild"] = queue_per_server
        store = self.bot.services.guilds
        config = (
            await store.update(interaction.guild_id, **changes)
            if changes
            else await store.get(interaction.guild_id)
        )
        await _reply(
            interaction,
            f"At most {config.max_concurrent_per_member} running per member, "
            f"{config.max_concurrent_per_guild} per server. "
            f"Past that, requests wait in a queue: at most {config.max_queued_per_member} per member, "
            f"{config.max_queued_per_guild} per server.",
        )
        if changes:
            self.bot.services.engine.wake()  # higher limits may let queued jobs start

    @app_commands.command(name="modlog", description="Where moderators are told about problems (empty = off)")
    async def modlog(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        assert interaction.guild_id is not None
        await self.bot.services.guilds.update(
            interaction.guild_id, mod_log_channel_id=channel.id if channel else None
        )
        await _reply(interaction, f"Moderator log: {channel.mention if channel else 'off'}.")

    @app_commands.command(name="usage", description="Credits spent per day and the top members, with a chart")
    @app_commands.describe(days="How many days the chart covers (default 30)")
    async def usage(
        self, interaction: discord.Interaction, days: app_commands.Range[int, 1, 90] = 30
    ) -> None:
        assert interaction.guild_id is not None
        guild_id = interaction.guild_id
        await interaction.response.defer(ephemeral=True, thinking=True)
        quotas = self.bot.services.quotas
        policy = await quotas.policies.policy(guild_id)
        top = await quotas.reports.top_members(guild_id, 10)
        start, _ = policy.bounds()
        spent = await quotas.reports.guild_spend(guild_id, since=start)
        daily = await quotas.reports.daily_spend(guild_id, days)
        names = [(await self._member_name(interaction, user), credits) for user, credits in top]
        filename = "usage.png"
        try:
            png = await asyncio.to_thread(
                usage_chart, daily, names, top_title=f"Top members this {policy.period}"
            )
        except Exception:
            log.exception(kv("config.usage_chart_failed", guild=guild_id))
            png = None
        embed = render.usage_embed(
            period=policy.period,
            period_spent=spent,
            days=days,
            days_spent=sum(credits for _, credits in daily),
            top=top,
            chart_filename=filename if png else None,
        )
        if png is None:
            await interaction.followup.send(embed=embed, ephemeral=True)
        else:
            chart = discord.File(io.BytesIO(png), filename=filename)
            await interaction.followup.send(embed=embed, file=chart, ephemeral=True)

    async def _member_name(self, interaction: discord.Interaction, user_id: int) -> str:
        guild = interaction.guild
        member = guild.get_member(user_id) if guild is not None else None
        if member is None and guild is not None:
            with contextlib.suppress(discord.HTTPException):
                member = await guild.fetch_member(user_id)
        return member.display_name if member is not None else str(user_id)

    @app_commands.command(name="alerts", description="Warn the moderator log when the hub balance runs low")
    @app_commands.describe(low_balance="Alert below this many credits (0 turns the alert off)")
    async def alerts(
        self,
        interaction: discord.Interaction,
        low_balance: app_commands.Range[int, 0, 1_000_000_000] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        store = self.bot.services.guilds
        if low_balance is not None:
            threshold = low_balance or None
            config = await store.update(
                interaction.guild_id, low_balance_threshold=threshold, low_balance_alerted=False
            )
        else:
            config = await store.get(interaction.guild_id)
        if config.low_balance_threshold is None:
            text = "Low balance alert: off."
        else:
            text = f"Low balance alert below {config.low_balance_threshold:,} credits."
            if config.mod_log_channel_id is None:
                text += " Set a moderator log channel with `/config modlog` to receive it."
            else:
                text += f" It goes to <#{config.mod_log_channel_id}>."
        await _reply(interaction, text)

    # -- prompt filters ------------------------------------------------------------------------

    @filter.command(name="add", description="Block prompts with a word or matching a regular expression")
    @app_commands.describe(kind="A whole word, or an RE2 regular expression", value="The word or the pattern")
    @app_commands.choices(kind=FILTER_KINDS)
    async def filter_add(
        self, interaction: discord.Interaction, kind: str, value: app_commands.Range[str, 1, 300]
    ) -> None:
        assert interaction.guild_id is not None
        store = self.bot.services.guilds
        config = await store.get(interaction.guild_id)
        dropped: list[str] = []
        try:
            if kind == "word":
                word = check_word(value)
                if word not in config.blocked_words:
                    await store.update(interaction.guild_id, blocked_words=[*config.blocked_words, word])
            else:
                pattern = check_pattern(value)
                kept, dropped = usable_patterns(config.blocked_patterns)
                if pattern not in kept:
                    patterns = [*kept, pattern]
                    check_patterns(patterns)  # the count and the server's total cost
                    await store.update(interaction.guild_id, blocked_patterns=patterns)
                elif dropped:
                    await store.update(interaction.guild_id, blocked_patterns=kept)
        except ValueError as exc:  # FilterError, or the settings' own caps
            await _reply(interaction, str(exc), ok=False)
            return
        log.info(kv("config.filter_added", guild=interaction.guild_id, user=interaction.user.id, kind=kind))
        note = render.dropped_patterns_note(dropped) if kind != "word" else ""
        await _reply(interaction, f"Prompts matching that {kind} are now blocked.{note}")

    @filter.command(name="remove", description="Stop blocking a word or a regular expression")
    @app_commands.choices(kind=FILTER_KINDS)
    async def filter_remove(
        self, interaction: discord.Interaction, kind: str, value: app_commands.Range[str, 1, 300]
    ) -> None:
        assert interaction.guild_id is not None
        store = self.bot.services.guilds
        config = await store.get(interaction.guild_id)
        value = value.strip()
        current = config.blocked_words if kind == "word" else config.blocked_patterns
        if value not in current:
            await _reply(interaction, f"That {kind} isn't in this server's filters.", ok=False)
            return
        remaining = [item for item in current if item != value]
        note = ""
        if kind == "word":
            await store.update(interaction.guild_id, blocked_words=remaining)
        else:
            # Patterns stored before the cost bounds, which no longer apply, go too (and are named).
            remaining, dropped = usable_patterns(remaining)
            await store.update(interaction.guild_id, blocked_patterns=remaining)
            note = render.dropped_patterns_note(dropped)
        await _reply(interaction, f"That {kind} is no longer blocked.{note}")

    @filter.command(name="list", description="The server's blocked words and regular expressions")
    async def filter_list(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        config = await self.bot.services.guilds.get(interaction.guild_id)
        _, ignored = usable_patterns(config.blocked_patterns)
        embed = render.filters_embed(config.blocked_words, config.blocked_patterns, ignored)
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(Config(bot))
