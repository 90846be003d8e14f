"""Turning a member's /imagine into a durable job — every check before any credit moves.

Two phases, because Discord wants an answer within 3 s: `plan()` does the checks that need
only the database (options, channel, key, budget, queue), so a refusal can be the first,
ephemeral answer; `start()` then stores the job in ONE write transaction (shared with concurrent
launches by the database's group commit): the exact cost reserved, the queue's length checked
under the server's lock, the job row (`queued`), its tie to the credits and the server's
promotion (only the queue's locked promotion makes jobs active, which keeps the concurrency
limits exact). A refusal there rolls back that launch alone, so nothing is held. With reference
images, `reserve()` comes first on its own: they are downloaded only after that, within
`ReferenceDownloads`' bounds (one request per member at a time, a few per server), so a member
who can't pay for a request makes the bot download nothing; a bad image releases the
reservation. Every refusal is a `Refusal` with a reason code (`bot.refusals`); the words are the
chat side's. Each value omitted from a request comes from the member's settings, the server's
default or the model's (`bot.member_settings`). Whose key pays is decided here too: the member's
own (`/mykey`, no server budget involved: nothing is reserved) or the server's; in a member's own
space (`bot.scopes`) only their own.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import filters
from bot.catalog import ModelCatalog
from bot.db import Database
from bot.guild_settings import GuildConfig, GuildSettingsStore
from bot.hub import HubError, HubModel, Reference
from bot.hub.sizes import QUALITIES, size_for
from bot.job_store import JobStore
from bot.jobs import Job, JobParams, JobSource, JobStatus, ReferenceSpec
from bot.keys import KeyUnreadable, KeyVault, PersonalKeyUnreadable
from bot.logs import kv
from bot.member_settings import (
    MemberDefaults,
    MemberSettingsStore,
    Options,
    Resolved,
    ServerDefaults,
    resolve,
)
from bot.queue import JobQueue, QueueFull
from bot.quotas import Ledger, QuotaExceeded
from bot.references import (
    Attachment,
    DownloadSlot,
    Fetch,
    ReferenceCache,
    ReferenceDownloads,
    check_declared_size,
    check_reference,
)
from bot.refusals import Blocked, Refusal, RefusalCode
from bot.scopes import is_personal

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
    #: an Upscale or Vary of an earlier job's image (that image is the one attachment)
    source: JobSource | None = None


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
    resolved: Resolved | None = None  # where each value came from (and member settings passed over)
    key_owner: int | None = None  # the member whose own key pays; None: the server's key

    @property
    def private(self) -> bool:
        """The member's results go to them only: their `/settings` visibility, or always in their own
        space (a DM, or a server where the bot can't post)."""
        if is_personal(self.request.guild_id):
            return True
        return self.resolved is not None and self.resolved.visibility.value == "private"


@dataclass(frozen=True, slots=True)
class _Launch:
    """One launch's write (`ImagineService.start`): its plan and the job row to store."""

    plan: Plan
    values: dict[str, Any]

    @property
    def guild_id(self) -> int:
        return self.plan.request.guild_id

    @property
    def pays_here(self) -> bool:
        """Its credits are reserved by the launch: not before it (a request with references), and
        not paid with the member's own key."""
        return self.plan.reservation_id is None and self.plan.key_owner is None


def clean_prompt(text: str) -> str:
    """Normalise the prompt: NFC, no invisible characters, trimmed."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFC", text)).strip()


class ImagineService:
    """See the module docstring."""

    def __init__(
        self,
        *,
        db: Database,
        settings: GuildSettingsStore,
        catalog: ModelCatalog,
        keys: KeyVault,
        ledger: Ledger,
        jobs: JobStore,
        reference_cache: ReferenceCache,
        queue: JobQueue,
        members: MemberSettingsStore,
        filter_runner: filters.FilterRunner | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.keys = keys
        self.ledger = ledger
        self.jobs = jobs
        self.reference_cache = reference_cache
        self.queue = queue
        self.members = members
        self.filters = filter_runner or filters.FilterRunner()
        self.downloads = ReferenceDownloads()
        # Stored patterns skipped for breaking the bounds: moderators are told once per process
        # and server (the chat side takes the news with `take_skipped_patterns`).
        self._told_ignored: dict[int, tuple[str, ...]] = {}
        self._untold: list[tuple[int, tuple[str, ...]]] = []

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
            self._untold = [*self._untold[-63:], (config.guild_id, verdict.ignored)]
        return verdict.blocked

    def take_skipped_patterns(self) -> list[tuple[int, tuple[str, ...]]]:
        """(server, patterns) newly found over the bounds since the last call, for moderators."""
        untold, self._untold = self._untold, []
        return untold

    async def plan(self, request: ImagineRequest, mine: MemberDefaults | None = None) -> Plan:
        """Every check that needs only reads. `mine`: the member's settings, when the caller has
        them already (the launch reads them first, to know whether the answers are private).

        Without references the budget and the queue are not read here: `start()`'s one transaction
        checks both exactly (and refuses the same way), so a read before it would only cost the
        launch a second pass. With references they are read (`_check_capacity`) because the
        reservation and the public answer come before the job is stored."""
        config = await self.settings.get(request.guild_id)
        if config.allowed_channel_ids and request.channel_id not in config.allowed_channel_ids:
            raise Refusal(RefusalCode.CHANNEL_NOT_ALLOWED, channels=tuple(config.allowed_channel_ids))
        prompt = clean_prompt(request.prompt)
        if not prompt:
            raise Refusal(RefusalCode.PROMPT_EMPTY)
        if len(prompt) > MAX_PROMPT_CHARS:
            raise Refusal(RefusalCode.PROMPT_TOO_LONG, length=len(prompt), limit=MAX_PROMPT_CHARS)
        if await self.prompt_blocked(config, prompt):
            raise Blocked(prompt)

        try:
            models = await self.catalog.models()
        except HubError:
            raise Refusal(RefusalCode.HUB_UNREACHABLE) from None
        # Each value: the option given → the member's setting → the server's default → the model's.
        resolved = resolve(
            Options(
                model=request.model,
                aspect=request.aspect,
                resolution=request.resolution,
                quality=request.quality,
                count=request.count,
            ),
            mine if mine is not None else await self.members.get(request.guild_id, request.user_id),
            ServerDefaults(
                model=config.default_model,
                aspect=config.default_aspect,
                resolution=config.default_resolution,
                quality=config.default_quality,
            ),
            models,
        )
        model = resolved.found
        if model is None:
            raise Refusal(
                RefusalCode.UNKNOWN_MODEL, model=resolved.model.value, available=tuple(m.id for m in models)
            )
        aspect = resolved.aspect.value
        if aspect not in model.aspect_ratios:
            raise Refusal(RefusalCode.ASPECT_UNSUPPORTED, model=model.id, aspect=aspect)
        tier = resolved.resolution.value.upper()
        if tier not in model.credits:
            raise Refusal(RefusalCode.RESOLUTION_UNSUPPORTED, model=model.id, resolution=tier)
        quality = resolved.quality.value
        if quality not in QUALITIES:
            raise Refusal(RefusalCode.QUALITY_INVALID, qualities=QUALITIES)
        count = resolved.count.value
        if not 1 <= count <= MAX_COUNT:
            raise Refusal(RefusalCode.COUNT_INVALID, limit=MAX_COUNT)
        if len(request.attachments) > model.reference_image_limit:
            raise Refusal(
                RefusalCode.TOO_MANY_REFERENCES,
                model=model.id,
                limit=model.reference_image_limit,
                given=len(request.attachments),
            )
        for attachment in request.attachments:
            if attachment.hub_image is None:  # an earlier result's size is the hub's, not declared
                check_declared_size(attachment.filename, attachment.size)

        key_owner = await self._key_owner(request, config)

        try:
            size = size_for(aspect, tier)
        except ValueError:  # the hub lists a ratio or tier this bot cannot turn into a size
            raise Refusal(
                RefusalCode.SIZE_UNSUPPORTED, model=model.id, aspect=aspect, resolution=tier
            ) from None
        cost = model.cost(tier, count)
        queued = (
            await self._check_capacity(request, config, cost, personal=key_owner is not None)
            if request.attachments
            else False
        )
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
                    hub_image=a.hub_image,
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
            resolved=resolved,
            key_owner=key_owner,
        )

    async def _key_owner(self, request: ImagineRequest, config: GuildConfig) -> int | None:
        """Whose key pays: the member's own (`/mykey`) when they have one and the server allows
        personal keys, else the server's (None). A refusal when there is no key to use. In a
        member's own space (a DM, a server without the bot: `bot.scopes`) only their own key pays."""
        try:
            personal = await self.keys.get_personal_key(request.user_id)
        except PersonalKeyUnreadable:
            raise Refusal(RefusalCode.PERSONAL_KEY_UNREADABLE) from None
        if is_personal(request.guild_id):
            if personal is None:
                raise Refusal(RefusalCode.NEEDS_PERSONAL_KEY)
            return request.user_id
        if personal is not None and config.personal_keys_allowed:
            return request.user_id
        try:
            key = await self.keys.get_key(request.guild_id)
        except KeyUnreadable:
            raise Refusal(RefusalCode.KEY_UNREADABLE) from None
        if key is None:
            # A member with a key of their own is told why it can't be used here.
            raise Refusal(RefusalCode.PERSONAL_KEYS_FORBIDDEN if personal else RefusalCode.NO_KEY)
        return None

    async def _check_capacity(
        self, request: ImagineRequest, config: GuildConfig, cost: int, *, personal: bool = False
    ) -> bool:
        """Whether the job will wait in the queue (at a concurrency limit, or behind the member's
        own waiting jobs); a full queue refuses. A cheap read: the queue's lengths are decided for
        good when the job is stored (`JobQueue.admission`). The server's budget counts only what
        the server's key pays (`personal`: the member's own key and credits)."""
        try:
            queued = await self.queue.room(request.guild_id, request.user_id, config)
        except QueueFull as full:
            raise _queue_refusal(full) from None
        if personal:
            return queued
        budget = await self.ledger.budget(request.guild_id, request.user_id, request.role_ids)
        if budget.remaining is not None and budget.remaining < cost:
            raise Refusal(
                RefusalCode.QUOTA_EXCEEDED, cost=cost, remaining=budget.remaining, resets_at=budget.resets_at
            )
        return queued

    async def reserve(self, plan: Plan) -> Plan:
        """Reserve the exact cost; atomic, so racing requests can never over-spend a budget. A plan
        paid with the member's own key reserves nothing of the server's budget."""
        if plan.key_owner is not None:
            return plan
        request = plan.request
        try:
            reservation = await self.ledger.reserve(
                request.guild_id, request.user_id, request.role_ids, plan.cost
            )
        except QuotaExceeded as exc:
            raise _quota_refusal(plan.cost, exc) from None
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
        locale: str | None = None,
        token_issued_at: datetime | None = None,
        lease: tuple[str, float] | None = None,
        urgent: bool = False,
    ) -> Job:
        """Store the job for a plan. All or nothing: any failure holds no credits.

        ONE write transaction (shared with concurrent launches: group commit): the reservation
        (unless `reserve()` made it already, for a request with references), the queue's length
        check, the job row, its tie to the credits and the server's promotion. A refusal
        (`QUOTA_EXCEEDED`, a full queue) rolls back this launch alone. `lease` (owner, seconds):
        the job is born leased, so no worker takes it before the caller `release`s it (once
        its status message is known).

        The interaction token lives 15 minutes from the interaction's creation (`token_issued_at`,
        its snowflake time), not from now: checks and downloads before this may have taken a while.
        `urgent`: the transaction starts at once instead of waiting out the group window (which is
        there to merge a trickle's writes; see `Database.run`)."""
        request = plan.request
        created = token_issued_at or datetime.now(UTC)
        values = self.jobs.new_row(
            guild_id=request.guild_id,
            channel_id=request.channel_id,
            user_id=request.user_id,
            application_id=application_id,
            interaction_token=interaction_token,
            token_expires_at=created + INTERACTION_TOKEN_LIFETIME if interaction_token else None,
            params=plan.params,
            cost=plan.cost,
            status_message_id=status_message_id,
            upload_limit=upload_limit,
            locale=locale,
            # Every job starts `queued`: only the queue's locked promotion makes jobs
            # active, which keeps the concurrency limits exact.
            status=JobStatus.QUEUED,
            lease=lease,
            source=request.source,
            private=plan.private,
            key_owner=plan.key_owner,
        )

        try:
            job, promoted = await self.db.run_together(self._store, _Launch(plan, values), urgent=urgent)
        except BaseException as exc:
            await self.abandon(plan)  # only a reservation made before: this one rolled back
            if isinstance(exc, QueueFull):  # lost a race for the last place in the queue
                raise _queue_refusal(exc) from None
            if isinstance(exc, QuotaExceeded):
                raise _quota_refusal(plan.cost, exc) from None
            raise
        if promoted:
            log.info(kv("queue.promoted", guild=job.guild_id, jobs=",".join(map(str, promoted))))
        self.reference_cache.put(job.id, references)
        return job

    async def _store(
        self, s: AsyncSession, launches: list[_Launch]
    ) -> list[tuple[Job, list[int]] | Exception]:
        """The launches that share a transaction (`Database.run_together`), stored in order as if
        one after the other: each one's credits and queue place are checked against what the
        earlier ones took (`QuotaExceeded` or `QueueFull` refuses that one alone); then the
        reservations, the jobs and their ties to the credits go in a statement each, and each
        server with a job left waiting promotes once. Locks are taken as a single launch takes
        them: credits before queues, each in id order (so no two groups deadlock)."""
        paying: dict[int, set[int]] = {}  # server -> members whose credits are reserved here
        for launch in launches:
            if launch.pays_here:
                paying.setdefault(launch.guild_id, set()).add(launch.plan.request.user_id)
        allowances = {g: await self.ledger.allowances_in(s, g, users) for g, users in sorted(paying.items())}
        admissions = {g: await self.queue.admissions_in(s, g) for g in sorted({x.guild_id for x in launches})}
        refused: dict[int, Exception] = {}
        accepted: list[tuple[int, _Launch, bool]] = []  # (index, launch, starts at once)
        for i, launch in enumerate(launches):
            request, cost = launch.plan.request, launch.plan.cost
            allowance = allowances[launch.guild_id][request.user_id] if launch.pays_here else None
            try:
                if allowance is not None:
                    allowance.check(request.role_ids, cost)
                starts = admissions[launch.guild_id].admit(launch.plan.config, request.user_id)
            except (QuotaExceeded, QueueFull) as exc:
                refused[i] = exc
                continue
            if allowance is not None:
                allowance.spend(cost)
            accepted.append((i, launch, starts))
        reservations: dict[int, int | None] = {i: launch.plan.reservation_id for i, launch, _ in accepted}
        for g in sorted(paying):
            asks = [(i, launch) for i, launch, _ in accepted if launch.pays_here and launch.guild_id == g]
            costs = [(x.plan.request.user_id, x.plan.cost) for _, x in asks]
            held = await self.ledger.reserve_many_in(s, g, costs)
            reservations.update((i, r.id) for (i, _), r in zip(asks, held, strict=True))
        now = self.jobs.now()
        rows = []
        for i, launch, starts in accepted:
            row = {**launch.values, "reservation_id": reservations[i]}
            if starts:  # what the promotion would do, without its queries: it starts at once
                row.update(status=JobStatus.PENDING_SUBMIT.value, next_poll_at=now)
            rows.append(row)
        jobs = await self.jobs.insert_many_in(s, rows) if rows else []
        ties: list[tuple[int, int]] = []  # (reservation, job)
        for (i, _, _), job in zip(accepted, jobs, strict=True):
            reservation_id = reservations[i]
            if reservation_id is not None:
                ties.append((reservation_id, job.id))
        await self.ledger.attach_many_in(s, ties)
        promoted: dict[int, list[int]] = {}
        for _, launch, starts in accepted:
            if starts or launch.guild_id in promoted:
                continue
            promoted[launch.guild_id] = []
            try:
                async with s.begin_nested():  # a failed promotion is the engine's to retry
                    started = await self.queue.promote_in(s, launch.guild_id, launch.plan.config)
                promoted[launch.guild_id] = started
            except Exception:
                log.exception(kv("imagine.promote_failed", guild=launch.guild_id))
        stored: dict[int, tuple[Job, list[int]]] = {}
        told: set[int] = set()  # servers whose promotions a launch reports (once each)
        for (i, _, _), job in zip(accepted, jobs, strict=True):
            started = promoted.get(job.guild_id, [])
            if job.id in started:
                job = await self.jobs.get_in(s, job.id) or job
            stored[i] = (job, [] if job.guild_id in told else started)
            told.add(job.guild_id)
        return [refused[i] if i in refused else stored[i] for i in range(len(launches))]

    async def _fetch_checked(self, attachment: Attachment, fetch: Fetch) -> Reference:
        try:
            data = await fetch(attachment)
        except Exception:
            if attachment.hub_image is not None:
                job_id, number = attachment.hub_image
                raise Refusal(RefusalCode.SOURCE_IMAGE_UNAVAILABLE, job=job_id, image=number) from None
            raise Refusal(RefusalCode.REFERENCE_DOWNLOAD_FAILED, filename=attachment.filename) from None
        checked = check_reference(attachment.filename, data)  # a `BadReference` refuses
        return Reference(data=checked.data, filename=checked.filename, content_type=checked.content_type)


def _quota_refusal(cost: int, exc: QuotaExceeded) -> Refusal:
    return Refusal(RefusalCode.QUOTA_EXCEEDED, cost=cost, remaining=exc.remaining, resets_at=exc.resets_at)


def _queue_refusal(full: QueueFull) -> Refusal:
    if full.scope == "member":
        return Refusal(RefusalCode.QUEUE_FULL_MEMBER, count=full.waiting)
    return Refusal(RefusalCode.QUEUE_FULL_SERVER)
