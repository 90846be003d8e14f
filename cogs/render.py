"""Every embed and member-facing sentence the bot sends, in one place.

Cogs and the publisher call these so the same situation always reads the same way.
Text that echoes members (prompts) goes into embeds, and the bot sends with mentions disabled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import discord

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
from bot.scheduler import Notice, NoticeKind, Result

NO_MENTIONS = discord.AllowedMentions.none()
OK = discord.Colour.green()
INFO = discord.Colour.blurple()
WARN = discord.Colour.orange()
BAD = discord.Colour.red()


def ts(when: datetime, style: str = "R") -> str:
    """A Discord timestamp: every member sees it in their own time zone, updating live."""
    return f"<t:{int(when.timestamp())}:{style}>"


def plain(text: str, *, colour: discord.Colour = INFO, title: str | None = None) -> discord.Embed:
    return discord.Embed(title=title, description=text, colour=colour)


def refusal(text: str) -> discord.Embed:
    return discord.Embed(description=f"⚠️ {text}", colour=WARN)


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


def status_embed(job: Job) -> discord.Embed:
    """The status message that moves with the job; Discord renders the elapsed time live."""
    text = _STATUS_TEXT.get(job.status, "⏳ Working")
    started = job.submitted_at or job.created_at
    embed = discord.Embed(
        title=text,
        description=_short_prompt(job.params.prompt, 300),
        colour=INFO,
    )
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>")
    embed.add_field(name="Started", value=ts(started))
    embed.add_field(name="Cost", value=f"{job.cost} credits reserved")
    embed.set_footer(text=f"{job.params.model} · {job.params.aspect} · {job.params.tier} · job #{job.id}")
    return embed


def starting_embed(prompt: str, cost: int) -> discord.Embed:
    embed = discord.Embed(title="📨 Starting…", description=_short_prompt(prompt, 300), colour=INFO)
    embed.add_field(name="Cost", value=f"{cost} credits")
    return embed


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
        notes.append(
            "Too large to upload here: " + " ".join(f"[image {i + 1}]({u})" for i, u in enumerate(links))
        )
    if notes:
        embed.add_field(name="Note", value="\n".join(notes), inline=False)
    embed.set_footer(text=f"job #{job.id}")
    return embed


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
    return embed


def models_embed(models: Sequence[HubModel]) -> discord.Embed:
    embed = discord.Embed(title="Image models", colour=INFO)
    if not models:
        embed.description = "The hub lists no models right now."
    for model in models[:25]:
        costs = " · ".join(f"{tier}: {credits}" for tier, credits in model.credits.items())
        embed.add_field(
            name=f"{model.id} ({model.provider})",
            value=(
                f"**Credits per image** {costs}\n"
                f"**Aspect ratios** {', '.join(model.aspect_ratios)}\n"
                f"**Reference images** up to {model.reference_image_limit}"
            ),
            inline=False,
        )
    return embed


def bar(used: int, limit: int, width: int = 12) -> str:
    """A small text progress bar of what is used."""
    filled = 0 if limit <= 0 else min(width, round(width * used / limit))
    return "█" * filled + "░" * (width - filled)
