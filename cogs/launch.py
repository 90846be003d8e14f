"""The one path every generation takes from an interaction: check, store, answer.

/imagine, the "Imagine with these images" form, Reroll, "Use as reference" and the per-image
Upscale and Vary all end in `launch`. The checks and the money are the core's
(`bot.imagine.ImagineService`); this module answers Discord in time (`FirstAnswer`: the status
naming the job when the one transaction that stores it is done in time, else "thinking…" first),
renews expiring reference URLs from their message, and tells the moderator log what it must know
(blocked prompts, skipped filter patterns, a channel where the bot can't post results itself).

Languages: refusals and warnings (ephemeral) are in the member's (`interaction.locale`); the public
answer and the status message in the server's (`messages.public_locale`), which is stored in the
job row (`locale`) so that every later edit and the result keep it; moderator-log lines in the
server's. A private result (ephemeral status, a DM) and anything in a DM or the member's own
space speaks the member's language: it is theirs alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import discord

from bot import metrics
from bot.imagine import ImagineRequest, Plan
from bot.jobs import Job, JobStatus
from bot.logs import kv
from bot.member_settings import MemberDefaults
from bot.queue import Place
from bot.references import Attachment, Fetch
from bot.refusals import Blocked, Refusal, RefusalCode
from bot.scopes import is_personal
from cogs import embeds, messages
from cogs.client import ImageHubBot
from cogs.components import status_view
from cogs.publisher import publisher_of

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
_launch_slots: weakref.WeakKeyDictionary[ImageHubBot, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def to_attachment(a: discord.Attachment, message: discord.Message | None = None) -> Attachment:
    """Our view of a Discord attachment; one from a message remembers where it came from, so its
    signed URL can be renewed by fetching that message again once it expires."""
    source = (message.channel.id, message.id, a.id) if message is not None else None
    return Attachment(url=a.url, filename=a.filename, size=a.size, content_type=a.content_type, source=source)


def image_attachments(message: discord.Message) -> tuple[Attachment, ...]:
    """A message's image attachments (by declared type or extension; bytes are checked later)."""
    found = []
    for a in message.attachments:
        declared = (a.content_type or "").split(";")[0]
        if declared in IMAGE_TYPES or a.filename.lower().endswith((".png", ".jpg", ".jpeg", ".webp")):
            found.append(to_attachment(a, message))
    return tuple(found)


def _expires_soon(url: str, margin: float) -> bool:
    """Whether a signed CDN URL (`ex` = expiry, hex epoch seconds) is expired or within `margin`
    seconds of it (the engine may download it again later, e.g. after a restart)."""
    query = parse_qs(urlsplit(url).query)
    try:
        expires = int(query["ex"][0], 16)
    except (KeyError, IndexError, ValueError):
        return True  # unsigned: Discord no longer serves it
    return expires - time.time() < margin


async def fresh_references(bot: ImageHubBot, request: ImagineRequest) -> ImagineRequest:
    """Renew the expiring CDN URLs of references that came from a message by fetching that message
    again (Discord documents that fetched payloads carry valid signed URLs; the spec has no other
    route for it). A reroll or a form left open after the URLs expired still works; a message that
    is gone, or the bot can't read, is a clear refusal. Slash-command uploads have no message."""
    renewed = await _renew(bot, request.guild_id, request.attachments)
    return request if renewed == request.attachments else replace(request, attachments=renewed)


def renewing_fetch(bot: ImageHubBot, guild_id: int, pending: tuple[Attachment, ...] = ()) -> Fetch:
    """Download a reference; when its URL no longer works (expired early, a clock off), renew it from
    its message once and try again."""

    renewed: dict[tuple[int, int, int], Attachment] = {}  # one fetch of a message serves all its images

    async def fetch(attachment: Attachment) -> bytes:
        try:
            return await bot.services.fetch_reference(attachment)
        except Exception:
            if attachment.source is None:
                raise
        if attachment.source not in renewed:
            siblings = tuple(a for a in pending if a.source and a.source[:2] == attachment.source[:2])
            for fresh in await _renew(bot, guild_id, siblings or (attachment,), force=True):
                assert fresh.source is not None
                renewed[fresh.source] = fresh
        return await bot.services.fetch_reference(renewed[attachment.source])

    return fetch


async def _renew(
    bot: ImageHubBot, guild_id: int, attachments: tuple[Attachment, ...], *, force: bool = False
) -> tuple[Attachment, ...]:
    margin = bot.services.timings.url_margin
    stale = {
        a.source[:2] for a in attachments if a.source is not None and (force or _expires_soon(a.url, margin))
    }
    if not stale:
        return attachments
    fresh: dict[int, str] = {}
    guild = bot.get_guild(guild_id)
    for channel_id, message_id in stale:
        channel = guild.get_channel_or_thread(channel_id) if guild is not None else None
        if channel is not None and guild is not None:
            perms = channel.permissions_for(guild.me)
            if not (perms.view_channel and perms.read_message_history):
                raise Refusal(RefusalCode.REFERENCE_MESSAGE_UNREADABLE)
        try:
            message = await bot.get_partial_messageable(channel_id, guild_id=guild_id).fetch_message(
                message_id
            )
        except discord.NotFound:
            raise Refusal(RefusalCode.REFERENCE_MESSAGE_GONE) from None
        except discord.Forbidden:
            raise Refusal(RefusalCode.REFERENCE_MESSAGE_UNREADABLE) from None
        fresh.update({a.id: a.url for a in message.attachments})
    renewed = []
    for a in attachments:
        if a.source is not None and a.source[:2] in stale:
            url = fresh.get(a.source[2])
            if url is None:
                raise Refusal(RefusalCode.REFERENCE_MESSAGE_GONE)
            a = replace(a, url=url)
        renewed.append(a)
    return tuple(renewed)


class FirstAnswer:
    """An interaction's first answer: the real one when it is ready within `after` seconds,
    else a public "thinking…" (deferred) answer at that time, which the real one then replaces."""

    def __init__(self, interaction: discord.Interaction, after: float) -> None:
        self.interaction = interaction
        #: the member's results go to them only: every answer is ephemeral (set as soon as known)
        self.private = False
        self.deferred = False
        self.answered = False
        self._lock = asyncio.Lock()
        self._deferral: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(after, self._start_deferral)

    def _start_deferral(self) -> None:
        self._deferral = asyncio.create_task(self._defer())

    async def _defer(self) -> None:
        async with self._lock:
            if self.interaction.response.is_done():
                return
            try:
                await self.interaction.response.defer(thinking=True, ephemeral=self.private)
                self.deferred = True
            except discord.HTTPException as exc:
                log.info(kv("imagine.defer_failed", status=exc.status))

    def cancel(self) -> None:
        self._timer.cancel()

    async def public(self, embed: discord.Embed, view: discord.ui.View | None = None) -> int | None:
        """Answer publicly (replacing the "thinking…" answer), or only to the member when their results
        are private; the message's id."""
        self._timer.cancel()
        self.answered = True
        async with self._lock:
            if not self.deferred:
                if view is None:
                    callback = await self.interaction.response.send_message(
                        embed=embed, ephemeral=self.private
                    )
                else:
                    callback = await self.interaction.response.send_message(
                        embed=embed, view=view, ephemeral=self.private
                    )
                return callback.message_id
        if view is None:
            return (await self.interaction.edit_original_response(embed=embed)).id
        return (await self.interaction.edit_original_response(embed=embed, view=view)).id

    async def refuse(self, embed: discord.Embed) -> None:
        """Answer only to the member when nothing was said yet; after a "thinking…" answer, that answer
        becomes the refusal (an edit of the original response: Discord can't turn a public deferral
        ephemeral, and a followup would be a second message)."""
        self._timer.cancel()
        self.answered = True
        async with self._lock:
            if not self.deferred:
                await self.interaction.response.send_message(embed=embed, ephemeral=True)
                return
        await self.interaction.edit_original_response(embed=embed, view=None)


def launch_slots(bot: ImageHubBot) -> asyncio.Semaphore:
    slots = _launch_slots.get(bot)
    if slots is None:
        slots = _launch_slots[bot] = asyncio.Semaphore(bot.services.timings.launch_concurrency)
    return slots


async def launch(bot: ImageHubBot, interaction: discord.Interaction, request: ImagineRequest) -> None:
    """Check, store, answer: see the module docstring. Never raises.

    Cheap checks come first, then the one transaction that reserves and stores the job, so a
    refusal is the first, ephemeral answer and an accepted job's first answer names it. With
    references the reservation comes first and a download slot is taken too (bounded per member
    and per server), the public answer goes next, then their bytes are downloaded and checked (a
    bad one releases the reservation) and the job is stored. Under load the first answer is
    "thinking…" (see `FirstAnswer`): a member always hears back within `Timings.early_answer`
    (`early_answer_in_burst` when many launches are under way).
    Requests checked at once are bounded (`Timings.launch_concurrency`), which keeps the event
    loop's turns short.
    """
    timings, engine = bot.services.timings, bot.services.engine
    burst = engine.launches >= timings.burst_launches  # (this launch not counted yet)
    answer = FirstAnswer(interaction, timings.early_answer_in_burst if burst else timings.early_answer)
    try:
        with engine.launching():  # members waiting for an answer go first
            # One keyed read, well within the early answer: a "thinking…" for a member whose results
            # are private must already be ephemeral (Discord can't make a public answer private later).
            mine = await bot.services.members.get(request.guild_id, request.user_id)
            answer.private = mine.visibility == "private" or is_personal(request.guild_id)
            async with launch_slots(bot):
                await _launch(bot, interaction, request, answer, mine)
    except Exception as exc:
        log.error(kv("imagine.failed", guild=request.guild_id, error=type(exc).__name__), exc_info=exc)
        if not answer.answered:  # never leave "thinking…" (or nothing at all) behind
            with contextlib.suppress(discord.HTTPException):
                await answer.refuse(embeds.refusal(messages.words(interaction.locale)("error.unexpected")))
    finally:
        answer.cancel()


async def _launch(
    bot: ImageHubBot,
    interaction: discord.Interaction,
    request: ImagineRequest,
    answer: FirstAnswer,
    mine: MemberDefaults,
) -> None:
    services = bot.services
    member = messages.words(interaction.locale)  # for what only the member sees
    plan: Plan | None = None
    try:
        request = await fresh_references(bot, request)
        try:
            plan = await services.imagine.plan(request, mine)
        finally:
            await tell_skipped_patterns(bot)
        locale = _job_locale(interaction, answer, plan, member)
        if not plan.request.attachments:
            # Nothing to download: reserve, store and promote in one transaction, then answer
            # with the status naming the job.
            try:
                job = await services.imagine.start(
                    plan,
                    [],
                    application_id=interaction.application_id,
                    interaction_token=interaction.token,
                    upload_limit=interaction.filesize_limit,
                    token_issued_at=interaction.created_at,  # the token's 15 minutes count from here
                    locale=locale,  # every later edit of its public messages speaks the same language
                    lease=(services.engine.owner, services.timings.lease_seconds),
                    # With other launches under way, no group window: groups form by themselves.
                    urgent=services.engine.launches > 1,
                )
            except Refusal:
                raise
            except Exception:  # nothing was stored or held (one transaction): say so, once
                log.exception(kv("imagine.start_failed", guild=request.guild_id, user=request.user_id))
                await answer.refuse(embeds.refusal(member("error.unexpected")))
                return
            await _answer_with_status(bot, interaction, answer, job, messages.words(locale))
            await tell_skipped_settings(interaction, member, plan)
            return
        # Reserved before anything is downloaded: a member who can't pay makes the bot fetch nothing.
        plan = await services.imagine.reserve(plan)
        slot = services.imagine.claim_downloads(plan)  # None without references
    except Refusal as refusal:
        if plan is not None:
            await services.imagine.abandon(plan)  # reserved, but over a download bound
        metrics.COMMANDS.labels("imagine", "refused").inc()
        await answer.refuse(embeds.refusal(messages.refusal(member, refusal)))
        if isinstance(refusal, Blocked):
            await report_blocked(bot, request, refusal)
        return
    public = messages.words(locale)
    try:
        with slot or contextlib.nullcontext():
            first = embeds.first_embed(
                public, plan.request.prompt, plan.cost, queued=plan.queued, own_key=plan.key_owner is not None
            )
            status_message_id = await answer.public(first)
            references = []
            if plan.request.attachments:
                # Downloads can take a while: the public answer went first, within Discord's 3 s.
                fetch = renewing_fetch(bot, request.guild_id, plan.request.attachments)
                references = await services.imagine.fetch_references(plan, fetch)
        job = await services.imagine.start(
            plan,
            references,
            application_id=interaction.application_id,
            interaction_token=interaction.token,
            status_message_id=status_message_id,
            upload_limit=interaction.filesize_limit,
            token_issued_at=interaction.created_at,  # the token's 15 minutes count from here
            locale=locale,  # every later edit of its public messages speaks the same language
        )
    except Refusal as refusal:
        await services.imagine.abandon(plan)  # (start() already did, for its own refusals)
        metrics.COMMANDS.labels("imagine", "refused").inc()
        # The public answer is already out: it becomes the refusal (edited, not a second message).
        # It was public: in the server's language.
        said = embeds.refusal(messages.refusal(public, refusal))
        await interaction.edit_original_response(embed=said, view=None)
        return
    except Exception:
        await services.imagine.abandon(plan)
        log.exception(kv("imagine.start_failed", guild=request.guild_id, user=request.user_id))
        if interaction.response.is_done():
            failed = embeds.refusal(public("error.unexpected"))
            await interaction.edit_original_response(embed=failed, view=None)
        return
    accepted(bot, job)
    services.engine.wake()
    place = await _place(bot, job)
    try:
        finish = services.eta.finish(job, discord.utils.utcnow(), place.starts_at if place else None)
        services.eta.shown(job.id, finish)
        embed = embeds.status_embed(public, job, place, finish)
        await interaction.edit_original_response(embed=embed, view=status_view(public, job))
    except discord.HTTPException as exc:
        log.info(kv("imagine.status_edit_failed", job=job.id, status=exc.status))
    await tell_skipped_settings(interaction, member, plan)
    if not is_personal(job.guild_id):  # a member's own space: the bot never posts in the channel
        await warn_missing_permissions(bot, interaction)


async def tell_skipped_settings(interaction: discord.Interaction, w: messages.Words, plan: Plan) -> None:
    """The member's own settings that no longer fit (a model gone from the hub, an aspect the model
    doesn't offer) were passed over: say so, to the member only, in their language."""
    if plan.resolved is None or not plan.resolved.skipped:
        return
    lines = [
        w("settings.skipped", name=w(f"settings.name.{name}"), value=messages.echo(value))
        for name, value in plan.resolved.skipped
    ]
    try:
        await interaction.followup.send(embed=embeds.refusal("\n".join(lines)), ephemeral=True)
    except discord.HTTPException as exc:
        log.info(kv("imagine.settings_note_failed", status=exc.status))


def _job_locale(
    interaction: discord.Interaction, answer: FirstAnswer, plan: Plan, member: messages.Words
) -> str:
    """The language of the job's public messages, stored with it. A private result (ephemeral
    status, a DM; always in a member's own space) is read by the member alone: their language.
    A public one: the server's."""
    if answer.private:
        return member.language
    return messages.public_locale(plan.config.language, interaction.guild_locale)


def accepted(bot: ImageHubBot, job: Job) -> None:
    metrics.COMMANDS.labels("imagine", "accepted").inc()
    log.info(kv("imagine.accepted", guild=job.guild_id, user=job.user_id, job=job.id, cost=job.cost))


async def _place(bot: ImageHubBot, job: Job) -> Place | None:
    """A queued job's place, remembered as shown (the queue runner re-renders it when it moves)."""
    if job.status is not JobStatus.QUEUED:
        return None
    services = bot.services
    services.queue_runner.changed(job.guild_id)  # a newcomer may go ahead of others' backlog
    place = await services.queue.place(job)
    if place is not None:
        services.queue_runner.shown(job, place)
    return place


async def _answer_with_status(
    bot: ImageHubBot, interaction: discord.Interaction, answer: FirstAnswer, job: Job, public: messages.Words
) -> None:
    """The first answer of a stored job is its status message, naming it. The job was born
    leased to this process's engine: it is let go (with its status message's id) or given to the
    engine with that id once that message exists, so no step runs with a job whose status message
    is not known yet. When Discord refuses the answer, nobody saw the job: it is cancelled and its
    credits returned."""
    services = bot.services
    owner = services.engine.owner
    status_message_id: int | None = None
    try:
        place = await _place(bot, job)
        finish = services.eta.finish(job, discord.utils.utcnow(), place.starts_at if place else None)
        services.eta.shown(job.id, finish)
        embed = embeds.status_embed(public, job, place, finish)
        status_message_id = await answer.public(embed, view=status_view(public, job))
    except BaseException:
        waiting = (JobStatus.QUEUED, JobStatus.PENDING_SUBMIT)
        cancelled = await services.jobs.update_if(job.id, waiting, status=JobStatus.CANCELLED)
        if cancelled is not None and job.reservation_id is not None:
            await services.quotas.ledger.release(job.reservation_id)
        raise
    finally:
        if status_message_id is not None:
            if job.status is JobStatus.PENDING_SUBMIT and services.engine.keeps_jobs:
                # The engine keeps it (still leased to it) and submits it now: no claim, and the
                # status message's id is written with the submission (no write of its own).
                services.engine.launched(replace(job, status_message_id=status_message_id))
            else:  # waiting in the queue: its promotion decides when it starts
                await services.jobs.release(job.id, owner, status_message_id=status_message_id)
                services.engine.launched()
    accepted(bot, job)
    if not is_personal(job.guild_id):  # a member's own space: the bot never posts in the channel
        await warn_missing_permissions(bot, interaction)


async def warn_missing_permissions(bot: ImageHubBot, interaction: discord.Interaction) -> None:
    """Where the bot can't post results itself (no Send Messages, Attach Files, …), a result that
    outlives the interaction's 15 minutes can't reach the channel whole: tell the member now,
    through the interaction (which needs no channel permission), and the moderator log once."""
    missing = embeds.missing_permissions(interaction.app_permissions)
    if not missing or interaction.guild_id is None or interaction.channel_id is None:
        return
    try:
        warning = embeds.permission_warning(messages.words(interaction.locale), missing)
        await interaction.followup.send(embed=warning, ephemeral=True)
    except discord.HTTPException as exc:
        log.info(kv("imagine.permission_warning_failed", status=exc.status))
    await publisher_of(bot).mod_log.missing_at_launch(interaction.guild_id, interaction.channel_id, missing)


async def report_blocked(bot: ImageHubBot, request: ImagineRequest, blocked: Blocked) -> None:
    """Tell the moderator log who tried a blocked prompt where (the prompt in an embed, no mentions)."""
    log.info(kv("imagine.blocked", guild=request.guild_id, user=request.user_id, channel=request.channel_id))
    try:
        mod_log = publisher_of(bot).mod_log
        w = await mod_log.words(request.guild_id)
        await mod_log.post(
            request.guild_id, embeds.blocked_log_embed(w, request.user_id, request.channel_id, blocked.prompt)
        )
    except Exception as exc:
        log.warning(kv("imagine.blocked_log_failed", guild=request.guild_id, error=type(exc).__name__))


async def tell_skipped_patterns(bot: ImageHubBot) -> None:
    """Stored filter patterns the core found over the bounds (told once per process and server)."""
    for guild_id, patterns in bot.services.imagine.take_skipped_patterns():
        try:
            mod_log = publisher_of(bot).mod_log
            await mod_log.post(
                guild_id, embeds.ignored_patterns_embed(await mod_log.words(guild_id), patterns)
            )
        except Exception as exc:
            log.info(kv("filters.ignored_note_failed", guild=guild_id, error=type(exc).__name__))
