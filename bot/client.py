"""The Discord client: the one module of `bot/` that imports discord.

It owns the `Services`, starts the scheduler, loads the cogs and implements the scheduler's
`Publisher` (status edits, result posts, notices). Everything else about a generation is
decided in discord-free modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import discord
from discord.ext import commands

from bot import metrics
from bot.jobs import Job, JobStatus
from bot.logs import kv
from bot.queue import Place, QueueRunner
from bot.scheduler import Notice, NoticeKind, PublishError, Result, Scheduler
from bot.services import Services

log = logging.getLogger(__name__)

COGS = ("cogs.imagine", "cogs.info", "cogs.admin", "cogs.history")
PROGRESS_MIN_INTERVAL = 5.0
# Stop using the interaction webhook a little before Discord's 15 minutes run out.
TOKEN_MARGIN = timedelta(seconds=30)


class ImageHubBot(commands.AutoShardedBot):
    """See the module docstring."""

    def __init__(self, services: Services, **options: object) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            **options,  # type: ignore[arg-type]
        )
        self.services = services
        self.publisher = DiscordPublisher(self)
        self.scheduler = Scheduler(
            jobs=services.jobs,
            quotas=services.quotas,
            hubs=services.hubs,
            publisher=self.publisher,
            references=services.references,
            owner=services.owner,
            concurrency=services.settings.max_concurrent_polls,
            retention=timedelta(days=services.settings.job_retention_days),
            lease_seconds=services.settings.job_lease_seconds,
        )
        # The local queue: promoted before every claim, positions shown on status messages.
        self.queue_runner = QueueRunner(services.queue, self.publisher)
        self.scheduler.before_claim = self.queue_runner.tick
        services.balance.notify = self.publisher.low_balance
        services.imagine.on_ignored_patterns = self.publisher.ignored_patterns
        self._scheduler_task: asyncio.Task[None] | None = None
        self._loop_lag_task: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        from cogs.views import JobButton

        if self.services.settings.loop_lag_sampling:
            self._loop_lag_task = asyncio.create_task(metrics.sample_loop_lag(), name="loop-lag")
        for name in COGS:
            await self.load_extension(name)
        self.add_dynamic_items(JobButton)
        self.services.catalog.warm()  # fetch the model list in the background before anyone asks
        guild_id = self.services.settings.dev_guild_id
        if guild_id is not None:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        self._scheduler_task = asyncio.create_task(self.scheduler.run(), name="scheduler")
        self._scheduler_task.add_done_callback(self._scheduler_ended)

    async def close(self) -> None:
        await self.scheduler.stop()
        if self._scheduler_task is not None:
            # The loop ends by itself once stopped; cancelling it mid-query would leave a
            # connection half rolled back. Cancel only if it does not end in time.
            done, _ = await asyncio.wait({self._scheduler_task}, timeout=10)
            if not done:
                self._scheduler_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._scheduler_task
        await self.queue_runner.close()
        if self._loop_lag_task is not None:
            self._loop_lag_task.cancel()
        await super().close()
        await self.services.close()

    def _scheduler_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical(kv("scheduler.died", error=repr(task.exception())), exc_info=task.exception())

    def scheduler_alive(self) -> bool:
        """For /healthz: the scheduler loop is running (or the bot has not started it yet)."""
        return self._scheduler_task is None or not self._scheduler_task.done()

    def token_usable(self, job: Job) -> bool:
        return (
            job.interaction_token is not None
            and job.application_id is not None
            and job.token_expires_at is not None
            and job.token_expires_at - TOKEN_MARGIN > datetime.now(UTC)
        )

    def interaction_webhook(self, job: Job) -> discord.Webhook:
        assert job.application_id is not None and job.interaction_token is not None
        return discord.Webhook.partial(job.application_id, job.interaction_token, client=self)


class EditTimes:
    """When each job's status message was last edited, for the edit throttle: kept only for
    `PROGRESS_MIN_INTERVAL` (older ones throttle nothing), so jobs that end without a result
    (failed, unknown, cancelled) leave nothing behind. Oldest first: pruning is from the front."""

    def __init__(self) -> None:
        self._at: dict[int, float] = {}

    def last(self, job_id: int, now: float) -> float:
        self._prune(now)
        return self._at.get(job_id, 0.0)

    def mark(self, job_id: int, now: float) -> None:
        self._at.pop(job_id, None)
        self._at[job_id] = now
        self._prune(now)

    def forget(self, job_id: int) -> None:
        self._at.pop(job_id, None)

    def _prune(self, now: float) -> None:
        while self._at:
            oldest = next(iter(self._at))
            if now - self._at[oldest] < PROGRESS_MIN_INTERVAL:
                return
            del self._at[oldest]

    def __len__(self) -> int:
        return len(self._at)


class DiscordPublisher:
    """The scheduler's `Publisher`: status edits, result posts and notices through Discord."""

    def __init__(self, bot: ImageHubBot) -> None:
        self.bot = bot
        self._last_edit = EditTimes()
        self._last_queue_edit = EditTimes()  # queue positions: throttled on their own

    async def progress(self, job: Job) -> None:
        from cogs import render

        if job.status_message_id is None or not self.bot.token_usable(job):
            return
        now = time.monotonic()
        if now - self._last_edit.last(job.id, now) < PROGRESS_MIN_INTERVAL:
            return
        self._last_edit.mark(job.id, now)
        await self.bot.interaction_webhook(job).edit_message(
            job.status_message_id, embed=render.status_embed(job)
        )

    async def queued(self, job: Job, place: Place) -> bool:
        """Show a queued job's place (the `QueueNotifier`); False when throttled.

        At most one such edit per message per PROGRESS_MIN_INTERVAL, and none within it after a
        progress edit. Position edits don't hold back `progress` (a job just promoted must not
        keep saying "waiting"), and one that is no longer queued is left alone.
        """
        from cogs import render

        if job.status_message_id is None or not self.bot.token_usable(job):
            return True
        now = time.monotonic()
        last = max(self._last_edit.last(job.id, now), self._last_queue_edit.last(job.id, now))
        if now - last < PROGRESS_MIN_INTERVAL:
            return False
        current = await self.bot.services.jobs.get(job.id)
        if current is None or current.status is not JobStatus.QUEUED:
            self._last_queue_edit.forget(job.id)
            return True
        self._last_queue_edit.mark(job.id, now)
        await self.bot.interaction_webhook(job).edit_message(
            job.status_message_id, embed=render.status_embed(current, place)
        )
        return True

    async def low_balance(self, guild_id: int, credits: int, threshold: int) -> None:
        """The one low-balance alert, in the moderator log."""
        from cogs import render

        await self.mod_log(guild_id, render.low_balance_embed(credits, threshold))

    async def ignored_patterns(self, guild_id: int, ignored: Sequence[str]) -> None:
        """Moderator log: stored filter patterns skipped for breaking the cost bounds."""
        from cogs import render

        await self.mod_log(guild_id, render.ignored_patterns_embed(ignored))

    async def result(self, job: Job, result: Result) -> list[int]:
        from cogs import render
        from cogs.views import result_view

        self._last_edit.forget(job.id)
        limit = job.upload_limit or self._upload_limit(job)
        files, links = render.result_files(job, result, limit)
        if not files and not links:
            await self.notice(job, Notice(NoticeKind.DOWNLOAD_FAILED, charged=result.charged))
            return []
        embed = render.result_embed(job, result, links)
        view = result_view(job)
        try:
            if self.bot.token_usable(job) and job.status_message_id is not None:
                try:
                    message = await self.bot.interaction_webhook(job).edit_message(
                        job.status_message_id, embed=embed, attachments=files, view=view
                    )
                    return [message.id]
                except discord.HTTPException as exc:
                    if exc.status not in (401, 403, 404):
                        raise
                    # The token died early (expired, message deleted): fall back to the channel.
                    log.info(kv("publish.webhook_failed", job=job.id, status=exc.status))
                    for file in files:
                        file.reset()
            channel = self._channel(job)
            earlier = await self._posted_earlier(channel, job)
            if earlier is not None:
                log.info(kv("publish.already_posted", job=job.id, message=earlier.id))
                return [earlier.id]
            reference = (
                discord.MessageReference(
                    message_id=job.status_message_id, channel_id=job.channel_id, fail_if_not_exists=False
                )
                if job.status_message_id
                else None
            )
            sent = await channel.send(
                embed=embed,
                files=files,
                view=view,
                reference=reference,  # type: ignore[arg-type]
                nonce=f"job-{job.id}",
                allowed_mentions=discord.AllowedMentions.none(),
            )
            return [sent.id]
        except (discord.NotFound, discord.Forbidden) as exc:
            metrics.DISCORD_ERRORS.labels(str(exc.status)).inc()
            raise PublishError(f"{exc.status} {exc.text}", permanent=True) from None
        except discord.HTTPException as exc:
            metrics.DISCORD_ERRORS.labels(str(exc.status)).inc()
            raise PublishError(
                f"{exc.status} {exc.text}", permanent=exc.status < 500 and exc.status != 429
            ) from None
        except (TimeoutError, OSError) as exc:
            raise PublishError(repr(exc), permanent=False) from None

    async def _posted_earlier(self, channel: discord.PartialMessageable, job: Job) -> discord.Message | None:
        """This job's result if an earlier attempt already posted it to the channel: the bot can die
        after Discord stored the post and before the job was marked posted (a nonce doesn't dedupe)."""
        me = self.bot.user
        marker = re.compile(rf"\bjob #{job.id}\b")
        try:
            async for message in channel.history(limit=50):
                if (
                    me is not None
                    and message.author.id == me.id
                    and message.attachments
                    and any(marker.search(embed.footer.text or "") for embed in message.embeds)
                ):
                    return message
        except discord.HTTPException as exc:
            log.info(kv("publish.history_failed", job=job.id, status=exc.status))
        return None

    async def notice(self, job: Job, notice: Notice) -> None:
        from cogs import render

        self._last_edit.forget(job.id)  # the job has ended
        self._last_queue_edit.forget(job.id)
        embed = render.notice_embed(job, notice)
        if self.bot.token_usable(job) and job.status_message_id is not None:
            try:
                await self.bot.interaction_webhook(job).edit_message(
                    job.status_message_id, embed=embed, view=None
                )
            except discord.HTTPException:
                await self._channel(job).send(embed=embed, allowed_mentions=discord.AllowedMentions.none())
        else:
            await self._channel(job).send(
                content=f"<@{job.user_id}>",
                embed=embed,
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(job.user_id)]),
            )
        if notice.kind == NoticeKind.OUTCOME_UNKNOWN:
            await self.mod_log(job.guild_id, embed)

    async def mod_log(self, guild_id: int, embed: discord.Embed) -> None:
        """Post to the server's moderator log channel, if it set one."""
        config = await self.bot.services.guilds.get(guild_id)
        if config.mod_log_channel_id is None:
            return
        try:
            channel = self.bot.get_partial_messageable(config.mod_log_channel_id, guild_id=guild_id)
            await channel.send(embed=embed, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.warning(kv("modlog.failed", guild=guild_id, status=exc.status))

    def _channel(self, job: Job) -> discord.PartialMessageable:
        return self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)

    def _upload_limit(self, job: Job) -> int:
        guild = self.bot.get_guild(job.guild_id)
        return guild.filesize_limit if guild is not None else 10 * 1024 * 1024
