"""The engine's `Publisher` on Discord: status edits, result posts, notices, queue places, alerts.

Discord's rules it keeps (each checked by the fake Discord in the tests):
- While a job's interaction token lives, everything goes through it (edits of the status
  message, or a followup): interaction webhooks don't need the bot's channel permissions.
- A status message that answered 404 is never edited again, and a token that answered 401
  is never used again (both also cleared in the job row): no loop of invalid requests.
- A channel post is shaped by the bot's permissions there, read from the cache before the
  call: no Attach Files → links, no Embed Links → plain text, no Read Message History → no
  reply; without View Channel or Send Messages nothing is sent and the moderator log says why.
- One request carries at most 10 files and 25 MiB, each file within the upload limit; a 413
  repacks smaller (the rest as links) and retries at once: never a permanent failure.
- Channel posts carry `nonce` + `enforce_nonce`, so Discord itself dedupes a post repeated
  after a crash within its window.
- A private job (the member's `/settings` visibility) is never posted in the channel: its
  status message is ephemeral, a followup is ephemeral, and once the token is dead its result
  or notice goes to the member by direct message.

Every message about a job is in the job's public language, stored in its row at launch
(`Job.locale`), so a status message edited later keeps the language it started in; moderator-log
lines are in the server's (`ModLog.words`).

The publisher is owned by the delivery extension (`cogs.delivery`), which starts the engine with
it; `publisher_of(bot)` finds it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

import discord
from discord.ext import commands
from discord.http import handle_message_parameters

from bot import metrics
from bot.engine import Notice, NoticeKind, PublishError, Result
from bot.jobs import Job, JobStatus
from bot.logs import kv
from bot.queue import Place
from bot.services import Services
from cogs import attachments, embeds, messages
from cogs.components import result_view
from cogs.modlog import ModLog

log = logging.getLogger(__name__)

# A 413 repacks the files smaller; after this many tries only links are left.
MAX_REPACKS = 5


class EditTimes:
    """When each job's status message was last edited, for the edit throttle: kept only for
    `interval` (older ones throttle nothing), so jobs that end without a result (failed,
    unknown, cancelled) leave nothing behind. Oldest first: pruning is from the front."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
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
            if now - self._at[oldest] < self.interval:
                return
            del self._at[oldest]

    def __len__(self) -> int:
        return len(self._at)


class DiscordPublisher:
    """See the module docstring."""

    def __init__(self, client: discord.Client, services: Services) -> None:
        self.client = client
        self.jobs = services.jobs
        self.timings = services.timings
        self.eta = services.eta
        self.mod_log = ModLog(client, services.guilds, services.timings)
        self._last_edit = EditTimes(self.timings.progress_interval)
        self._last_queue_edit = EditTimes(self.timings.progress_interval)  # positions: throttled apart
        # Jobs whose status message answered 404 / whose token answered 401 (the row forgets them
        # too): forgotten when the job ends, so they hold only running jobs.
        self._gone_status: set[int] = set()
        self._dead_tokens: set[int] = set()

    # -- the interaction token ------------------------------------------------------------------

    def _token_usable(self, job: Job) -> bool:
        """The interaction token still works: stop a little before Discord's 15 minutes run out."""
        return (
            job.id not in self._dead_tokens
            and job.interaction_token is not None
            and job.application_id is not None
            and job.token_expires_at is not None
            and job.token_expires_at - self.timings.token_margin > datetime.now(UTC)
        )

    def _webhook(self, job: Job) -> discord.Webhook:
        assert job.application_id is not None and job.interaction_token is not None
        return discord.Webhook.partial(job.application_id, job.interaction_token, client=self.client)

    def _status_editable(self, job: Job) -> bool:
        return (
            job.status_message_id is not None and job.id not in self._gone_status and self._token_usable(job)
        )

    async def _forget(self, job: Job, exc: discord.HTTPException) -> None:
        """A 404 (message or webhook gone) or 401 (token dead): never use it again, here or after a
        restart (the job row forgets it too)."""
        fields: dict[str, Any] = {}
        if exc.status == 401 or (exc.status == 404 and exc.code == 10015):  # the token: expired, unknown
            self._dead_tokens.add(job.id)
            fields["interaction_token"] = None
        else:  # 404 Unknown Message: the status message was deleted
            self._gone_status.add(job.id)
            fields["status_message_id"] = None
        log.info(kv("publish.status_gone", job=job.id, status=exc.status, code=exc.code))
        with contextlib.suppress(Exception):
            await self.jobs.update(job.id, None, **fields)

    async def _edit_status(self, job: Job, **fields: Any) -> discord.Message | None:
        """Edit the status message through the token; None when that is no longer possible."""
        assert job.status_message_id is not None
        try:
            return await self._webhook(job).edit_message(job.status_message_id, **fields)
        except discord.HTTPException as exc:
            if exc.status not in (401, 404):
                raise
            await self._forget(job, exc)
            return None

    # -- progress ------------------------------------------------------------------------------

    async def progress(self, job: Job) -> None:
        if not self._status_editable(job):
            return
        now = time.monotonic()
        if now - self._last_edit.last(job.id, now) < self.timings.progress_interval:
            return
        self._last_edit.mark(job.id, now)
        finish = self.eta.finish(job, datetime.now(UTC))  # the steps remember it as shown
        await self._edit_status(job, embed=embeds.status_embed(_words(job), job, finish=finish))

    async def queued(self, job: Job, place: Place) -> bool:
        """Show a queued job's place (the `QueueNotifier`); False when throttled.

        At most one such edit per message per `progress_interval`, and none within it after a
        progress edit. Position edits don't hold back `progress` (a job just promoted must not
        keep saying "waiting"), and one that is no longer queued is left alone.
        """
        if not self._status_editable(job):
            return True
        now = time.monotonic()
        last = max(self._last_edit.last(job.id, now), self._last_queue_edit.last(job.id, now))
        if now - last < self.timings.progress_interval:
            return False
        current = await self.jobs.get(job.id)
        if current is None or current.status is not JobStatus.QUEUED:
            self._last_queue_edit.forget(job.id)
            return True
        self._last_queue_edit.mark(job.id, now)
        finish = self.eta.finish(current, datetime.now(UTC), place.starts_at)
        await self._edit_status(job, embed=embeds.status_embed(_words(current), current, place, finish))
        return True

    async def low_balance(self, guild_id: int, credits: int, threshold: int) -> None:
        """The one low-balance alert, in the moderator log."""
        w = await self.mod_log.words(guild_id)
        await self.mod_log.post(guild_id, embeds.low_balance_embed(w, credits, threshold))

    # -- results ------------------------------------------------------------------------------

    async def result(self, job: Job, result: Result) -> list[int]:
        self._last_edit.forget(job.id)
        limit = job.upload_limit or self._upload_limit(job)
        budget = attachments.FILES_BUDGET
        try:
            for attempt in range(MAX_REPACKS):
                if attempt == MAX_REPACKS - 1:
                    budget = 0  # the last try: links only
                files, links = attachments.result_files(job, result, limit, total=budget)
                if not files and not links:
                    await self.notice(job, Notice(NoticeKind.DOWNLOAD_FAILED, charged=result.charged))
                    return []
                try:
                    posted = await self._post_result(job, result, files, links)
                    self._ended(job.id)
                    return posted
                except discord.HTTPException as exc:
                    if exc.status != 413 or not files:
                        raise
                    # Too large for Discord after all (a limit lower than we knew): fewer bytes per
                    # request, the rest as links, and at last links only. Paid for: never given up.
                    sent = sum(len(image.data or b"") for image in result.images if image.url not in links)
                    budget = sent // 2 if len(files) > 1 else 0
                    log.info(kv("publish.too_large", job=job.id, files=len(files), next_budget=budget))
            raise PublishError("413 even without files", permanent=False)
        except (discord.NotFound, discord.Forbidden) as exc:
            metrics.DISCORD_ERRORS.labels(str(exc.status)).inc()
            raise PublishError(f"{exc.status} {exc.text}", permanent=True) from None
        except discord.HTTPException as exc:
            metrics.DISCORD_ERRORS.labels(str(exc.status)).inc()
            raise PublishError(
                f"{exc.status} {exc.text}", permanent=exc.status < 500 and exc.status not in (413, 429)
            ) from None
        except (TimeoutError, OSError) as exc:
            raise PublishError(repr(exc), permanent=False) from None

    async def _post_result(
        self, job: Job, result: Result, files: list[discord.File], links: list[str]
    ) -> list[int]:
        w = _words(job)
        embed = embeds.result_embed(w, job, result, links)
        view = result_view(w, job)
        if self._status_editable(job):
            message = await self._edit_status(job, embed=embed, attachments=files, view=view)
            if message is not None:
                return [message.id]
            for file in files:
                file.reset()
        if self._token_usable(job):
            # The status message is gone but the token lives: a followup through the interaction
            # (no channel permission needed); only to the member when their results are private.
            try:
                sent = await self._webhook(job).send(
                    embed=embed,
                    files=files,
                    view=view,
                    wait=True,
                    allowed_mentions=embeds.NO_MENTIONS,
                    ephemeral=job.private,
                )
                return [sent.id]
            except discord.HTTPException as exc:
                if exc.status not in (401, 404):
                    raise
                await self._forget(job, exc)
                for file in files:
                    file.reset()
        if job.private:
            return await self._post_to_member(job, embed, files)
        return await self._post_to_channel(job, result, files, links)

    async def _post_to_member(self, job: Job, embed: discord.Embed, files: list[discord.File]) -> list[int]:
        """A private result once the interaction's token is dead: a direct message to the member
        (never the channel). Without buttons: they act on a server's job, and a DM has no server.
        With a nonce, like channel posts: a post repeated after a crash is not a second message."""
        dm = await self._dm(job.user_id)
        fields = {"embed": embed, "files": files, "allowed_mentions": embeds.NO_MENTIONS}
        return [await self._send_with_nonce(dm.id, f"job-{job.id}", **fields)]

    async def _dm(self, user_id: int) -> discord.DMChannel:
        user = self.client.get_user(user_id) or await self.client.fetch_user(user_id)
        return user.dm_channel or await user.create_dm()

    async def _post_to_channel(
        self, job: Job, result: Result, files: list[discord.File], links: list[str]
    ) -> list[int]:
        perms = self._permissions(job)
        missing = embeds.missing_permissions(perms) if perms is not None else []
        blocking = [m for m in missing if m in embeds.BLOCKING]
        if blocking:
            w = await self.mod_log.words(job.guild_id)
            line = embeds.missing_permission_line(w, job.channel_id, blocking, job.id)
            await self.mod_log.report(job.guild_id, job.channel_id, blocking, line)
            names = ", ".join(
                embeds.permission_name(messages.words("en"), m) for m in blocking
            )  # for operators
            raise PublishError(f"missing {names} in channel {job.channel_id}", permanent=True)
        reduced = [m for m in missing if m in embeds.REDUCING]
        if "attach_files" in missing and files:
            files, links = [], [image.url for image in result.images if image.data is not None]
        w = _words(job)
        embed = embeds.result_embed(w, job, result, links)
        history = "read_message_history" not in missing
        channel = self._channel(job)
        if history:
            earlier = await self._posted_earlier(channel, job)
            if earlier is not None:
                log.info(kv("publish.already_posted", job=job.id, message=earlier.id))
                return [earlier.id]
        reference = (
            discord.MessageReference(
                message_id=job.status_message_id, channel_id=job.channel_id, fail_if_not_exists=False
            )
            if job.status_message_id and history and job.id not in self._gone_status
            else None
        )
        with_embed = "embed_links" not in missing
        message_id = await self._send_with_nonce(
            job.channel_id,
            f"job-{job.id}",
            content=None if with_embed else embeds.embed_as_text(embed),
            embed=embed if with_embed else None,
            files=files,
            view=result_view(w, job),
            message_reference=reference.to_message_reference_dict() if reference else None,
            allowed_mentions=embeds.NO_MENTIONS,
        )
        if reduced:
            line = embeds.degraded_line(
                await self.mod_log.words(job.guild_id), job.channel_id, reduced, job.id
            )
            await self.mod_log.report(job.guild_id, job.channel_id, reduced, line)
        return [message_id]

    async def _send_with_nonce(self, channel_id: int, nonce: str, **fields: Any) -> int:
        """POST a channel message with `nonce` and `enforce_nonce` (discord.py's `send` has no
        `enforce_nonce`): within Discord's window, the same nonce returns the message it already
        made instead of a second one."""
        fields = {k: v for k, v in fields.items() if v is not None}
        with handle_message_parameters(nonce=nonce, **fields) as params:
            if params.payload is not None:
                params.payload["enforce_nonce"] = True
            elif params.multipart:
                body = json.loads(params.multipart[0]["value"])
                body["enforce_nonce"] = True
                params.multipart[0]["value"] = json.dumps(body)
            data = await self.client.http.send_message(channel_id, params=params)
        return int(data["id"])

    async def _posted_earlier(self, channel: discord.PartialMessageable, job: Job) -> discord.Message | None:
        """This job's result if an earlier attempt already posted it to the channel: the bot can die
        after Discord stored the post and before the job was marked posted. `enforce_nonce` covers
        a retry within Discord's few minutes; this covers a restart after a longer outage."""
        me = self.client.user
        marker = re.compile(rf"(?<!\w){re.escape(_words(job)('job.footer', job=job.id))}\b")
        try:
            async for message in channel.history(limit=50):
                if (
                    me is not None
                    and message.author.id == me.id
                    and (message.attachments or marker.search(message.content))
                    and (
                        any(marker.search(embed.footer.text or "") for embed in message.embeds)
                        or marker.search(message.content)
                    )
                ):
                    return message
        except discord.HTTPException as exc:
            log.info(kv("publish.history_failed", job=job.id, status=exc.status))
        return None

    # -- notices ------------------------------------------------------------------------------------

    async def notice(self, job: Job, notice: Notice) -> None:
        try:
            await self._notice(job, notice)
        finally:
            self._ended(job.id)

    async def _notice(self, job: Job, notice: Notice) -> None:
        embed = embeds.notice_embed(_words(job), job, notice)
        if self._status_editable(job):
            try:
                if await self._edit_status(job, embed=embed, view=None) is not None:
                    if notice.kind == NoticeKind.OUTCOME_UNKNOWN:
                        await self.mod_log.post(job.guild_id, embed)
                    return
            except discord.HTTPException as exc:
                log.info(kv("notice.edit_failed", job=job.id, status=exc.status))
        if job.private:  # never in the channel: to the member directly
            await (await self._dm(job.user_id)).send(embed=embed, allowed_mentions=embeds.NO_MENTIONS)
            return
        perms = self._permissions(job)
        missing = embeds.missing_permissions(perms) if perms is not None else []
        blocking = [m for m in missing if m in embeds.BLOCKING]
        if blocking:
            line = embeds.missing_permission_line(
                await self.mod_log.words(job.guild_id), job.channel_id, blocking
            )
            await self.mod_log.report(job.guild_id, job.channel_id, blocking, line)
        else:
            mention = discord.AllowedMentions(users=[discord.Object(job.user_id)])
            content = embeds.user(job.user_id)
            if "embed_links" in missing:
                await self._channel(job).send(
                    content=f"{content} {embeds.embed_as_text(embed)}"[:2000], allowed_mentions=mention
                )
            else:
                await self._channel(job).send(content=content, embed=embed, allowed_mentions=mention)
        if notice.kind == NoticeKind.OUTCOME_UNKNOWN:
            await self.mod_log.post(job.guild_id, embed)

    def _ended(self, job_id: int) -> None:
        """The job has ended (result posted, or told why not): what was kept for it goes."""
        self._last_edit.forget(job_id)
        self._last_queue_edit.forget(job_id)
        self._gone_status.discard(job_id)
        self._dead_tokens.discard(job_id)

    # -- the cache --------------------------------------------------------------------------------

    def _permissions(self, job: Job) -> discord.Permissions | None:
        """The bot's permissions in the job's channel from the cache (None when not cached)."""
        guild = self.client.get_guild(job.guild_id)
        channel = guild.get_channel_or_thread(job.channel_id) if guild is not None else None
        if guild is None or channel is None:
            return None
        return channel.permissions_for(guild.me)

    def _channel(self, job: Job) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)

    def _upload_limit(self, job: Job) -> int:
        guild = self.client.get_guild(job.guild_id)
        return guild.filesize_limit if guild is not None else 10 * 1024 * 1024


def _words(job: Job) -> messages.Words:
    """The job's public language, chosen at launch (a job stored before languages existed: English)."""
    return messages.words(job.locale)


def publisher_of(bot: commands.bot.BotBase) -> DiscordPublisher:
    """The running publisher (owned by the delivery extension, `cogs.delivery`)."""
    publisher = getattr(bot.get_cog("Delivery"), "publisher", None)
    if not isinstance(publisher, DiscordPublisher):
        raise RuntimeError("the delivery extension is not loaded")
    return publisher
