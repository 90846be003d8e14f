"""The local queue: jobs that wait (`queued`) for a concurrency slot, promoted fairly.

Every new job is stored `queued` and becomes `pending_submit` only through `JobQueue.promote`,
which decides for one server inside one transaction holding the server's queue lock (a
PostgreSQL advisory lock; SQLite's `BEGIN IMMEDIATE`), with the queued rows locked. So the
concurrency limits (`max_concurrent_per_member` / `per_guild`) hold exactly however many bot
processes share the database. The queue lengths (`max_queued_per_member` / `per_guild`) are
counted the same way: `JobQueue.admission` runs in the transaction that inserts the job, under
the same lock, so simultaneous requests cannot pass them.

Fairness is round robin by member, not first come first served by volume: members take turns,
the one served longest ago first (never served: before everyone), ties going to the oldest
waiting job; a member's own jobs keep their order. `queue_order` is that order, and a queued
job's position is its place in it. The ETA uses the server's recent generation times.

`QueueRunner.tick` runs before every claim of the engine: it promotes what fits in every server
that has waiting jobs and refreshes the positions shown on status messages (through a
`QueueNotifier`: the engine's publisher, which throttles its edits).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Protocol

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock, as_utc, utcnow
from bot.db import Database
from bot.db.keyed_reads import KeyedReads
from bot.db.models import JobRow
from bot.db.sql import advisory_lock
from bot.guild_settings import GuildConfig, GuildSettingsStore
from bot.job_store import JobStore
from bot.jobs import ACTIVE, Job, JobStatus
from bot.logs import kv
from bot.timings import Timings

log = logging.getLogger(__name__)

# How far back a member's last turn counts when ordering turns.
SERVED_WINDOW = timedelta(days=1)
# Generation time assumed for the ETA when a server has no recent finished generation.
DEFAULT_GENERATION_SECONDS = 30.0
RECENT_GENERATIONS = 20
# A throttled position edit is tried this many times (`Timings.queue_retry_delay` apart).
REFRESH_ATTEMPTS = 4

_ACTIVE_VALUES = sorted(s.value for s in ACTIVE)
_JOBS: Table = JobRow.__table__  # type: ignore[assignment]  # plain UPDATEs: no ORM bookkeeping
_QUEUED = JobStatus.QUEUED.value
# A server's active and queued jobs per member: every launch runs it (built once, see `bot.job_store`).
_IS_QUEUED = _JOBS.c.status == _QUEUED
_COUNTS = (
    select(_JOBS.c.user_id, _IS_QUEUED, func.count())
    .where(_JOBS.c.guild_id == bindparam("guild_id"), _JOBS.c.status.in_([*_ACTIVE_VALUES, _QUEUED]))
    .group_by(_JOBS.c.user_id, _IS_QUEUED)
)


@dataclass(frozen=True, slots=True)
class Waiting:
    """A queued job as the selection sees it."""

    job_id: int
    user_id: int
    created_at: datetime


def queue_order(waiting: Sequence[Waiting], last_served: Mapping[int, datetime]) -> list[Waiting]:
    """The order the waiting jobs start in if slots free one at a time: round robin by member.

    `waiting` in any order; a member's own jobs go oldest first. Members take turns: never
    served (not in `last_served`) first, then the one served longest ago; ties by the member's
    oldest waiting job. After a turn a member goes to the back.
    """
    mine: dict[int, deque[Waiting]] = {}
    for w in sorted(waiting, key=lambda w: (as_utc(w.created_at), w.job_id)):
        mine.setdefault(w.user_id, deque()).append(w)
    heap: list[tuple[int, float, float, int, int]] = []
    for user_id, jobs in mine.items():
        first = jobs[0]
        served = last_served.get(user_id)
        rank, at = (0, 0.0) if served is None else (1, as_utc(served).timestamp())
        heap.append((rank, at, as_utc(first.created_at).timestamp(), first.job_id, user_id))
    heapq.heapify(heap)
    order: list[Waiting] = []
    turn = 0
    while heap:
        *_, user_id = heapq.heappop(heap)
        jobs = mine[user_id]
        order.append(jobs.popleft())
        if jobs:
            turn += 1
            heapq.heappush(heap, (2, float(turn), 0.0, 0, user_id))
    return order


def select_promotions(
    waiting: Sequence[Waiting],
    last_served: Mapping[int, datetime],
    active: Mapping[int, int],
    *,
    per_member: int,
    per_guild: int,
) -> list[Waiting]:
    """The waiting jobs to start now: `queue_order`, skipping members at their own limit,
    until the server's free slots are used. `active`: running jobs per member."""
    free = per_guild - sum(active.values())
    chosen: list[Waiting] = []
    if free <= 0:
        return chosen
    counts = dict(active)
    for w in queue_order(waiting, last_served):
        if counts.get(w.user_id, 0) >= per_member:
            continue
        chosen.append(w)
        counts[w.user_id] = counts.get(w.user_id, 0) + 1
        if len(chosen) >= free:
            break
    return chosen


def estimate_start(position: int, per_guild: int, average_seconds: float, now: datetime) -> datetime:
    """When a job at `position` (1-based) may start: one generation time per round of slots."""
    rounds = math.ceil(position / max(1, per_guild))
    return now + timedelta(seconds=rounds * average_seconds)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a queued job stands: its 1-based position in the server's queue and an ETA."""

    position: int
    waiting: int
    starts_at: datetime


@dataclass(frozen=True, slots=True)
class QueueView:
    """A server's queue as it stands: jobs in start order, with their places."""

    guild_id: int
    jobs: list[Job]
    places: dict[int, Place]


class QueueFull(Exception):
    """The member's (`scope="member"`) or the server's (`"server"`) queue is at its length."""

    def __init__(self, scope: str, waiting: int) -> None:
        super().__init__(f"{scope} queue full ({waiting} waiting)")
        self.scope = scope
        self.waiting = waiting


def check_room(
    config: GuildConfig, user_id: int, active: Mapping[int, int], queued: Mapping[int, int]
) -> bool:
    """Whether a new job of `user_id` would wait (at a concurrency limit, or behind the member's
    own waiting jobs); `QueueFull` when it would wait and a queue length is reached.
    `active` / `queued`: the server's jobs per member."""
    waiting_mine = queued.get(user_id, 0)
    waits = (
        active.get(user_id, 0) >= config.max_concurrent_per_member
        or sum(active.values()) >= config.max_concurrent_per_guild
        or waiting_mine > 0
    )
    if waits:
        if waiting_mine >= config.max_queued_per_member:
            raise QueueFull("member", waiting_mine)
        if sum(queued.values()) >= config.max_queued_per_guild:
            raise QueueFull("server", sum(queued.values()))
    return waits


@dataclass(slots=True)
class Admissions:
    """A server's jobs per member (`active`, `queued`), counted under its queue lock: the launches
    stored in that transaction are admitted against it in order (`admit`)."""

    active: dict[int, int]
    queued: dict[int, int]

    def admit(self, config: GuildConfig, user_id: int) -> bool:
        """Count a new job of `user_id`; True when it may start at once: within the limits and
        nobody waiting in the server (promoting would then pick it and it alone). `QueueFull`
        (nothing counted) when it would wait and a queue is full."""
        starts = not check_room(config, user_id, self.active, self.queued) and not any(self.queued.values())
        counts = self.active if starts else self.queued
        counts[user_id] = counts.get(user_id, 0) + 1
        return starts


class JobQueue:
    """Promotion and positions; see the module docstring."""

    def __init__(
        self, db: Database, jobs: JobStore, settings: GuildSettingsStore, *, clock: Clock = utcnow
    ) -> None:
        self._db = db
        self._jobs = jobs
        self._settings = settings
        self._clock = clock
        # A burst's launches each show their job's place: one read serves all asked meanwhile.
        self._places: KeyedReads[int, Mapping[int, Place]] = KeyedReads(self._read_places, _NO_PLACES)

    async def guilds_waiting(self) -> list[int]:
        """Servers with at least one queued job."""
        async with self._db.session() as s:
            rows = await s.execute(select(JobRow.guild_id).where(JobRow.status == _QUEUED).distinct())
            return sorted(int(g) for g in rows.scalars())

    async def _last_served(self, s: AsyncSession, guild_id: int, users: Sequence[int]) -> dict[int, datetime]:
        """When each member's latest job left the queue (submitted; still to be sent: now).
        Jobs cancelled before they were sent are not turns."""
        now = self._clock()
        rows = (
            await s.execute(
                select(
                    JobRow.user_id, JobRow.status, JobRow.submitted_at, JobRow.finished_at, JobRow.created_at
                ).where(
                    JobRow.guild_id == guild_id,
                    JobRow.user_id.in_(list(users)),
                    JobRow.status != _QUEUED,
                    JobRow.created_at >= now - SERVED_WINDOW,
                )
            )
        ).all()
        served: dict[int, datetime] = {}
        for user_id, status, submitted_at, finished_at, created_at in rows:
            if submitted_at is not None:
                at = submitted_at
            elif status in _ACTIVE_VALUES:
                at = now
            elif status == JobStatus.CANCELLED.value:
                continue
            else:
                at = finished_at or created_at
            at = as_utc(at)
            if user_id not in served or at > served[user_id]:
                served[user_id] = at
        return served

    async def _waiting(self, s: AsyncSession, guild_id: int, *, lock: bool) -> list[Waiting]:
        query = (
            select(JobRow.id, JobRow.user_id, JobRow.created_at)
            .where(JobRow.guild_id == guild_id, JobRow.status == _QUEUED)
            .order_by(JobRow.created_at, JobRow.id)
        )
        if lock:
            query = query.with_for_update()
        return [Waiting(int(i), int(u), as_utc(c)) for i, u, c in (await s.execute(query)).all()]

    async def _active(self, s: AsyncSession, guild_id: int) -> dict[int, int]:
        rows = (
            await s.execute(
                select(JobRow.user_id, func.count())
                .where(JobRow.guild_id == guild_id, JobRow.status.in_(_ACTIVE_VALUES))
                .group_by(JobRow.user_id)
            )
        ).all()
        return {int(u): int(n) for u, n in rows}

    async def room(self, guild_id: int, user_id: int, config: GuildConfig) -> bool:
        """A cheap read before anything is reserved: whether a new job would wait; `QueueFull`
        when its queue is full. (`admission` decides for good, under the lock.)"""
        async with self._db.session() as s:
            active, queued = await self._counts(s, guild_id)
        return check_room(config, user_id, active, queued)

    def admission(
        self, guild_id: int, user_id: int, config: GuildConfig
    ) -> Callable[[AsyncSession], Awaitable[None]]:
        """The queue-length check to run inside the transaction that stores a new job
        (`JobStore.create(admit=...)`): it takes the server's queue lock (as `promote` does), counts
        and raises `QueueFull`, so simultaneous requests cannot all pass a length of one."""

        async def admit(s: AsyncSession) -> None:
            await self.admit_in(s, guild_id, user_id, config)

        return admit

    async def admit_in(self, s: AsyncSession, guild_id: int, user_id: int, config: GuildConfig) -> bool:
        """The queue-length check inside the caller's write transaction (see `admission`). True
        when the new job may start at once (`Admissions.admit`)."""
        return (await self.admissions_in(s, guild_id)).admit(config, user_id)

    async def admissions_in(self, s: AsyncSession, guild_id: int) -> Admissions:
        """The server's counts under its queue lock, inside the caller's write transaction (which
        stores the jobs it admits)."""
        await advisory_lock(s, "queue", guild_id)
        active, queued = await self._counts(s, guild_id)
        return Admissions(active, queued)

    async def _counts(self, s: AsyncSession, guild_id: int) -> tuple[dict[int, int], dict[int, int]]:
        """The server's active and queued jobs per member, in one query."""
        rows = (await s.execute(_COUNTS, {"guild_id": guild_id})).all()
        active: dict[int, int] = {}
        queued: dict[int, int] = {}
        for user, waiting, count in rows:
            (queued if waiting else active)[int(user)] = int(count)
        return active, queued

    async def _room(self, guild_id: int, config: GuildConfig) -> bool:
        """A cheap read: could anything start now? (The locked transaction decides.)"""
        async with self._db.session() as s:
            active = await self._active(s, guild_id)
            if sum(active.values()) >= config.max_concurrent_per_guild:
                return False
            users = (
                await s.execute(
                    select(JobRow.user_id)
                    .where(JobRow.guild_id == guild_id, JobRow.status == _QUEUED)
                    .distinct()
                )
            ).scalars()
            return any(active.get(int(u), 0) < config.max_concurrent_per_member for u in users)

    async def promote(self, guild_id: int, config: GuildConfig | None = None) -> list[int]:
        """Start (`queued` → `pending_submit`, due now) what fits in the server's limits.

        One transaction under the server's queue lock; returns the promoted job ids. A read
        first skips the write transaction when every slot is taken (the usual case while a
        queue exists): slots only free when a job ends, and its step wakes the scheduler.
        """
        config = config or await self._settings.get(guild_id)
        if not await self._room(guild_id, config):
            return []
        settled = config
        promoted = await self._db.run(lambda s: self.promote_in(s, guild_id, settled))
        if promoted:
            log.info(kv("queue.promoted", guild=guild_id, jobs=",".join(map(str, promoted))))
        return promoted

    async def promote_in(self, s: AsyncSession, guild_id: int, config: GuildConfig) -> list[int]:
        """`promote` inside the caller's write transaction (a launch promotes in the transaction
        that stores its job). Takes the server's queue lock."""
        await advisory_lock(s, "queue", guild_id)
        waiting = await self._waiting(s, guild_id, lock=True)
        if not waiting:
            return []
        active = await self._active(s, guild_id)
        served = await self._last_served(s, guild_id, sorted({w.user_id for w in waiting}))
        chosen = select_promotions(
            waiting,
            served,
            active,
            per_member=config.max_concurrent_per_member,
            per_guild=config.max_concurrent_per_guild,
        )
        if not chosen:
            return []
        result = await s.execute(
            update(_JOBS)
            .where(JobRow.id.in_([w.job_id for w in chosen]), JobRow.status == _QUEUED)
            .values(status=JobStatus.PENDING_SUBMIT.value, next_poll_at=self._clock())
            .returning(JobRow.id)
        )
        return sorted(int(i) for i in result.scalars())

    async def average_seconds(self, guild_id: int) -> float:
        """The server's recent generation time (submitted → finished), or a default."""
        async with self._db.session() as s:
            return await self._average_seconds(s, guild_id)

    async def _average_seconds(self, s: AsyncSession, guild_id: int) -> float:
        rows = (
            await s.execute(
                select(JobRow.submitted_at, JobRow.finished_at)
                .where(
                    JobRow.guild_id == guild_id,
                    JobRow.status == JobStatus.POSTED.value,
                    JobRow.submitted_at.is_not(None),
                    JobRow.finished_at.is_not(None),
                )
                .order_by(JobRow.finished_at.desc())
                .limit(RECENT_GENERATIONS)
            )
        ).all()
        times = [(as_utc(f) - as_utc(st)).total_seconds() for st, f in rows if st and f]
        times = [t for t in times if t >= 0]
        return sum(times) / len(times) if times else DEFAULT_GENERATION_SECONDS

    async def view(self, guild_id: int, config: GuildConfig | None = None) -> QueueView:
        """The server's queued jobs in start order, with positions and ETAs."""
        order, average = await self._order(guild_id)
        if not order:
            return QueueView(guild_id, [], {})
        config = config or await self._settings.get(guild_id)
        by_id = {job.id: job for job in await self._jobs.queued_jobs(guild_id)}
        jobs = [by_id[job_id] for job_id in order if job_id in by_id]
        places = _places([job.id for job in jobs], config, average, self._clock())
        return QueueView(guild_id, jobs, places)

    async def place(self, job: Job) -> Place | None:
        """Where a queued job stands (None when it is not queued)."""
        if job.status is not JobStatus.QUEUED:
            return None
        places = await self._places.get(job.guild_id)
        return places.get(job.id)

    async def _order(self, guild_id: int) -> tuple[list[int], float]:
        """The ids of the server's queued jobs in start order, and its recent generation time:
        what places are made of, without the jobs' rows."""
        async with self._db.session() as s:
            waiting = await self._waiting(s, guild_id, lock=False)
            if not waiting:
                return [], DEFAULT_GENERATION_SECONDS
            served = await self._last_served(s, guild_id, sorted({w.user_id for w in waiting}))
            average = await self._average_seconds(s, guild_id)
        return [w.job_id for w in queue_order(waiting, served)], average

    async def _read_places(self, guild_ids: Sequence[int]) -> dict[int, Mapping[int, Place]]:
        out: dict[int, Mapping[int, Place]] = {}
        for guild_id in guild_ids:
            order, average = await self._order(guild_id)
            if order:
                config = await self._settings.get(guild_id)
                out[guild_id] = _places(order, config, average, self._clock())
        return out


_NO_PLACES: Mapping[int, Place] = MappingProxyType({})  # shared by every caller: read-only


def _places(order: Sequence[int], config: GuildConfig, average: float, now: datetime) -> dict[int, Place]:
    return {
        job_id: Place(
            position=i,
            waiting=len(order),
            starts_at=estimate_start(i, config.max_concurrent_per_guild, average, now),
        )
        for i, job_id in enumerate(order, start=1)
    }


class QueueNotifier(Protocol):
    async def queued(self, job: Job, place: Place) -> bool:
        """Show the job's place on its status message. False only when the edit was throttled
        (try again later); True when it was made or there is nothing to edit."""


class QueueRunner:
    """Run before every claim of the engine: promote, then refresh the places shown (in the
    background)."""

    def __init__(self, queue: JobQueue, *, timings: Timings) -> None:
        self.queue = queue
        self.timings = timings
        self._shown: dict[int, dict[int, int]] = {}  # guild -> job id -> position last shown
        self._dirty: set[int] = set()
        self._refreshing: dict[int, asyncio.Task[None]] = {}
        self._last_full = 0.0

    def changed(self, guild_id: int) -> None:
        """The server's queue changed here (a new, cancelled or promoted job): refresh its places."""
        self._dirty.add(guild_id)

    def shown(self, job: Job, place: Place) -> None:
        """Record a place shown by someone else (the command's first answer)."""
        self._shown.setdefault(job.guild_id, {})[job.id] = place.position

    async def tick(self, notifier: QueueNotifier) -> list[int]:
        """Promote what fits in every server with waiting jobs; returns the promoted job ids.
        Places that changed are shown again through `notifier` (in the background)."""
        promoted: list[int] = []
        full = time.monotonic() - self._last_full >= self.timings.queue_refresh_interval
        if full:
            self._last_full = time.monotonic()
        for guild_id in await self.queue.guilds_waiting():
            ids = await self.queue.promote(guild_id)
            promoted += ids
            if ids or full:
                self._dirty.add(guild_id)
        dirty, self._dirty = self._dirty, set()
        for guild_id in sorted(dirty):
            self._refresh_later(guild_id, notifier)
        return promoted

    def _refresh_later(self, guild_id: int, notifier: QueueNotifier) -> None:
        running = self._refreshing.get(guild_id)
        if running is not None and not running.done():
            self._dirty.add(guild_id)  # again on a later tick
            return
        task = asyncio.create_task(self.refresh(guild_id, notifier), name=f"queue-refresh-{guild_id}")
        self._refreshing[guild_id] = task

    async def refresh(self, guild_id: int, notifier: QueueNotifier) -> None:
        """Edit the status message of every queued job whose position changed since it was last
        shown; edits the publisher skipped (throttled) are tried again a little later."""
        for attempt in range(REFRESH_ATTEMPTS):
            if attempt:
                await asyncio.sleep(self.timings.queue_retry_delay)
            if not await self._refresh_once(guild_id, notifier):
                return

    async def _refresh_once(self, guild_id: int, notifier: QueueNotifier) -> bool:
        """One pass; True when some edit was skipped."""
        try:
            view = await self.queue.view(guild_id)
        except Exception:
            log.exception(kv("queue.view_failed", guild=guild_id))
            return False
        shown = self._shown.setdefault(guild_id, {})
        for job_id in [j for j in shown if j not in view.places]:
            del shown[job_id]
        skipped = False
        for job in view.jobs:
            place = view.places[job.id]
            if shown.get(job.id) == place.position:
                continue
            try:
                edited = await notifier.queued(job, place)
            except Exception as exc:
                log.info(kv("queue.progress_failed", job=job.id, error=type(exc).__name__))
                continue
            if edited:
                shown[job.id] = place.position
            else:
                skipped = True
        if not shown:
            self._shown.pop(guild_id, None)
        return skipped

    async def close(self) -> None:
        tasks = [t for t in self._refreshing.values() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
