"""Every embed and member-facing sentence the bot sends, in one place.

Cogs and the publisher call these so the same situation always reads the same way.
Text that echoes members (prompts) goes into embeds, and the bot sends with mentions disabled.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

import discord

from bot.engine import Notice, NoticeKind, Result
from bot.hub import (
    ExpiredApiKey,
    HubError,
    HubModel,
    HubUnavailable,
    InsufficientCredits,
    InvalidApiKey,
    MissingApiKey,
    OutcomeUnknown,
)
from bot.jobs import Job, JobStatus
from bot.queue import Place

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
# One message: at most 10 attachments and 25 MiB in all; the files leave room for the JSON part.
FILES_MAX = 10
REQUEST_MAX_BYTES = 25 * 1024 * 1024
FILES_BUDGET = REQUEST_MAX_BYTES - 256 * 1024
PERMISSION_NAMES = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "attach_files": "Attach Files",
    "embed_links": "Embed Links",
    "read_message_history": "Read Message History",
}


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, ending with "…" when cut; an inline code span the cut
    left open is closed, so an echoed option still reads as one."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)] + "…"
    if "```" not in cut and cut.count("`") % 2:
        cut = text[: max(limit - 2, 0)] + "…`"
    return cut[:limit]


def choice_name(text: str) -> str:
    """An autocomplete choice's name, cut to Discord's 100 characters (a longer one refuses the answer)."""
    return text if len(text) <= CHOICE_MAX else text[: CHOICE_MAX - 1] + "…"


def capped_lines(lines: Sequence[str], limit: int = DESCRIPTION_MAX, sep: str = "\n") -> str:
    """`lines` joined in at most `limit` characters; the ones left out are counted ("…and 3 more")."""
    for shown in range(len(lines), -1, -1):
        rest = len(lines) - shown
        text = sep.join([*lines[:shown], f"…and {rest:,} more"] if rest else lines)
        if len(text) <= limit:
            return text
    return clip(f"…and {len(lines):,} more", limit)


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


def plain(text: str, *, colour: discord.Colour = INFO, title: str | None = None) -> discord.Embed:
    return fit(discord.Embed(title=title, description=text, colour=colour))


def refusal(text: str) -> discord.Embed:
    """A refusal; `text` may echo a member's options, so it is clamped to fit."""
    return discord.Embed(description=clip(f"⚠️ {text}", DESCRIPTION_MAX), colour=WARN)


def hub_error_text(exc: BaseException) -> str:
    """A hub failure in words a member understands, with what to do about it."""
    if isinstance(exc, MissingApiKey | InvalidApiKey):
        return "This server's image hub key isn't valid. A moderator needs to set one with `/config key set`."
    if isinstance(exc, ExpiredApiKey):
        return "This server's image hub key has expired. A moderator must set a new one: `/config key set`."
    if isinstance(exc, InsufficientCredits):
        return "The server's hub balance is too low for this. A moderator can top it up on the hub."
    if isinstance(exc, HubUnavailable):
        return "The image hub can't be reached right now. Nothing was charged; please try again in a minute."
    if isinstance(exc, OutcomeUnknown):
        return "The image hub didn't answer in time, so I can't tell whether it took the request."
    if isinstance(exc, HubError):
        return f"The image hub refused the request: {exc.message}"
    return "Something went wrong on my side. Please try again; moderators can check the bot's logs."


def _short_prompt(prompt: str, limit: int = 1000) -> str:
    return prompt if len(prompt) <= limit else prompt[: limit - 1] + "…"


def _params_line(job: Job) -> str:
    p = job.params
    refs = f" · {len(p.references)} reference{'s' if len(p.references) != 1 else ''}" if p.references else ""
    return f"`{p.model}` · {p.aspect} · {p.tier} · quality {p.quality} · ×{p.n}{refs}"


_STATUS_TEXT = {
    JobStatus.QUEUED: "⏳ Waiting in this server's queue",
    JobStatus.PENDING_SUBMIT: "📨 Sending to the image hub",
    JobStatus.SUBMITTING: "📨 Sending to the image hub",
    JobStatus.SUBMITTED: "🕒 Queued at the image hub",
    JobStatus.RUNNING: "🎨 Generating",
    JobStatus.SUCCEEDED: "📥 Fetching your images",
}


def status_embed(job: Job, place: Place | None = None) -> discord.Embed:
    """The status message that moves with the job; Discord renders the elapsed time live.
    A queued job shows its `place` in the server's queue and when it should start."""
    text = _STATUS_TEXT.get(job.status, "⏳ Working")
    started = job.submitted_at or job.created_at
    embed = discord.Embed(
        title=text,
        description=_short_prompt(job.params.prompt, 300),
        colour=INFO,
    )
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>")
    if job.status is JobStatus.QUEUED and place is not None:
        embed.add_field(name="Position", value=f"#{place.position} in this server's queue")
        embed.add_field(name="Should start", value=ts(place.starts_at))
    else:
        embed.add_field(name="Started", value=ts(started))
    embed.add_field(name="Cost", value=f"{job.cost} credits reserved")
    model = clip(job.params.model, 100)  # the hub's model id: the footer must keep the job number
    embed.set_footer(text=f"{model} · {clip(job.params.aspect, 50)} · {job.params.tier} · job #{job.id}")
    return fit(embed)


def starting_embed(prompt: str, cost: int) -> discord.Embed:
    embed = discord.Embed(title="📨 Starting…", description=_short_prompt(prompt, 300), colour=INFO)
    embed.add_field(name="Cost", value=f"{cost} credits")
    return fit(embed)


def _too_large_note(links: Sequence[str], room: int) -> str:
    """Numbered links to the images too large to upload, in at most `room` characters: a link that
    doesn't fit is left out (the image is still named)."""
    text = "Too large to upload here:"
    for i, url in enumerate(links, start=1):
        link = f" [image {i}]({url})"
        unlinked = f" image {i} (link too long to show)"
        # Keep room to name the images still to come.
        later = sum(len(f" image {j} (link too long to show)") for j in range(i + 1, len(links) + 1))
        text += link if len(text) + len(link) + later <= room else unlinked
    return clip(text, room)


def result_embed(job: Job, result: Result, links: Sequence[str] = ()) -> discord.Embed:
    """The finished result: prompt, who asked, every parameter, what it cost and took."""
    delivered = sum(1 for image in result.images if image.data is not None) + len(links)
    embed = discord.Embed(description=_short_prompt(job.params.prompt, 4000), colour=OK)
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>")
    embed.add_field(name="Settings", value=_params_line(job), inline=False)
    cost = f"{result.charged} credits"
    if result.refunded:
        cost += f" ({result.refunded} returned)"
    embed.add_field(name="Cost", value=cost)
    embed.add_field(name="Took", value=f"{result.elapsed:.0f} s")
    notes = []
    if delivered < result.requested:
        notes.append(
            f"The hub delivered {delivered} of {result.requested} images; "
            "the credits for the rest were returned."
        )
    missing = [image for image in result.images if image.data is None]
    if missing and not links:
        notes.append(f"{len(missing)} image(s) could not be downloaded from the hub.")
    if links:
        room = FIELD_VALUE_MAX - sum(len(n) + 1 for n in notes)
        notes.append(_too_large_note(links, room))
    if notes:
        embed.add_field(name="Note", value="\n".join(notes), inline=False)
    embed.set_footer(text=f"job #{job.id}")
    return fit(embed)


def notice_embed(job: Job, notice: Notice) -> discord.Embed:
    """Why a job ended without its images, and what happened to the credits."""
    texts = {
        NoticeKind.HUB_FAILED: "The image hub couldn't generate this image.",
        NoticeKind.HUB_UNAVAILABLE: "The image hub couldn't be reached, so nothing was sent.",
        NoticeKind.OUTCOME_UNKNOWN: (
            "The image hub didn't answer when this was sent, so I can't tell whether it was taken. "
            "I won't send it again on my own; moderators have been told."
        ),
        NoticeKind.NO_KEY: "This server has no image hub key. A moderator can set one with /config key set.",
        NoticeKind.BAD_KEY: "This server's image hub key isn't valid. A moderator needs to set a new one.",
        NoticeKind.INSUFFICIENT_CREDITS: "The server's hub balance is too low for this request.",
        NoticeKind.INVALID_REQUEST: "The image hub refused the request.",
        NoticeKind.DOWNLOAD_FAILED: "The images were made but could not be downloaded from the hub.",
        NoticeKind.TIMED_OUT: "The image hub took too long; I stopped waiting.",
        NoticeKind.REFERENCES_GONE: "The reference images could no longer be downloaded from Discord.",
        NoticeKind.PUBLISH_FAILED: (
            "The images were made but could not be posted here. "
            "A moderator can check the bot's permissions in this channel."
        ),
    }
    lines = [texts.get(notice.kind, "This generation did not complete.")]
    if notice.detail:
        lines.append(f"Hub said: {notice.detail[:300]}")
    if notice.refunded:
        lines.append(f"{notice.refunded} credits were returned to your budget.")
    elif notice.charged:
        lines.append(f"{notice.charged} credits were counted, since the hub may have charged them.")
    elif notice.kind != NoticeKind.OUTCOME_UNKNOWN:
        lines.append("Nothing was charged.")
    embed = discord.Embed(title="Generation not completed", description="\n".join(lines), colour=BAD)
    embed.add_field(name="Prompt", value=_short_prompt(job.params.prompt, 300), inline=False)
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>")
    embed.set_footer(text=f"job #{job.id}")
    return fit(embed)


def models_embed(models: Sequence[HubModel]) -> discord.Embed:
    embed = discord.Embed(title="Image models", colour=INFO)
    if not models:
        embed.description = "The hub lists no models right now."
    room = EMBED_TOTAL_MAX - len(embed) - 100  # kept for the "…and N more" footer
    for shown, model in enumerate(models):
        costs = clip(" · ".join(f"{tier}: {credits}" for tier, credits in model.credits.items()), 400)
        name = clip(f"{model.id} ({model.provider})" if model.provider else model.id, FIELD_NAME_MAX)
        value = clip(
            f"**Credits per image** {costs}\n"
            f"**Aspect ratios** {clip(', '.join(model.aspect_ratios), 400)}\n"
            f"**Reference images** up to {model.reference_image_limit}",
            FIELD_VALUE_MAX,
        )
        if shown == FIELDS_MAX or len(name) + len(value) > room:
            embed.set_footer(text=f"…and {len(models) - shown} more (see /imagine's model list)")
            break
        room -= len(name) + len(value)
        embed.add_field(name=name, value=value, inline=False)
    return fit(embed)


def bar(used: int, limit: int, width: int = 12) -> str:
    """A small text progress bar of what is used."""
    filled = 0 if limit <= 0 else min(width, round(width * used / limit))
    return "█" * filled + "░" * (width - filled)


# -- queue and cancel ------------------------------------------------------------------------------


def queued_embed(prompt: str, cost: int) -> discord.Embed:
    """The first answer when the job will wait for a slot."""
    embed = discord.Embed(title="⏳ Queued…", description=_short_prompt(prompt, 300), colour=INFO)
    embed.add_field(name="Cost", value=f"{cost} credits")
    return fit(embed)


def cancelled_embed(job: Job, returned: int, by_user_id: int) -> discord.Embed:
    """The status message of a job cancelled before it reached the hub."""
    who = "by its author" if by_user_id == job.user_id else f"by <@{by_user_id}>"
    credits = f"{returned} credits were returned to <@{job.user_id}>'s budget." if returned else ""
    embed = discord.Embed(
        title="Generation cancelled",
        description=f"Cancelled {who} before it was sent to the image hub. {credits}".strip(),
        colour=WARN,
    )
    embed.add_field(name="Prompt", value=_short_prompt(job.params.prompt, 300), inline=False)
    embed.set_footer(text=f"job #{job.id}")
    return fit(embed)


CANCEL_NOT_ALLOWED = "Only the member who asked for this, or a moderator, can cancel it."
CANCEL_TOO_LATE = (
    "This was already sent to the image hub, so its credits are spent and it can't be cancelled. "
    "The result will be posted here."
)
CANCEL_ALREADY_CANCELLED = "This generation was already cancelled."
CANCEL_FINISHED = "This generation has already finished."


# -- filters ---------------------------------------------------------------------------------------

PROMPT_BLOCKED = "This prompt was blocked by this server's filters."


def blocked_log_embed(user_id: int, channel_id: int, prompt: str) -> discord.Embed:
    """For the moderator log: who tried which prompt where (sent with mentions disabled)."""
    embed = discord.Embed(title="🚫 Prompt blocked", description=_short_prompt(prompt, 4000), colour=WARN)
    embed.add_field(name="Member", value=f"<@{user_id}> (`{user_id}`)")
    embed.add_field(name="Channel", value=f"<#{channel_id}>")
    return fit(embed)


def _code(item: str) -> str:
    return f"`{item.replace('`', 'ˋ')}`"


def filters_embed(
    words: Sequence[str], patterns: Sequence[str], ignored: Sequence[str] = ()
) -> discord.Embed:
    def listing(items: Sequence[str]) -> str:
        if not items:
            return "none"
        text = "\n".join(
            _code(item) + (" (ignored: over the size limits)" if item in ignored else "") for item in items
        )
        return text if len(text) <= 1000 else text[:999] + "…"

    embed = discord.Embed(title="Prompt filters", colour=INFO)
    embed.add_field(name=f"Blocked words ({len(words)})", value=listing(words), inline=False)
    embed.add_field(name=f"Blocked patterns ({len(patterns)})", value=listing(patterns), inline=False)
    embed.set_footer(text="Words match whole words, ignoring case; patterns are RE2 regular expressions.")
    return fit(embed)


def dropped_patterns_note(dropped: Sequence[str]) -> str:
    """Told when a change drops patterns stored before the size limits (they had stopped applying)."""
    if not dropped:
        return ""
    listed = clip(", ".join(_code(p) for p in dropped), 600)
    return (
        f"\n{len(dropped)} older pattern{'s' if len(dropped) != 1 else ''} over the size limits "
        f"(no longer applied) {'were' if len(dropped) != 1 else 'was'} removed: {listed}"
    )


def ignored_patterns_embed(ignored: Sequence[str]) -> discord.Embed:
    """Moderator log: stored patterns the bot skips because they break the cost bounds."""
    listed = clip("\n".join(_code(p) for p in ignored), 1500)
    text = (
        f"{len(ignored)} of this server's prompt filter patterns {'are' if len(ignored) != 1 else 'is'} "
        "over the size limits and no longer applied:\n"
        f"{listed}\nSee `/config filter list`; changing the patterns removes them."
    )
    return discord.Embed(title="Prompt filters skipped", description=text, colour=WARN)


# -- history, show, info ---------------------------------------------------------------------------

_HISTORY_STATUS = {
    JobStatus.QUEUED: "⏳ queued",
    JobStatus.PENDING_SUBMIT: "📨 starting",
    JobStatus.SUBMITTING: "📨 starting",
    JobStatus.SUBMITTED: "🕒 at the hub",
    JobStatus.RUNNING: "🎨 generating",
    JobStatus.SUCCEEDED: "📥 posting",
    JobStatus.POSTED: "✅ posted",
    JobStatus.FAILED: "❌ failed",
    JobStatus.CANCELLED: "🚫 cancelled",
    JobStatus.UNKNOWN: "❔ unknown",
}


def jump_link(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def _history_cost(job: Job) -> str:
    if job.charged_credits is not None:
        return f"{job.charged_credits} credits"
    if job.status in (JobStatus.CANCELLED, JobStatus.FAILED):
        return "nothing charged"
    if job.status is JobStatus.UNKNOWN:
        return f"{job.cost} credits counted"
    return f"{job.cost} credits reserved"


def history_embed(user_id: int, jobs: Sequence[Job]) -> discord.Embed:
    """A member's recent generations, newest first."""
    embed = discord.Embed(title="Recent generations", colour=INFO)
    if not jobs:
        embed.description = f"<@{user_id}> hasn't generated anything here yet."
        return embed
    lines = [f"<@{user_id}>"]
    for job in jobs:
        parts = [f"**#{job.id}**", ts(job.created_at), _HISTORY_STATUS.get(job.status, job.status.value)]
        parts.append(_history_cost(job))
        if job.posted_message_ids:
            parts.append(f"[result]({jump_link(job.guild_id, job.channel_id, job.posted_message_ids[0])})")
        prompt = " ".join(job.params.prompt.split())
        lines.append(" · ".join(parts) + f"\n> {_short_prompt(prompt, 80)}")
    embed.description = capped_lines(lines)
    embed.set_footer(text="/show job_id posts a result again · the Info button shows its full settings")
    return fit(embed)


SHOW_NOT_FOUND = "I can't find that generation on this server."
SHOW_NO_IMAGES = "That generation has no posted result to show (yet)."
SHOW_GONE = "The image hub no longer has this generation's images."
SHOW_PRIVATE = "That generation was made in a channel you can't see, so I can't show it to you."
SHOW_BUSY = {
    "member_busy": "Your last /show is still being posted. Wait for it, then try again.",
    "member_rate": "You've used /show a lot in the last minute. Please try again in a minute.",
    "server_busy": "Other results are being shown on this server right now. Please try again in a moment.",
    "busy": "The bot is busy showing other results. Please try again in a moment.",
}


def reshown_note(job: Job) -> str:
    return f"Posted again from job #{job.id}."


def imagine_line(job: Job) -> str:
    """The /imagine command that asks for the same thing (references can't be typed)."""
    p = job.params
    prompt = " ".join(p.prompt.split())
    return (
        f"/imagine prompt:{prompt} model:{p.model} aspect:{p.aspect} resolution:{p.tier} "
        f"quality:{p.quality} count:{p.n}"
    )


def info_embed(job: Job) -> tuple[discord.Embed, str | None]:
    """The full prompt and parameters; the `/imagine` line sits in a code block when it fits,
    else it is returned to be attached as a text file."""
    p = job.params
    embed = discord.Embed(title=f"Generation #{job.id}", description=p.prompt, colour=INFO)
    embed.add_field(name="Model", value=clip(f"`{p.model}`", 200))
    embed.add_field(name="Aspect", value=clip(p.aspect, 100))
    embed.add_field(name="Resolution", value=p.tier)
    embed.add_field(name="Quality", value=clip(p.quality, 100))
    embed.add_field(name="Images", value=str(p.n))
    if p.size:
        embed.add_field(name="Size", value=p.size)
    if p.references:
        names = ", ".join(f"`{r.filename[:60]}`" for r in p.references)
        embed.add_field(name="References", value=names[:1000], inline=False)
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>")
    embed.add_field(name="Cost", value=_history_cost(job))
    embed.add_field(name="Created", value=ts(job.created_at))
    line = imagine_line(job)
    block = f"```\n{line}\n```"
    fits = len(block) <= FIELD_VALUE_MAX and len(embed) + len(block) <= EMBED_TOTAL_MAX - 20
    if "```" not in line and fits:
        embed.add_field(name="Ask again", value=block, inline=False)
        return fit(embed), None
    embed.add_field(name="Ask again", value="The `/imagine` line is attached.", inline=False)
    return fit(embed), line


# -- usage and alerts ------------------------------------------------------------------------------


def usage_embed(
    *,
    period: str,
    period_spent: int,
    days: int,
    days_spent: int,
    top: Sequence[tuple[int, int]],
    chart_filename: str | None,
) -> discord.Embed:
    lines = [
        f"**{period_spent:,}** credits spent this {period}.",
        f"**{days_spent:,}** credits over the last {days} day{'s' if days != 1 else ''}.",
    ]
    if top:
        lines.append(f"\n**Top members this {period}**")
        lines += [f"{i}. <@{user}> — {credits:,}" for i, (user, credits) in enumerate(top, start=1)]
    else:
        lines.append("Nobody has generated anything yet this period.")
    embed = discord.Embed(title="Image generation usage", description="\n".join(lines), colour=INFO)
    if chart_filename:
        embed.set_image(url=f"attachment://{chart_filename}")
    return fit(embed)


def low_balance_embed(credits: int, threshold: int) -> discord.Embed:
    return discord.Embed(
        title="⚠️ Image hub balance is low",
        description=(
            f"The server's hub balance is **{credits:,}** credits, below the alert threshold of "
            f"{threshold:,}. Top it up on the hub before generations start failing. "
            "This alert is sent once; it re-arms when the balance is back above the threshold."
        ),
        colour=WARN,
    )


def this_period(period: str) -> str:
    """ "today", "this week", "this month"."""
    return "today" if period == "day" else f"this {period}"


_LEDGER_WORDS = {"reserve": "reserved", "settle_refund": "returned", "release": "returned"}


def ledger_line(at: datetime, kind: str, credits: int) -> str:
    """One budget movement as a member reads it: what was taken or given back, and when."""
    return f"{ts(at)} · {_LEDGER_WORDS.get(kind, kind)} {abs(credits):,} credits"


def result_files(
    job: Job,
    result: Result,
    limit: int,
    *,
    total: int = FILES_BUDGET,
    max_files: int = FILES_MAX,
) -> tuple[list[discord.File], list[str]]:
    """The images as files while they fit one request: each at most `limit` bytes (the upload limit
    per file, the interaction's `attachment_size_limit`), all together at most `total` bytes and
    `max_files` files (Discord: 25 MiB and 10 attachments per message). The rest go as links to
    the hub's copy."""
    files: list[discord.File] = []
    links: list[str] = []
    used = 0
    for image in result.images:
        if image.data is None:
            continue
        size = len(image.data)
        if size > limit or used + size > total or len(files) >= max_files:
            links.append(image.url)
            continue
        used += size
        ext = {"image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}.get(image.content_type, "png")
        name = f"image-{job.id}-{image.index + 1}.{ext}"
        files.append(discord.File(io.BytesIO(image.data), filename=name))
    return files, links


REFERENCES_GONE = "The message these reference images came from was deleted, or no longer has them."
REFERENCES_UNREADABLE = (
    "I can't read the message these reference images came from (I need View Channel and "
    "Read Message History there)."
)


def missing_permissions(perms: discord.Permissions) -> list[str]:
    """What the bot needs in a channel to post results there and does not have, by name."""
    return [name for attr, name in PERMISSION_NAMES.items() if not getattr(perms, attr)]


def _names(missing: Sequence[str]) -> str:
    return ", ".join(f"**{name}**" for name in missing)


def permission_warning(missing: Sequence[str]) -> discord.Embed:
    """Told to the member through the interaction while its token lives."""
    return refusal(
        f"I'm missing {_names(missing)} in this channel. Your result is shown in the message above "
        "if it is ready within 15 minutes; after that I may not be able to post it here. "
        "The moderators have been told."
    )


def missing_permission_line(
    channel_id: int, missing: Sequence[str], job_id: int | None = None
) -> discord.Embed:
    """One clear moderator-log line naming the missing permission."""
    where = f"<#{channel_id}>"
    if job_id is None:
        text = (
            f"I'm missing {_names(missing)} in {where}: results that take longer than 15 minutes "
            "can't be posted there."
        )
    else:
        text = (
            f"I couldn't post the result of job #{job_id} in {where}: missing {_names(missing)}. "
            f"Grant it, then `/show {job_id}` posts it again."
        )
    return discord.Embed(description=text, colour=WARN)


def degraded_line(channel_id: int, missing: Sequence[str], job_id: int) -> discord.Embed:
    """Moderator-log line: the result was posted, but without what a missing permission forbids."""
    return discord.Embed(
        description=(
            f"Posted the result of job #{job_id} in <#{channel_id}> in a reduced form: "
            f"missing {_names(missing)}."
        ),
        colour=WARN,
    )


def embed_as_text(embed: discord.Embed, limit: int = 2000) -> str:
    """An embed as plain message content, for a channel where the bot may not send embeds."""
    parts = [embed.title or "", embed.description or ""]
    parts += [f"**{field.name}**: {field.value}" for field in embed.fields]
    if embed.footer.text:
        parts.append(f"-# {embed.footer.text}")
    return clip("\n".join(p for p in parts if p), limit)
