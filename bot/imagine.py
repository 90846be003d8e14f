"""Turning a member's /imagine into a durable job — every check before any credit moves.

Two phases, because Discord wants an answer within 3 s: `plan()` does the checks that need
only the database (options, channel, key, budget, concurrency), so a refusal can be the first,
ephemeral answer. Reference images are downloaded and checked by their bytes before `reserve()`
takes the exact cost, so a bad attachment leaves no trace; `start()` stores the job.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot import filters
from bot.catalog import ModelCatalog
from bot.guild_settings import GuildConfig, GuildSettingsStore
from bot.hub import HubError, HubModel, Reference
from bot.hub.sizes import QUALITIES, size_for
from bot.jobs import Job, JobParams, JobStatus, JobStore, ReferenceSpec
from bot.keys import KeyUnreadable, KeyVault
from bot.logs import kv
from bot.quotas import QuotaExceeded, QuotaService
from bot.references import BadReference, check_declared_size, check_reference

if TYPE_CHECKING:
    from bot.queue import JobQueue

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 4000
MAX_COUNT = 4
INTERACTION_TOKEN_LIFETIME = timedelta(minutes=15)
_INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad]")


class Refusal(Exception):
    """The request cannot go ahead; `str()` is the member-facing reason. Nothing was spent."""


class Blocked(Refusal):
    """The server's prompt filters matched (moderators are told; the member is not told which rule)."""

    def __init__(self, prompt: str) -> None:
        super().__init__("This prompt was blocked by this server's filters.")
        self.prompt = prompt


@dataclass(frozen=True, slots=True)
class Attachment:
    """A reference image as Discord described it; bytes are fetched only after the cheap checks."""

    url: str
    filename: str
    size: int
    content_type: str | None = None
    #: (channel id, message id, attachment id) when it came from a message (see `ReferenceSpec`)
    source: tuple[int, int, int] | None = None


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


Fetch = Callable[[Attachment], Awaitable[bytes]]


def _echo(value: str, limit: int = 40) -> str:
    """A member's option value, shortened for quoting back (options are free text)."""
    value = value.replace("`", "'")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def clean_prompt(text: str) -> str:
    """Normalise the prompt: NFC, no invisible characters, trimmed."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFC", text)).strip()


def prompt_blocked(config: GuildConfig, prompt: str) -> bool:
    """The server's word and pattern filters (`bot.filters`); a match blocks without saying which rule."""
    return filters.blocked(config.blocked_words, config.blocked_patterns, prompt)


class ImagineService:
    """See the module docstring."""

    def __init__(
        self,
        *,
        settings: GuildSettingsStore,
        catalog: ModelCatalog,
        keys: KeyVault,
        quotas: QuotaService,
        jobs: JobStore,
        reference_cache: ReferenceCache,
        queue: JobQueue | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.keys = keys
        self.quotas = quotas
        self.jobs = jobs
        self.reference_cache = reference_cache
        self.queue = queue

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
        if prompt_blocked(config, prompt):
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
        own waiting jobs); a full queue refuses. Without a queue, a limit refuses as before."""
        guild_id, user_id = request.guild_id, request.user_id
        mine = await self.jobs.count_active(guild_id, user_id)
        everyone = await self.jobs.count_active(guild_id)
        waiting_mine = await self.jobs.count_queued(guild_id, user_id) if self.queue else 0
        queued = (
            mine >= config.max_concurrent_per_member
            or everyone >= config.max_concurrent_per_guild
            or waiting_mine > 0
        )
        if queued and self.queue is None:
            raise Refusal("This server has as many generations running as it allows. Try again in a minute.")
        if queued:
            if waiting_mine >= config.max_queued_per_member:
                raise Refusal(
                    f"You already have {waiting_mine} generation{'s' if waiting_mine != 1 else ''} "
                    "waiting in the queue, the most this server allows. Wait for one to start, "
                    "then try again."
                )
            if await self.jobs.count_queued(guild_id) >= config.max_queued_per_guild:
                raise Refusal("This server's queue is full. Please try again in a few minutes.")
        budget = await self.quotas.budget(request.guild_id, request.user_id, request.role_ids)
        if budget.remaining is not None and budget.remaining < cost:
            raise Refusal(_quota_text(cost, budget.remaining, budget.resets_at))
        return queued

    async def reserve(self, plan: Plan) -> Plan:
        """Reserve the exact cost; atomic, so racing requests can never over-spend a budget."""
        request = plan.request
        try:
            reservation = await self.quotas.reserve(
                request.guild_id, request.user_id, request.role_ids, plan.cost
            )
        except QuotaExceeded as exc:
            raise Refusal(_quota_text(plan.cost, exc.remaining, exc.resets_at)) from None
        return replace(plan, reservation_id=reservation.id)

    async def abandon(self, plan: Plan) -> None:
        """Give a reserved plan's credits back (the request could not be started)."""
        if plan.reservation_id is not None:
            await self.quotas.release(plan.reservation_id)

    async def fetch_references(self, plan: Plan, fetch: Fetch) -> list[Reference]:
        """Download the attachments and check them by their bytes (before anything is reserved)."""
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
            )
            await self.quotas.attach(plan.reservation_id, job.id)
        except BaseException:
            if job is not None:  # stored but not tied to its credits: it must never run
                await self.jobs.update_if(
                    job.id, (JobStatus.QUEUED, JobStatus.PENDING_SUBMIT), status=JobStatus.CANCELLED
                )
            await self.abandon(plan)
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


def _quota_text(cost: int, remaining: int | None, resets_at: datetime | None) -> str:
    when = f" Your budget resets <t:{int(resets_at.timestamp())}:R>." if resets_at else ""
    return (
        f"This needs {cost} credits but you have {remaining if remaining is not None else 0} left "
        f"this period.{when}"
    )


class ReferenceCache:
    """Reference bytes kept in memory from the check to the submission.

    Bounded: past `max_bytes` nothing more is kept, and after a restart the cache is empty;
    either way the scheduler downloads the attachments again from Discord (their URLs are in
    the job row) and re-checks them. Entries go when the job is submitted or ends.
    """

    def __init__(self, fetch: Fetch, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._fetch = fetch
        self._max_bytes = max_bytes
        self._bytes = 0
        self._by_job: dict[int, list[Reference]] = {}

    def put(self, job_id: int, references: Sequence[Reference]) -> None:
        size = sum(len(r.data) for r in references)
        if references and self._bytes + size <= self._max_bytes:
            self._by_job[job_id] = list(references)
            self._bytes += size

    def discard(self, job_id: int) -> None:
        references = self._by_job.pop(job_id, None)
        if references:
            self._bytes -= sum(len(r.data) for r in references)

    async def load(self, job: Job) -> list[Reference]:
        cached = self._by_job.get(job.id)
        if cached is not None:
            self.discard(job.id)
            return cached
        refs = []
        for spec in job.params.references:
            data = await self._fetch(Attachment(url=spec.url, filename=spec.filename, size=spec.size))
            checked = check_reference(spec.filename, data)
            refs.append(
                Reference(data=checked.data, filename=checked.filename, content_type=checked.content_type)
            )
        return refs
