"""Turning a member's /imagine into a durable job — every check before any credit moves.

Two phases, because Discord wants an answer within 3 s: `plan()` does the checks that need
only the database (options, channel, key, budget, queue), so a refusal can be the first,
ephemeral answer; `reserve()` then takes the exact cost. Reference images are downloaded only
after that, within `ReferenceDownloads`' bounds (one request per member at a time, a few per
server), so a member who can't pay for a request makes the bot download nothing; a bad image
releases the reservation. `start()` stores the job.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot import filters
from bot.catalog import ModelCatalog
from bot.guild_settings import GuildConfig, GuildSettingsStore
from bot.hub import HubError, HubModel, Reference
from bot.hub.sizes import QUALITIES, size_for
from bot.job_store import JobStore
from bot.jobs import Job, JobParams, JobStatus, ReferenceSpec
from bot.keys import KeyUnreadable, KeyVault
from bot.logs import kv
from bot.queue import JobQueue, QueueFull
from bot.quotas import Ledger, QuotaExceeded
from bot.references import (
    Attachment,
    BadReference,
    DownloadSlot,
    Fetch,
    ReferenceCache,
    ReferenceDownloads,
    check_declared_size,
    check_reference,
)
from bot.refusals import Blocked, Refusal

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 4000
MAX_COUNT = 4
INTERACTION_TOKEN_LIFETIME = timedelta(minutes=15)
_INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad]")


@dataclass(frozen=True, slots=True)
class ImagineRequest:
    guild_id: int
    channel_id: int
    user_id: int
    role_ids: tuple[int, ...]
    prompt: str
    model: str | None = None
    aspect: str | None = None
    resolution: str | None = None
    quality: str | None = None
    count: int | None = None
    attachments: tuple[Attachment, ...] = ()
    is_moderator: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """A request that passed every cheap check; `cost` is exact. Reserved once `reservation_id` is set."""

    request: ImagineRequest
    params: JobParams
    model: HubModel
    cost: int
    config: GuildConfig
    reservation_id: int | None = None
    queued: bool = False  # at a concurrency limit when planned: the job will wait in the queue


def _echo(value: str, limit: int = 40) -> str:
    """A member's option value, shortened for quoting back (options are free text)."""
    value = value.replace("`", "'")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def clean_prompt(text: str) -> str:
    """Normalise the prompt: NFC, no invisible characters, trimmed."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFC", text)).strip()


IgnoredPatterns = Callable[[int, Sequence[str]], Awaitable[None]]


class ImagineService:
    """See the module docstring."""

    def __init__(
        self,
        *,
        settings: GuildSettingsStore,
        catalog: ModelCatalog,
        keys: KeyVault,
        ledger: Ledger,
        jobs: JobStore,
        reference_cache: ReferenceCache,
        queue: JobQueue | None = None,
        filter_runner: filters.FilterRunner | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.keys = keys
        self.ledger = ledger
        self.jobs = jobs
        self.reference_cache = reference_cache
        self.queue = queue
        self.filters = filter_runner or filters.FilterRunner()
        self.downloads = ReferenceDownloads()
        # Told (once per process and server) about stored patterns skipped for breaking the bounds.
        self.on_ignored_patterns: IgnoredPatterns | None = None
        self._told_ignored: dict[int, tuple[str, ...]] = {}

    async def prompt_blocked(self, config: GuildConfig, prompt: str) -> bool:
        """The server's word and pattern filters, matched off the event loop (`bot.filters`); a match
        blocks without saying which rule."""
        verdict = await self.filters.check(
            config.guild_id, config.blocked_words, config.blocked_patterns, prompt
        )
        if verdict.ignored and self._told_ignored.get(config.guild_id) != verdict.ignored:
            if len(self._told_ignored) >= 4096:
                self._told_ignored.clear()
            self._told_ignored[config.guild_id] = verdict.ignored
            log.warning(kv("filters.patterns_ignored", guild=config.guild_id, count=len(verdict.ignored)))
            if self.on_ignored_patterns is not None:
                try:
                    await self.on_ignored_patterns(config.guild_id, verdict.ignored)
                except Exception as exc:
                    log.info(
                        kv("filters.ignored_note_failed", guild=config.guild_id, error=type(exc).__name__)
                    )
        return verdict.blocked

    async def plan(self, request: ImagineRequest) -> Plan:
        config = await self.settings.get(request.guild_id)
        if config.allowed_channel_ids and request.channel_id not in config.allowed_channel_ids:
            channels = ", ".join(f"<#{c}>" for c in config.allowed_channel_ids)
            raise Refusal(f"Image generation isn't enabled in this channel. Try {channels}.")
        prompt = clean_prompt(request.prompt)
        if not prompt:
            raise Refusal("Your prompt is empty. Describe the image you want.")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise Refusal(f"Your prompt is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
        if await self.prompt_blocked(config, prompt):
            raise Blocked(prompt)

        try:
            models = await self.catalog.models()
        except HubError:
            raise Refusal("The image hub can't be reached right now. Please try again in a minute.") from None
        model_id = request.model or config.default_model
        model = next((m for m in models if m.id == model_id), None)
        if model is None:
            known = ", ".join(f"`{m.id}`" for m in models[:20]) or "none"
            raise Refusal(f"There is no model called `{_echo(model_id)}`. Available: {known}.")
        aspect = request.aspect or config.default_aspect
        if aspect not in model.aspect_ratios:
            raise Refusal(f"`{model.id}` doesn't support the aspect `{_echo(aspect)}`. See /models.")
        tier = (request.resolution or config.default_resolution).upper()
        if tier not in model.credits:
            raise Refusal(f"`{model.id}` doesn't offer the resolution `{_echo(tier)}`. See /models.")
        quality = request.quality or config.default_quality
        if quality not in QUALITIES:
            raise Refusal(f"Quality must be one of {', '.join(QUALITIES)}.")
        count = request.count if request.count is not None else 1
        if not 1 <= count <= MAX_COUNT:
            raise Refusal(f"You can ask for 1 to {MAX_COUNT} images at a time.")
        if len(request.attachments) > model.reference_image_limit:
            raise Refusal(
                f"`{model.id}` takes at most {model.reference_image_limit} reference images; "
                f"you gave {len(request.attachments)}."
            )
        for attachment in request.attachments:
            try:
                check_declared_size(attachment.filename, attachment.size)
            except BadReference as exc:
                raise Refusal(str(exc)) from None

        try:
            key = await self.keys.get_key(request.guild_id)
        except KeyUnreadable:
            raise Refusal(
                "This server's stored hub key can't be read (the bot's encryption key changed). "
                "A moderator needs to set it again with `/config key set`."
            ) from None
        if key is None:
            raise Refusal(
                "This server has no image hub key yet. A moderator can set one with `/config key set`."
            )

        try:
            size = size_for(aspect, tier)
        except ValueError:  # the hub lists a ratio or tier this bot cannot turn into a size
            raise Refusal(f"`{model.id}` at {_echo(aspect)} and {_echo(tier)} isn't supported yet.") from None
        cost = model.cost(tier, count)
        queued = await self._check_capacity(request, config, cost)
        params = JobParams(
            model=model.id,
            prompt=prompt,
            aspect=aspect,
            tier=tier,
            quality=quality,
            n=count,
            size=size,
            references=tuple(
                ReferenceSpec(
                    url=a.url,
                    filename=a.filename,
                    content_type=a.content_type or "",
                    size=a.size,
                    source=a.source,
                )
                for a in request.attachments
            ),
        )
        return Plan(
            request=replace(request, prompt=prompt),
            params=params,
            model=model,
            cost=cost,
            config=config,
            queued=queued,
        )

    async def _check_capacity(self, request: ImagineRequest, config: GuildConfig, cost: int) -> bool:
        """Whether the job will wait in the queue (at a concurrency limit, or behind the member's
        own waiting jobs); a full queue refuses. A cheap read: the queue's lengths are decided for
        good when the job is stored (`JobQueue.admission`). Without a queue, a limit refuses."""
        guild_id, user_id = request.guild_id, request.user_id
        if self.queue is None:
            if (
                await self.jobs.count_active(guild_id, user_id) >= config.max_concurrent_per_member
                or await self.jobs.count_active(guild_id) >= config.max_concurrent_per_guild
            ):
                raise Refusal(
                    "This server has as many generations running as it allows. Try again in a minute."
                )
            queued = False
        else:
            try:
                queued = await self.queue.room(guild_id, user_id, config)
            except QueueFull as full:
                raise _queue_refusal(full) from None
        budget = await self.ledger.budget(request.guild_id, request.user_id, request.role_ids)
        if budget.remaining is not None and budget.remaining < cost:
            raise Refusal(_quota_text(cost, budget.remaining, budget.resets_at))
        return queued

    async def reserve(self, plan: Plan) -> Plan:
        """Reserve the exact cost; atomic, so racing requests can never over-spend a budget."""
        request = plan.request
        try:
            reservation = await self.ledger.reserve(
                request.guild_id, request.user_id, request.role_ids, plan.cost
            )
        except QuotaExceeded as exc:
            raise Refusal(_quota_text(plan.cost, exc.remaining, exc.resets_at)) from None
        return replace(plan, reservation_id=reservation.id)

    async def abandon(self, plan: Plan) -> None:
        """Give a reserved plan's credits back (the request could not be started)."""
        if plan.reservation_id is not None:
            await self.ledger.release(plan.reservation_id)

    def claim_downloads(self, plan: Plan) -> DownloadSlot | None:
        """A download slot for the plan's references (None without any), or `Refusal` when the
        member, the server or the process has as many downloads under way as allowed."""
        attachments = plan.request.attachments
        if not attachments:
            return None
        size = sum(max(0, a.size) for a in attachments)
        return self.downloads.claim(plan.request.guild_id, plan.request.user_id, size)

    async def fetch_references(self, plan: Plan, fetch: Fetch) -> list[Reference]:
        """Download the attachments and check them by their bytes. Call it with the plan reserved
        and a `claim_downloads` slot held: nothing is downloaded for a request that can't be paid."""
        return [await self._fetch_checked(a, fetch) for a in plan.request.attachments]

    async def start(
        self,
        plan: Plan,
        references: Sequence[Reference],
        *,
        application_id: int | None,
        interaction_token: str | None,
        status_message_id: int | None = None,
        upload_limit: int | None = None,
        token_issued_at: datetime | None = None,
    ) -> Job:
        """Store the job for a reserved plan. All or nothing: any failure releases the credits.

        The interaction token lives 15 minutes from the interaction's creation (`token_issued_at`,
        its snowflake time), not from now: checks and downloads before this may have taken a while."""
        assert plan.reservation_id is not None, "reserve() first"
        request = plan.request
        created = token_issued_at or datetime.now(UTC)
        job: Job | None = None
        admit = self.queue.admission(request.guild_id, request.user_id, plan.config) if self.queue else None
        try:
            job = await self.jobs.create(
                guild_id=request.guild_id,
                channel_id=request.channel_id,
                user_id=request.user_id,
                application_id=application_id,
                interaction_token=interaction_token,
                token_expires_at=created + INTERACTION_TOKEN_LIFETIME if interaction_token else None,
                params=plan.params,
                cost=plan.cost,
                reservation_id=plan.reservation_id,
                status_message_id=status_message_id,
                upload_limit=upload_limit,
                # With a queue every job starts `queued`: only the queue's locked promotion
                # makes jobs active, which keeps the concurrency limits exact.
                status=JobStatus.QUEUED if self.queue is not None else JobStatus.PENDING_SUBMIT,
                admit=admit,
            )
            await self.ledger.attach(plan.reservation_id, job.id)
        except BaseException as exc:
            if job is not None:  # stored but not tied to its credits: it must never run
                await self.jobs.update_if(
                    job.id, (JobStatus.QUEUED, JobStatus.PENDING_SUBMIT), status=JobStatus.CANCELLED
                )
            await self.abandon(plan)
            if isinstance(exc, QueueFull):  # lost a race for the last place in the queue
                raise _queue_refusal(exc) from None
            raise
        self.reference_cache.put(job.id, references)
        if self.queue is not None:
            try:
                if job.id in await self.queue.promote(job.guild_id, plan.config):
                    job = await self.jobs.get(job.id) or job
            except Exception:
                log.exception(kv("imagine.promote_failed", job=job.id))  # the scheduler promotes it later
        return job

    async def _fetch_checked(self, attachment: Attachment, fetch: Fetch) -> Reference:
        try:
            data = await fetch(attachment)
        except Exception:
            raise Refusal(
                f"I couldn't download `{attachment.filename}` from Discord. Please try again."
            ) from None
        try:
            checked = check_reference(attachment.filename, data)
        except BadReference as exc:
            raise Refusal(str(exc)) from None
        return Reference(data=checked.data, filename=checked.filename, content_type=checked.content_type)


def _queue_refusal(full: QueueFull) -> Refusal:
    if full.scope == "member":
        n = full.waiting
        return Refusal(
            f"You already have {n} generation{'s' if n != 1 else ''} waiting in the queue, the most "
            "this server allows. Wait for one to start, then try again."
        )
    return Refusal("This server's queue is full. Please try again in a few minutes.")


def _quota_text(cost: int, remaining: int | None, resets_at: datetime | None) -> str:
    when = f" Your budget resets <t:{int(resets_at.timestamp())}:R>." if resets_at else ""
    return (
        f"This needs {cost} credits but you have {remaining if remaining is not None else 0} left "
        f"this period.{when}"
    )
