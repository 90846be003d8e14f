"""/config: a server's hub key, quotas, channels, defaults and language. Manage Server only, all
ephemeral (so in the moderator's own language).

The key is typed into a form (`cogs.forms.KeyModal`: never a slash option, which Discord shows
in the channel's command log), verified against the hub, stored encrypted, and only ever shown
masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.charts import ChartLabels, usage_chart
from bot.filters import check_pattern, check_patterns, check_word, check_words, usable_patterns
from bot.hub.sizes import QUALITIES, TIERS
from bot.logs import kv
from bot.quotas import Period
from cogs import embeds, messages
from cogs.checks import in_guild, require_manage_server
from cogs.client import ImageHubBot
from cogs.errors import Denied
from cogs.forms import KeyModal
from cogs.messages import Words, channel_list

log = logging.getLogger(__name__)

PERIODS = [app_commands.Choice(name=p.value, value=p.value) for p in Period]
FILTER_KINDS = [app_commands.Choice(name=k, value=k) for k in ("word", "regex")]
# `/config language`: the names are each language's own (Discord shows the localized ones in `vi`).
LANGUAGE_CHOICES = [
    app_commands.Choice(name="auto", value="auto"),
    app_commands.Choice(name="English", value="en"),
    app_commands.Choice(name="Tiếng Việt", value="vi"),
]


async def _done(interaction: discord.Interaction, message: str) -> None:
    """The change is made: say so, only to the moderator."""
    embed = embeds.plain(message, colour=embeds.OK)
    if interaction.response.is_done():
        await interaction.followup.send(embed=embed, ephemeral=True)
    else:
        await interaction.response.send_message(embed=embed, ephemeral=True)


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
        require_manage_server(interaction)  # every /config command: the bot checks, not only Discord
        return True

    # -- key -----------------------------------------------------------------------------------

    @key.command(name="set", description="Set the hub key (typed into a private form)")
    async def key_set(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(KeyModal(self.bot, messages.words(interaction.locale)))

    @key.command(name="clear", description="Remove the server's hub key")
    async def key_clear(self, interaction: discord.Interaction) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        removed = await self.bot.services.keys.clear_key(here.guild_id)
        log.info(kv("config.key_cleared", guild=here.guild_id, user=interaction.user.id))
        await _done(interaction, w("config.key_removed" if removed else "config.key_none_to_remove"))

    @key.command(name="show", description="Show which key is set (masked)")
    async def key_show(self, interaction: discord.Interaction) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        info = await self.bot.services.keys.key_info(here.guild_id)
        if info is None:
            fallback = self.bot.services.settings.hub_api_key is not None
            shown = w("config.key_none.fallback" if fallback else "config.key_none")
        else:
            shown = w(
                "config.key_set_by",
                masked=info.masked,
                user=embeds.user(info.set_by),
                when=embeds.ts(info.set_at),
            )
        await _done(interaction, shown)

    # -- quota ---------------------------------------------------------------------------------

    @quota.command(name="default", description="Every member's budget per period (empty = unlimited)")
    @app_commands.describe(
        credits="Credits per member per period (leave empty for unlimited)", period="How often budgets reset"
    )
    @app_commands.choices(period=PERIODS)
    async def quota_default(
        self,
        interaction: discord.Interaction,
        credits: app_commands.Range[int, 0, 10_000_000] | None = None,
        period: str = "day",
    ) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        await self.bot.services.quotas.policies.set_default(here.guild_id, credits, Period(period))
        if credits is None:
            await _done(interaction, w("config.default_budget.unlimited"))
        else:
            name = w(f"period.{Period(period).value}")
            await _done(interaction, w("config.default_budget", count=credits, period=name))

    @quota.command(name="role", description="A role's budget (the most generous role wins; empty removes)")
    @app_commands.describe(role="The role", credits="Credits per period (leave empty to remove the budget)")
    async def quota_role(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        credits: app_commands.Range[int, 0, 10_000_000] | None = None,
    ) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        await self.bot.services.quotas.policies.set_role(here.guild_id, role.id, credits)
        await _done(interaction, _budget(w, role.mention, credits))

    @quota.command(name="user", description="One member's budget (wins over roles; empty removes)")
    @app_commands.describe(
        member="The member", credits="Credits per period (leave empty to remove the budget)"
    )
    async def quota_user(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        credits: app_commands.Range[int, 0, 10_000_000] | None = None,
    ) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        await self.bot.services.quotas.policies.set_member(here.guild_id, member.id, credits)
        await _done(interaction, _budget(w, member.mention, credits))

    @quota.command(name="exempt", description="Members with this role have no limit")
    @app_commands.describe(role="The role", exempt="Exempt (true) or not any more (false)")
    async def quota_exempt(
        self, interaction: discord.Interaction, role: discord.Role, exempt: bool = True
    ) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        await self.bot.services.quotas.policies.set_exempt(here.guild_id, role.id, exempt)
        await _done(interaction, w("config.exempt" if exempt else "config.not_exempt", role=role.mention))

    @quota.command(name="show", description="The server's budget rules")
    async def quota_show(self, interaction: discord.Interaction) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        policy = await self.bot.services.quotas.policies.policy(here.guild_id)
        period = w(f"period.{policy.period.value}")
        if policy.default is None:
            lines = [w("config.rules.default.unlimited", period=period)]
        else:
            lines = [w("config.rules.default", count=policy.default, period=period)]
        lines += [
            w("config.rules.entry", who=embeds.role(role), credits=credits)
            for role, credits in sorted(policy.roles.items())
        ]
        lines += [
            w("config.rules.entry", who=embeds.user(user), credits=credits)
            for user, credits in sorted(policy.members.items())
        ]
        if policy.exempt_roles:  # kept above the overrides, which may be cut short
            exempt = ", ".join(embeds.role(r) for r in sorted(policy.exempt_roles))
            lines.insert(1, embeds.clip(w("config.rules.exempt", roles=exempt), 1000))
        await _done(interaction, embeds.capped_lines(w, lines, embeds.DESCRIPTION_MAX))

    # -- channels, defaults, limits, usage -----------------------------------------------------

    @app_commands.command(name="channels", description="Where /imagine may be used (an allow-list)")
    @app_commands.describe(action="What to do with the list", channel="The channel to add or remove")
    @app_commands.choices(
        action=[app_commands.Choice(name=a, value=a) for a in ("add", "remove", "clear", "show")]
    )
    async def channels(
        self, interaction: discord.Interaction, action: str, channel: discord.TextChannel | None = None
    ) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        store = self.bot.services.guilds
        current = list((await store.get(here.guild_id)).allowed_channel_ids)
        if action in ("add", "remove") and channel is None:
            raise Denied("denied.pick_a_channel")
        if action == "add" and channel is not None and channel.id not in current:
            current.append(channel.id)
        elif action == "remove" and channel is not None and channel.id in current:
            current.remove(channel.id)
        elif action == "clear":
            current = []
        if action != "show":
            await store.set_channels(here.guild_id, current)
        if current:
            await _done(interaction, w("config.channels", channels=channel_list(current)))
        else:
            await _done(interaction, w("config.channels.all"))

    @app_commands.command(name="defaults", description="Default model, aspect, resolution and quality")
    @app_commands.describe(
        model="Default image model",
        aspect="Default aspect ratio, e.g. 1:1 or 16:9",
        resolution="Default resolution tier",
        quality="Default rendering quality",
    )
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
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        services = self.bot.services
        config = await services.guilds.get(here.guild_id)
        found = await services.catalog.find(model or config.default_model)  # a HubError is told
        if found is None:
            raise Denied("denied.defaults_unknown_model", model=model)
        if aspect is not None and aspect not in found.aspect_ratios:
            raise Denied("denied.defaults_aspect", model=found.id, aspect=aspect)
        changes: dict[str, str] = {}
        if model is not None:
            changes["default_model"] = found.id
        if aspect is not None:
            changes["default_aspect"] = aspect
        if resolution is not None:
            changes["default_resolution"] = resolution
        if quality is not None:
            changes["default_quality"] = quality
        config = await services.guilds.update(here.guild_id, **changes) if changes else config
        await _done(
            interaction,
            w(
                "config.defaults",
                model=config.default_model,
                aspect=config.default_aspect,
                resolution=config.default_resolution,
                quality=config.default_quality,
            ),
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
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
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
        config = await store.update(here.guild_id, **changes) if changes else await store.get(here.guild_id)
        await _done(
            interaction,
            w(
                "config.limits",
                per_member=config.max_concurrent_per_member,
                per_server=config.max_concurrent_per_guild,
                queue_per_member=config.max_queued_per_member,
                queue_per_server=config.max_queued_per_guild,
            ),
        )
        if changes:
            self.bot.services.engine.wake()  # higher limits may let queued jobs start

    @app_commands.command(name="modlog", description="Where moderators are told about problems (empty = off)")
    @app_commands.describe(channel="The moderator log channel (leave empty to turn it off)")
    async def modlog(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        await self.bot.services.guilds.update(
            here.guild_id, mod_log_channel_id=channel.id if channel else None
        )
        if channel is None:
            await _done(interaction, w("config.modlog.off"))
        else:
            await _done(interaction, w("config.modlog", channel=channel.mention))

    @app_commands.command(name="usage", description="Credits spent per day and the top members, with a chart")
    @app_commands.describe(days="How many days the chart covers (default 30)")
    async def usage(
        self, interaction: discord.Interaction, days: app_commands.Range[int, 1, 90] = 30
    ) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        guild_id = here.guild_id
        await interaction.response.defer(ephemeral=True, thinking=True)
        quotas = self.bot.services.quotas
        policy = await quotas.policies.policy(guild_id)
        top = await quotas.reports.top_members(guild_id, 10)
        start, _ = policy.bounds()
        spent = await quotas.reports.guild_spend(guild_id, since=start)
        daily = await quotas.reports.daily_spend(guild_id, days)
        names = [(await self._member_name(interaction, user), credits) for user, credits in top]
        filename = "usage.png"
        labels = ChartLabels(
            title=w("usage.chart_daily"),
            top_title=w("usage.chart_top", period=w(f"period.{policy.period.value}")),
            unit=w("usage.chart_unit"),
            nobody=w("usage.chart_nobody"),
            day=w.day,
        )
        try:
            png = await asyncio.to_thread(usage_chart, daily, names, labels)
        except Exception:
            log.exception(kv("config.usage_chart_failed", guild=guild_id))
            png = None
        embed = embeds.usage_embed(
            w,
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

    @app_commands.command(name="language", description="The language of the bot's public messages here")
    @app_commands.describe(language="auto follows the server's language in Discord's settings")
    @app_commands.choices(language=LANGUAGE_CHOICES)
    async def language(self, interaction: discord.Interaction, language: str | None = None) -> None:
        """Results, status messages, notices and the moderator log speak this language; a member's
        own answers keep following their Discord language."""
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        store = self.bot.services.guilds
        config = (
            await store.update(here.guild_id, language=language)
            if language
            else await store.get(here.guild_id)
        )
        if language:
            log.info(kv("config.language", guild=here.guild_id, user=interaction.user.id, language=language))
        public = messages.public_locale(config.language, interaction.guild_locale)
        name = w(f"language.{public}")
        key = "config.language.auto" if config.language == "auto" else "config.language"
        await _done(interaction, w(key, language=name))

    @app_commands.command(name="alerts", description="Warn the moderator log when the hub balance runs low")
    @app_commands.describe(low_balance="Alert below this many credits (0 turns the alert off)")
    async def alerts(
        self,
        interaction: discord.Interaction,
        low_balance: app_commands.Range[int, 0, 1_000_000_000] | None = None,
    ) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        store = self.bot.services.guilds
        if low_balance is not None:
            threshold = low_balance or None
            config = await store.update(
                here.guild_id, low_balance_threshold=threshold, low_balance_alerted=False
            )
        else:
            config = await store.get(here.guild_id)
        if config.low_balance_threshold is None:
            shown = w("config.alerts.off")
        elif config.mod_log_channel_id is None:
            shown = w("config.alerts.no_modlog", count=config.low_balance_threshold)
        else:
            shown = w(
                "config.alerts.modlog",
                count=config.low_balance_threshold,
                channel=embeds.channel(config.mod_log_channel_id),
            )
        await _done(interaction, shown)

    @app_commands.command(name="personal_keys", description="Let members pay with their own hub key")
    @app_commands.describe(policy="allow (the default) or deny members' own keys (/mykey) here")
    @app_commands.choices(policy=[app_commands.Choice(name=v, value=v) for v in ("allow", "deny")])
    async def personal_keys(self, interaction: discord.Interaction, policy: str | None = None) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        store = self.bot.services.guilds
        if policy is not None:
            if policy not in ("allow", "deny"):
                raise Denied(
                    "denied.setting_invalid", name=w("settings.name.policy"), value=messages.echo(policy, 20)
                )
            config = await store.update(here.guild_id, personal_keys_allowed=policy == "allow")
            log.info(kv("config.personal_keys", guild=here.guild_id, user=interaction.user.id, policy=policy))
        else:
            config = await store.get(here.guild_id)
        await _done(
            interaction,
            w("config.personal_keys.allow" if config.personal_keys_allowed else "config.personal_keys.deny"),
        )

    # -- prompt filters ------------------------------------------------------------------------

    @filter.command(name="add", description="Block prompts with a word or matching a regular expression")
    @app_commands.describe(kind="A whole word, or an RE2 regular expression", value="The word or the pattern")
    @app_commands.choices(kind=FILTER_KINDS)
    async def filter_add(
        self, interaction: discord.Interaction, kind: str, value: app_commands.Range[str, 1, 300]
    ) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        store = self.bot.services.guilds
        config = await store.get(here.guild_id)
        dropped: list[str] = []
        # A word or pattern the bounds refuse raises a `FilterError`, told to the moderator.
        if kind == "word":
            word = check_word(value)
            if word not in config.blocked_words:
                words = [*config.blocked_words, word]
                check_words(words)
                await store.update(here.guild_id, blocked_words=words)
        else:
            pattern = check_pattern(value)
            kept, dropped = usable_patterns(config.blocked_patterns)
            if pattern not in kept:
                patterns = [*kept, pattern]
                check_patterns(patterns)  # the count and the server's total cost
                await store.update(here.guild_id, blocked_patterns=patterns)
            elif dropped:
                await store.update(here.guild_id, blocked_patterns=kept)
        log.info(kv("config.filter_added", guild=here.guild_id, user=interaction.user.id, kind=kind))
        note = embeds.dropped_patterns_note(w, dropped) if kind != "word" else ""
        await _done(interaction, w(f"config.filter_added.{_kind(kind)}") + note)

    @filter.command(name="remove", description="Stop blocking a word or a regular expression")
    @app_commands.describe(kind="A whole word, or an RE2 regular expression", value="The word or the pattern")
    @app_commands.choices(kind=FILTER_KINDS)
    async def filter_remove(
        self, interaction: discord.Interaction, kind: str, value: app_commands.Range[str, 1, 300]
    ) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        store = self.bot.services.guilds
        config = await store.get(here.guild_id)
        value = value.strip()
        current = config.blocked_words if kind == "word" else config.blocked_patterns
        if value not in current:
            raise Denied(f"denied.filter_not_found.{_kind(kind)}")
        remaining = [item for item in current if item != value]
        note = ""
        if kind == "word":
            await store.update(here.guild_id, blocked_words=remaining)
        else:
            # Patterns stored before the cost bounds, which no longer apply, go too (and are named).
            remaining, dropped = usable_patterns(remaining)
            await store.update(here.guild_id, blocked_patterns=remaining)
            note = embeds.dropped_patterns_note(w, dropped)
        await _done(interaction, w(f"config.filter_removed.{_kind(kind)}") + note)

    @filter.command(name="list", description="The server's blocked words and regular expressions")
    async def filter_list(self, interaction: discord.Interaction) -> None:
        here = in_guild(interaction)
        w = messages.words(interaction.locale)
        config = await self.bot.services.guilds.get(here.guild_id)
        _, ignored = usable_patterns(config.blocked_patterns)
        embed = embeds.filters_embed(w, config.blocked_words, config.blocked_patterns, ignored)
        await interaction.response.send_message(embed=embed, ephemeral=True)


def _kind(kind: str) -> str:
    """The filter kind option (a choice, "word" or "regex")."""
    return "word" if kind == "word" else "regex"


def _budget(w: Words, who: str, credits: int | None) -> str:
    if credits is None:
        return w("config.budget.removed", who=who)
    return w("config.budget", who=who, count=credits)


async def setup(bot: ImageHubBot) -> None:
    await bot.add_cog(Config(bot))
