"""Every embed the bot sends, built from the catalog's words, always within Discord's limits.

Cogs and the publisher call these so the same situation always looks the same way. Text that
echoes members (prompts) or the hub goes into embeds, clamped (`fit`), and the bot sends with
mentions disabled (`NO_MENTIONS`). The words are `cogs.messages`'; the markup (mentions,
timestamps, code spans) is shaped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import discord

from bot.engine import Notice, NoticeKind, Result
from bot.hub import HubModel
from bot.jobs import Job, JobStatus
from bot.member_settings import Chosen, Resolved
from bot.queue import Place
from cogs.messages import Words, echo, quoted

NO_MENTIONS = discord.AllowedMentions.none()
OK = discord.Colour.green()
INFO = discord.Colour.blurple()
WARN = discord.Colour.orange()
BAD = discord.Colour.red()

# Discord's embed limits (characters; a message's embeds share the total).
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
FIELDS_MAX = 25
EMBED_TOTAL_MAX = 6000
# Application command choices: name and value are 1 to 100 characters.
CHOICE_MAX = 100


def clip(value: str, limit: int) -> str:
    """`value` in at most `limit` characters, ending with "…" when cut; an inline code span the cut
    left open is closed, so an echoed option still reads as one."""
    if len(value) <= limit:
        return value
    cut = value[: max(limit - 1, 0)] + "…"
    if "```" not in cut and cut.count("`") % 2:
        cut = value[: max(limit - 2, 0)] + "…`"
    return cut[:limit]


def choice_name(value: str) -> str:
    """An autocomplete choice's name, cut to Discord's 100 characters (a longer one refuses the answer)."""
    return value if len(value) <= CHOICE_MAX else value[: CHOICE_MAX - 1] + "…"


def capped_lines(w: Words, lines: Sequence[str], limit: int = DESCRIPTION_MAX, sep: str = "\n") -> str:
    """`lines` joined in at most `limit` characters; the ones left out are counted ("…and 3 more")."""
    for shown in range(len(lines), -1, -1):
        rest = len(lines) - shown
        joined = sep.join([*lines[:shown], w("list.more", count=rest)] if rest else lines)
        if len(joined) <= limit:
            return joined
    return clip(w("list.more", count=len(lines)), limit)


def fit(embed: discord.Embed) -> discord.Embed:
    """Clamp `embed` to Discord's limits (each part, then the total: the description gives way
    first, then the last fields), so text from members or the hub can never make Discord refuse it."""
    if embed.title:
        embed.title = clip(embed.title, TITLE_MAX)
    if embed.description:
        embed.description = clip(embed.description, DESCRIPTION_MAX)
    while len(embed.fields) > FIELDS_MAX:
        embed.remove_field(FIELDS_MAX)
    for i, f in enumerate(embed.fields):
        name = clip(f.name or "\u200b", FIELD_NAME_MAX)
        value = clip(f.value or "\u200b", FIELD_VALUE_MAX)
        embed.set_field_at(i, name=name, value=value, inline=bool(f.inline))
    if embed.footer.text:
        embed.set_footer(text=clip(embed.footer.text, FOOTER_MAX), icon_url=embed.footer.icon_url)
    if embed.author.name:
        embed.set_author(
            name=clip(embed.author.name, TITLE_MAX), url=embed.author.url, icon_url=embed.author.icon_url
        )
    excess = len(embed) - EMBED_TOTAL_MAX
    if excess > 0 and embed.description:
        embed.description = clip(embed.description, max(len(embed.description) - excess, 1))
        excess = len(embed) - EMBED_TOTAL_MAX
    while excess > 0 and embed.fields:
        last = len(embed.fields) - 1
        f = embed.fields[last]
        value = f.value or ""
        if len(value) - excess >= 20:
            embed.set_field_at(
                last, name=f.name, value=clip(value, len(value) - excess), inline=bool(f.inline)
            )
        else:
            embed.remove_field(last)
        excess = len(embed) - EMBED_TOTAL_MAX
    return embed


def ts(when: datetime, style: str = "R") -> str:
    """A Discord timestamp: every member sees it in their own time zone, updating live."""
    return f"<t:{int(when.timestamp())}:{style}>"


def user(user_id: int) -> str:
    return f"<@{user_id}>"


def channel(channel_id: int) -> str:
    return f"<#{channel_id}>"


def role(role_id: int) -> str:
    return f"<@&{role_id}>"


def code(item: str) -> str:
    """An item in an inline code span (a backtick inside it can't end the span early)."""
    return f"`{item.replace('`', 'ˋ')}`"


def plain(description: str, *, colour: discord.Colour = INFO, title: str | None = None) -> discord.Embed:
    return fit(discord.Embed(title=title, description=description, colour=colour))


def refusal(description: str) -> discord.Embed:
    """A refusal; `description` may echo a member's options, so it is clamped to fit."""
    return discord.Embed(description=clip(f"⚠️ {description}", DESCRIPTION_MAX), colour=WARN)


def _short_prompt(prompt: str, limit: int = 1000) -> str:
    return prompt if len(prompt) <= limit else prompt[: limit - 1] + "…"


def _params_line(w: Words, job: Job) -> str:
    """`model` · 1:1 · 1K · quality auto · 4 images · 2 references: a list of settings, each counted
    item with its own plural form."""
    p = job.params
    parts = [
        w("job.settings", model=p.model, aspect=p.aspect, tier=p.tier, quality=p.quality),
        w("job.images", count=p.n),
    ]
    if p.references:
        parts.append(w("job.references", count=len(p.references)))
    return " · ".join(parts)


_STATUS_KEYS = {
    JobStatus.QUEUED: "status.queued",
    JobStatus.PENDING_SUBMIT: "status.starting",
    JobStatus.SUBMITTING: "status.starting",
    JobStatus.SUBMITTED: "status.submitted",
    JobStatus.RUNNING: "status.running",
    JobStatus.SUCCEEDED: "status.fetching",
}


def status_embed(
    w: Words, job: Job, place: Place | None = None, finish: datetime | None = None
) -> discord.Embed:
    """The status message that moves with the job; Discord renders the elapsed time live.
    A queued job shows its `place` in the server's queue and when it should start; `finish` is
    the expected finish (`bot.eta`), shown relative and live."""
    started = job.submitted_at or job.created_at
    embed = discord.Embed(
        title=w(_STATUS_KEYS.get(job.status, "status.working")),
        description=_short_prompt(job.params.prompt, 300),
        colour=INFO,
    )
    embed.add_field(name=w("field.requested_by"), value=user(job.user_id))
    if job.status is JobStatus.QUEUED and place is not None:
        embed.add_field(name=w("field.position"), value=w("status.position", position=place.position))
        embed.add_field(name=w("field.should_start"), value=ts(place.starts_at))
    else:
        embed.add_field(name=w("field.started"), value=ts(started))
    if finish is not None:
        embed.add_field(name=w("field.expected_finish"), value=ts(finish))
    cost_key = "status.credits_own_key" if job.key_owner is not None else "status.credits_reserved"
    embed.add_field(name=w("field.cost"), value=w(cost_key, count=job.cost))
    model = clip(job.params.model, 100)  # the hub's model id: the footer must keep the job number
    job_no = w("job.footer", job=job.id)
    embed.set_footer(text=f"{model} · {clip(job.params.aspect, 50)} · {job.params.tier} · {job_no}")
    return fit(embed)


def first_embed(w: Words, prompt: str, cost: int, *, queued: bool, own_key: bool = False) -> discord.Embed:
    """The first public answer to /imagine: starting, or waiting for a slot in the queue."""
    title = w("status.first.queued" if queued else "status.first.starting")
    embed = discord.Embed(title=title, description=_short_prompt(prompt, 300), colour=INFO)
    shown = w("status.credits_own_key" if own_key else "credits.amount", count=cost)
    embed.add_field(name=w("field.cost"), value=shown)
    return fit(embed)


def _too_large_note(w: Words, links: Sequence[str], room: int) -> str:
    """Numbered links to the images too large to upload, in at most `room` characters: a link that
    doesn't fit is left out (the image is still named)."""
    note = w("result.too_large")
    for i, url in enumerate(links, start=1):
        link = " " + w("result.too_large.link", number=i, url=url)
        unlinked = " " + w("result.too_large.unlinked", number=i)
        # Keep room to name the images still to come.
        later = sum(len(w("result.too_large.unlinked", number=j)) + 1 for j in range(i + 1, len(links) + 1))
        note += link if len(note) + len(link) + later <= room else unlinked
    return clip(note, room)


def result_embed(w: Words, job: Job, result: Result, links: Sequence[str] = ()) -> discord.Embed:
    """The finished result: prompt, who asked, every parameter, what it cost and took."""
    delivered = sum(1 for image in result.images if image.data is not None) + len(links)
    embed = discord.Embed(description=_short_prompt(job.params.prompt, 4000), colour=OK)
    embed.add_field(name=w("field.requested_by"), value=user(job.user_id))
    embed.add_field(name=w("field.settings"), value=_params_line(w, job), inline=False)
    cost = (
        w("credits.returned", count=result.charged, returned=result.refunded)
        if result.refunded
        else w("credits.amount", count=result.charged)
    )
    embed.add_field(name=w("field.cost"), value=cost)
    embed.add_field(name=w("field.took"), value=w("job.seconds", seconds=result.elapsed))
    notes = []
    if delivered < result.requested:
        notes.append(w("result.fewer", delivered=delivered, requested=result.requested))
    missing = [image for image in result.images if image.data is None]
    if missing and not links:
        notes.append(w("result.not_downloaded", count=len(missing)))
    if links:
        room = FIELD_VALUE_MAX - sum(len(n) + 1 for n in notes)
        notes.append(_too_large_note(w, links, room))
    if notes:
        embed.add_field(name=w("field.note"), value="\n".join(notes), inline=False)
    embed.set_footer(text=w("job.footer", job=job.id))
    return fit(embed)


def notice_embed(w: Words, job: Job, notice: Notice) -> discord.Embed:
    """Why a job ended without its images, and what happened to the credits."""
    kinds = {kind.value for kind in NoticeKind}
    key = f"notice.{notice.kind.value}" if notice.kind.value in kinds else "notice.other"
    if job.key_owner is not None and w.has(f"{key}.personal"):  # the member's own key: their words
        key = f"{key}.personal"
    lines = [w(key)]
    if notice.detail:
        lines.append(w("notice.hub_said", detail=quoted(w, notice.detail)))
    if notice.refunded:
        lines.append(w("notice.refunded", count=notice.refunded))
    elif notice.charged:
        lines.append(w("notice.counted", count=notice.charged))
    elif notice.kind != NoticeKind.OUTCOME_UNKNOWN:
        lines.append(w("notice.nothing_charged"))
    embed = discord.Embed(title=w("notice.title"), description="\n".join(lines), colour=BAD)
    embed.add_field(name=w("field.prompt"), value=_short_prompt(job.params.prompt, 300), inline=False)
    embed.add_field(name=w("field.requested_by"), value=user(job.user_id))
    embed.set_footer(text=w("job.footer", job=job.id))
    return fit(embed)


def models_embed(w: Words, models: Sequence[HubModel]) -> discord.Embed:
    embed = discord.Embed(title=w("models.title"), colour=INFO)
    if not models:
        embed.description = w("models.none")
    room = EMBED_TOTAL_MAX - len(embed) - 100  # kept for the "…and N more" footer
    for shown, model in enumerate(models):
        costs = clip(" · ".join(f"{tier}: {credits}" for tier, credits in model.credits.items()), 400)
        name = clip(f"{model.id} ({model.provider})" if model.provider else model.id, FIELD_NAME_MAX)
        value = clip(
            w(
                "models.entry",
                costs=costs,
                ratios=clip(", ".join(model.aspect_ratios), 400),
                limit=model.reference_image_limit,
            ),
            FIELD_VALUE_MAX,
        )
        if shown == FIELDS_MAX or len(name) + len(value) > room:
            embed.set_footer(text=w("models.more", count=len(models) - shown))
            break
        room -= len(name) + len(value)
        embed.add_field(name=name, value=value, inline=False)
    return fit(embed)


def bar(used: int, limit: int, width: int = 12) -> str:
    """A small text progress bar of what is used."""
    filled = 0 if limit <= 0 else min(width, round(width * used / limit))
    return "█" * filled + "░" * (width - filled)


# -- cancel ----------------------------------------------------------------------------------------


def cancelled_embed(w: Words, job: Job, returned: int, by_user_id: int) -> discord.Embed:
    """The status message of a job cancelled before it reached the hub."""
    who = "by_author" if by_user_id == job.user_id else "by_other"
    key = f"cancelled.{who}.returned" if returned else f"cancelled.{who}"
    description = w(key, user=user(by_user_id), owner=user(job.user_id), count=returned)
    embed = discord.Embed(title=w("cancelled.title"), description=description, colour=WARN)
    embed.add_field(name=w("field.prompt"), value=_short_prompt(job.params.prompt, 300), inline=False)
    embed.set_footer(text=w("job.footer", job=job.id))
    return fit(embed)


# -- filters ---------------------------------------------------------------------------------------


def blocked_log_embed(w: Words, user_id: int, channel_id: int, prompt: str) -> discord.Embed:
    """For the moderator log: who tried which prompt where (sent with mentions disabled)."""
    embed = discord.Embed(title=w("modlog.blocked"), description=_short_prompt(prompt, 4000), colour=WARN)
    embed.add_field(name=w("field.member"), value=f"{user(user_id)} (`{user_id}`)")
    embed.add_field(name=w("field.channel"), value=channel(channel_id))
    return fit(embed)


def filters_embed(
    w: Words, words: Sequence[str], patterns: Sequence[str], ignored: Sequence[str] = ()
) -> discord.Embed:
    def listing(items: Sequence[str]) -> str:
        if not items:
            return w("filters.none")
        shown = "\n".join(
            w("filters.ignored", pattern=code(item)) if item in ignored else code(item) for item in items
        )
        return shown if len(shown) <= 1000 else shown[:999] + "…"

    embed = discord.Embed(title=w("filters.title"), colour=INFO)
    embed.add_field(name=w("filters.words", count=len(words)), value=listing(words), inline=False)
    embed.add_field(name=w("filters.patterns", count=len(patterns)), value=listing(patterns), inline=False)
    embed.set_footer(text=w("filters.footer"))
    return fit(embed)


def dropped_patterns_note(w: Words, dropped: Sequence[str]) -> str:
    """Told when a change drops patterns stored before the size limits (they had stopped applying)."""
    if not dropped:
        return ""
    listed = clip(", ".join(code(p) for p in dropped), 600)
    return "\n" + w("config.patterns_dropped", count=len(dropped), patterns=listed)


def ignored_patterns_embed(w: Words, ignored: Sequence[str]) -> discord.Embed:
    """Moderator log: stored patterns the bot skips because they break the cost bounds."""
    listed = clip("\n".join(code(p) for p in ignored), 1500)
    description = w("modlog.patterns_skipped", count=len(ignored), patterns=listed)
    return discord.Embed(title=w("modlog.patterns_skipped.title"), description=description, colour=WARN)


# -- history, show, info ---------------------------------------------------------------------------

_HISTORY_KEYS = {
    JobStatus.QUEUED: "history.queued",
    JobStatus.PENDING_SUBMIT: "history.starting",
    JobStatus.SUBMITTING: "history.starting",
    JobStatus.SUBMITTED: "history.submitted",
    JobStatus.RUNNING: "history.running",
    JobStatus.SUCCEEDED: "history.posting",
    JobStatus.POSTED: "history.posted",
    JobStatus.FAILED: "history.failed",
    JobStatus.CANCELLED: "history.cancelled",
    JobStatus.UNKNOWN: "history.unknown",
}


def jump_link(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def _history_cost(w: Words, job: Job) -> str:
    if job.charged_credits is not None:
        return w("cost.charged", count=job.charged_credits)
    if job.status in (JobStatus.CANCELLED, JobStatus.FAILED):
        return w("cost.nothing")
    if job.status is JobStatus.UNKNOWN:
        return w("cost.counted", count=job.cost)
    return w("cost.reserved", count=job.cost)


def history_embed(w: Words, user_id: int, jobs: Sequence[Job]) -> discord.Embed:
    """A member's recent generations, newest first."""
    embed = discord.Embed(title=w("history.title"), colour=INFO)
    if not jobs:
        embed.description = w("history.empty", user=user(user_id))
        return embed
    lines = [user(user_id)]
    for job in jobs:
        parts = [f"**#{job.id}**", ts(job.created_at), w(_HISTORY_KEYS[job.status]), _history_cost(w, job)]
        if job.source is not None:
            parts.append(made_from(w, job))
        if job.posted_message_ids and not job.private:  # a private result has no message to jump to
            url = jump_link(job.guild_id, job.channel_id, job.posted_message_ids[0])
            parts.append(w("history.result_link", url=url))
        prompt = " ".join(job.params.prompt.split())
        lines.append(" · ".join(parts) + f"\n> {_short_prompt(prompt, 80)}")
    embed.description = capped_lines(w, lines)
    embed.set_footer(text=w("history.footer"))
    return fit(embed)


def settings_embed(w: Words, resolved: Resolved, *, saved: bool, reset: str | None) -> discord.Embed:
    """The effective values of the member's next /imagine and where each comes from."""
    if reset == "all":
        intro = w("settings.reset_all")
    else:
        intro = w("settings.saved" if saved else "settings.current")
    lines = [intro]
    lines += [
        w("settings.skipped", name=w(f"settings.name.{name}"), value=echo(value))
        for name, value in resolved.skipped
    ]
    embed = discord.Embed(title=w("settings.title"), description="\n".join(lines), colour=INFO)

    def value(chosen: Chosen[Any], shown: str) -> str:
        return w("settings.value", value=shown, origin=w(f"settings.origin.{chosen.origin.value}"))

    embed.add_field(
        name=w("field.model"), value=value(resolved.model, f"`{echo(resolved.model.value, 100)}`")
    )
    embed.add_field(name=w("field.aspect"), value=value(resolved.aspect, echo(resolved.aspect.value)))
    embed.add_field(name=w("field.resolution"), value=value(resolved.resolution, resolved.resolution.value))
    quality = w.get(f"choice.{resolved.quality.value}.name") or echo(resolved.quality.value)
    embed.add_field(name=w("field.quality"), value=value(resolved.quality, quality))
    embed.add_field(name=w("field.images"), value=value(resolved.count, str(resolved.count.value)))
    shown = w(f"settings.visibility.{resolved.visibility.value}")
    embed.add_field(name=w("field.visibility"), value=value(resolved.visibility, shown))
    embed.set_footer(text=w("settings.footer"))
    return fit(embed)


def made_from(w: Words, job: Job) -> str:
    """ "upscale of #12 image 3": where an Upscale or Vary came from ("" for any other job)."""
    if job.source is None:
        return ""
    return w(f"source.{job.source.action.value}", job=job.source.job_id, image=job.source.image)


def imagine_line(w: Words, job: Job) -> str:
    """The /imagine command that asks for the same thing (references can't be typed), with the
    command's and options' names as the reader's Discord shows them (`/tạo-ảnh … chất-lượng:auto`)."""
    p = job.params

    def name(key: str, default: str) -> str:
        return w.get(f"command.imagine{key}.name") or default

    prompt = " ".join(p.prompt.split())
    options = [
        ("prompt", prompt),
        ("model", p.model),
        ("aspect", p.aspect),
        ("resolution", p.tier),
        ("quality", p.quality),
        ("count", str(p.n)),
    ]
    said = " ".join(f"{name(f'.option.{option}', option)}:{value}" for option, value in options)
    return f"/{name('', 'imagine')} {said}"


def info_embed(w: Words, job: Job) -> tuple[discord.Embed, str | None]:
    """The full prompt and parameters; the `/imagine` line sits in a code block when it fits,
    else it is returned to be attached as a text file."""
    p = job.params
    embed = discord.Embed(title=w("info.title", job=job.id), description=p.prompt, colour=INFO)
    embed.add_field(name=w("field.model"), value=clip(f"`{p.model}`", 200))
    embed.add_field(name=w("field.aspect"), value=clip(p.aspect, 100))
    embed.add_field(name=w("field.resolution"), value=p.tier)
    embed.add_field(name=w("field.quality"), value=clip(p.quality, 100))
    embed.add_field(name=w("field.images"), value=str(p.n))
    if p.size:
        embed.add_field(name=w("field.size"), value=p.size)
    if job.source is not None:
        embed.add_field(name=w("field.made_from"), value=made_from(w, job), inline=False)
    elif p.references:
        names = ", ".join(f"`{r.filename[:60]}`" for r in p.references)
        embed.add_field(name=w("field.references"), value=names[:1000], inline=False)
    embed.add_field(name=w("field.requested_by"), value=user(job.user_id))
    embed.add_field(name=w("field.cost"), value=_history_cost(w, job))
    embed.add_field(name=w("field.created"), value=ts(job.created_at))
    line = imagine_line(w, job)
    block = f"```\n{line}\n```"
    fits = len(block) <= FIELD_VALUE_MAX and len(embed) + len(block) <= EMBED_TOTAL_MAX - 20
    if "```" not in line and fits:
        embed.add_field(name=w("field.ask_again"), value=block, inline=False)
        return fit(embed), None
    embed.add_field(name=w("field.ask_again"), value=w("info.line_attached"), inline=False)
    return fit(embed), line


# -- usage, budgets, alerts ------------------------------------------------------------------------


def usage_embed(
    w: Words,
    *,
    period: str,
    period_spent: int,
    days: int,
    days_spent: int,
    top: Sequence[tuple[int, int]],
    chart_filename: str | None,
) -> discord.Embed:
    name = w(f"period.{period}")
    lines = [
        w("usage.period_spent", count=period_spent, period=name),
        w("usage.days_spent", credits=days_spent, count=days),
    ]
    if top:
        lines.append("\n" + w("usage.top", period=name))
        lines += [
            w("usage.top.entry", rank=i, user=user(member), credits=credits)
            for i, (member, credits) in enumerate(top, start=1)
        ]
    else:
        lines.append(w("usage.nobody"))
    embed = discord.Embed(title=w("usage.title"), description="\n".join(lines), colour=INFO)
    if chart_filename:
        embed.set_image(url=f"attachment://{chart_filename}")
    return fit(embed)


def low_balance_embed(w: Words, credits: int, threshold: int) -> discord.Embed:
    return discord.Embed(
        title=w("modlog.low_balance.title"),
        description=w("modlog.low_balance", count=credits, threshold=threshold),
        colour=WARN,
    )


def this_period(w: Words, period: str) -> str:
    """ "today", "this week", "this month"."""
    return w(f"period.this.{period}")


def ledger_line(w: Words, at: datetime, kind: str, credits: int) -> str:
    """One budget movement as a member reads it: what was taken or given back, and when."""
    return w(f"ledger.{kind}", when=ts(at), count=abs(credits))


# -- permissions -----------------------------------------------------------------------------------

# What the bot needs in a channel to post results there (attributes of `discord.Permissions`).
NEEDED = ("view_channel", "send_messages", "attach_files", "embed_links", "read_message_history")
BLOCKING = ("view_channel", "send_messages")  # without these nothing can be posted at all
REDUCING = ("attach_files", "embed_links")  # without these a result is posted in a reduced form


def missing_permissions(perms: discord.Permissions) -> list[str]:
    """What the bot needs in a channel to post results there and does not have (attribute names)."""
    return [name for name in NEEDED if not getattr(perms, name)]


def permission_name(w: Words, name: str) -> str:
    """A permission (`discord.Permissions` attribute) by its name in Discord's settings."""
    return w(f"permission.{name}")


def permission_names(w: Words, missing: Sequence[str]) -> str:
    """Permissions by their names in Discord's settings, in bold: **View Channel**, **Send Messages**."""
    return ", ".join(f"**{permission_name(w, name)}**" for name in missing)


def permission_warning(w: Words, missing: Sequence[str]) -> discord.Embed:
    """Told to the member through the interaction while its token lives."""
    return refusal(w("permissions.warning", permissions=permission_names(w, missing)))


def missing_permission_line(
    w: Words, channel_id: int, missing: Sequence[str], job_id: int | None = None
) -> discord.Embed:
    """One clear moderator-log line naming the missing permission."""
    names, where = permission_names(w, missing), channel(channel_id)
    if job_id is None:
        description = w("modlog.missing_permissions", permissions=names, channel=where)
    else:
        description = w("modlog.unpostable", job=job_id, permissions=names, channel=where)
    return discord.Embed(description=description, colour=WARN)


def degraded_line(w: Words, channel_id: int, missing: Sequence[str], job_id: int) -> discord.Embed:
    """Moderator-log line: the result was posted, but without what a missing permission forbids."""
    description = w(
        "modlog.degraded", job=job_id, channel=channel(channel_id), permissions=permission_names(w, missing)
    )
    return discord.Embed(description=description, colour=WARN)


def embed_as_text(embed: discord.Embed, limit: int = 2000) -> str:
    """An embed as plain message content, for a channel where the bot may not send embeds."""
    parts = [embed.title or "", embed.description or ""]
    parts += [f"**{field.name}**: {field.value}" for field in embed.fields]
    if embed.footer.text:
        parts.append(f"-# {embed.footer.text}")
    return clip("\n".join(p for p in parts if p), limit)
