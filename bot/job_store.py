"""All the job SQL: creating, leasing, claiming, updating, posting records and pruning jobs.

A worker (the engine) `claim_due`s jobs: it takes a lease (`lease_owner`, `lease_until`)
on ACTIVE jobs whose `next_poll_at` has come and whose lease is free or expired, works on them,
writes progress with `update(job_id, owner, ...)` — which raises `LeaseLost` once another
worker has taken the job over — and hands them back with `release(job_id, owner, next_poll_at)`.
Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL and a `BEGIN IMMEDIATE` transaction on
SQLite, so two workers never hold the same job. A job found in `submitting` after a crash
becomes `unknown` (`recover`). The job itself (states, parameters, snapshots) is `bot.jobs`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock, as_utc, utcnow
from bot.db import Database
from bot.db.models import JobRow, QuotaReservation
from bot.db.sql import insert_many
from bot.jobs import (
    ACTIVE,
    TERMINAL,
    Job,
    JobConflict,
    JobError,
    JobParams,
    JobSource,
    JobStatus,
    LeaseLost,
    SourceAction,
    UnknownJob,
)

log = logging.getLogger(__name__)

_ACTIVE_VALUES = sorted(s.value for s in ACTIVE)
_TERMINAL_VALUES = sorted(s.value for s in TERMINAL)
_TABLE: Table = JobRow.__table__  # type: ignore[assignment]
_COLUMNS = tuple(_TABLE.columns)
# Hot statements are built once, with named parameters: SQLAlchemy takes several times longer to
# build and key a statement than to run it, and every launch and step runs one of these.
_INSERT = insert(_TABLE).returning(*_COLUMNS)
# Hand-backs written in one transaction at most (see `JobStore.hand_back`).
HAND_BACK_BATCH = 500
# A job's source (an Upscale or Vary of an earlier job's image) is set when it is created, for good.
_FIXED = {
    "id",
    "guild_id",
    "user_id",
    "created_at",
    "lease_owner",
    "lease_until",
    "source_job_id",
    "source_action",
    "source_image",
    "private",
    "key_owner",
}
UPDATABLE_FIELDS: frozenset[str] = frozenset(c.name for c in _COLUMNS) - _FIXED


def _snapshot(row: Row[Any]) -> Job:
    return _job(row._mapping)


def _job(m: Mapping[Any, Any]) -> Job:
    """A job from its stored columns (a row read back, or the values just inserted)."""
    return Job(
        id=m["id"],
        guild_id=m["guild_id"],
        channel_id=m["channel_id"],
        user_id=m["user_id"],
        application_id=m["application_id"],
        interaction_token=m["interaction_token"],
        token_expires_at=m["token_expires_at"],
        status_message_id=m["status_message_id"],
        upload_limit=m["upload_limit"],
        locale=m["locale"],
        reply_to_message_id=m["reply_to_message_id"],
        params=JobParams.from_json(m["params"]),
        cost=m["cost"],
        reservation_id=m["reservation_id"],
        hub_generation_id=m["hub_generation_id"],
        status=JobStatus(m["status"]),
        hub_status=m["hub_status"],
        next_poll_at=m["next_poll_at"],
        poll_attempts=m["poll_attempts"],
        error_attempts=m["error_attempts"],
        last_error=m["last_error"],
        result_urls=list(m["result_urls"] or []),
        delivered_images=m["delivered_images"],
        charged_credits=m["charged_credits"],
        posted_message_ids=[int(i) for i in m["posted_message_ids"] or []],
        lease_owner=m["lease_owner"],
        lease_until=m["lease_until"],
        created_at=m["created_at"],
        submitted_at=m["submitted_at"],
        finished_at=m["finished_at"],
        posted_at=m["posted_at"],
        source_job_id=m["source_job_id"],
        source_action=SourceAction(m["source_action"]) if m["source_action"] else None,
        source_image=m["source_image"],
        private=bool(m["private"]),
        key_owner=m["key_owner"],
    )


def _convert(name: str, value: Any) -> Any:
    if name not in UPDATABLE_FIELDS:
        raise ValueError(f"job field {name!r} cannot be updated")
    if name == "params":
        return value.to_json() if isinstance(value, JobParams) else dict(value)
    if name == "status":
        return JobStatus(value).value
    if name == "result_urls":
        return [str(u) for u in value]
    if name == "posted_message_ids":
        return [int(i) for i in value]
    if isinstance(value, datetime):
        return as_utc(value)
    return value


def dead_local_owner(other: str, me: str) -> bool:
    """Whether worker `other` was a process of this host that is gone.

    Worker names are `host:pid:nonce` (see `bot.services`). Same host and our own pid with
    another nonce: our previous life (pids repeat across restarts, e.g. 1 in a container).
    Same host, another pid that no longer exists: a crashed sibling. Anything else (another
    host, a live pid, a name of another shape) is treated as alive: its leases run out.
    """
    mine, theirs = me.rsplit(":", 2), other.rsplit(":", 2)
    if len(mine) != 3 or len(theirs) != 3 or mine[0] != theirs[0] or not theirs[1].isdigit():
        return False
    pid = int(theirs[1])
    if str(pid) == mine[1]:
        return other != me
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


@functools.lru_cache(maxsize=256)
def _update_statement(
    names: tuple[str, ...], first: frozenset[str], by_owner: bool, statuses: tuple[str, ...] | None
) -> Any:
    """`UPDATE jobs SET <names> WHERE id = :b_id [AND lease_owner = :b_owner] [AND status IN
    statuses] RETURNING *`, built once per shape (a few dozen in the code): the values are
    parameters `b_<name>`; a name in `first` keeps the row's value when it has one."""
    values: dict[str, Any] = {}
    for name in names:
        column = _TABLE.c[name]
        param = bindparam(f"b_{name}", type_=column.type)
        values[name] = func.coalesce(column, param) if name in first else param
    query = update(_TABLE).where(_TABLE.c.id == bindparam("b_id"))
    if by_owner:
        query = query.where(_TABLE.c.lease_owner == bindparam("b_owner"))
    if statuses is not None:
        query = query.where(_TABLE.c.status.in_(statuses))
    query = query.values(**values) if values else query.values(id=_TABLE.c.id)
    return query.returning(*_COLUMNS)


async def _write_groups(
    groups: Mapping[tuple[bool, tuple[str, ...]], list[dict[str, Any]]], s: AsyncSession
) -> None:
    """One executemany UPDATE per kind of hand-back (see `JobStore.hand_back`)."""
    for (keep, names), rows in groups.items():
        await s.execute(_hand_back_statement(keep, names), rows)


@functools.lru_cache(maxsize=64)
def _hand_back_statement(keep: bool, names: tuple[str, ...]) -> Any:
    """A kind of hand-back's UPDATE, built once (see `_update_statement`)."""
    values: dict[str, Any] = {name: bindparam(f"b_{name}") for name in names}
    if not keep:
        values.update(lease_owner=None, lease_until=None)
    return (
        update(_TABLE)
        .where(_TABLE.c.id == bindparam("b_id"), _TABLE.c.lease_owner == bindparam("b_owner"))
        .values(**values)
    )


def _posted_statement(by_owner: bool) -> Any:
    query = update(_TABLE).where(
        _TABLE.c.id == bindparam("b_id"), _TABLE.c.status == JobStatus.SUCCEEDED.value
    )
    if by_owner:
        query = query.where(_TABLE.c.lease_owner == bindparam("b_owner"))
    now = bindparam("b_now", type_=_TABLE.c.posted_at.type)
    return query.values(
        status=JobStatus.POSTED.value,
        posted_message_ids=bindparam("b_messages", type_=_TABLE.c.posted_message_ids.type),
        posted_at=now,
        finished_at=now,
        interaction_token=None,
        next_poll_at=None,
        lease_owner=None,
        lease_until=None,
    )


# `mark_posted`'s UPDATE, without and with the lease check.
_POSTED = (_posted_statement(False), _posted_statement(True))


class JobStore:
    """Creates, claims, updates and prunes jobs. Every method returns `Job` snapshots."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock
        self._hand_backs: list[tuple[int, str, bool, dict[str, Any], asyncio.Future[None]]] = []
        self._hand_back_writer: asyncio.Task[None] | None = None

    # -- creation and reads ---------------------------------------------------------------------

    async def create(
        self, *, admit: Callable[[AsyncSession], Awaitable[None]] | None = None, **fields: Any
    ) -> Job:
        """A new job with `new_row`'s `fields`: `pending_submit` (due now) by default, or `queued`
        (not due until promoted).

        `admit` runs first in the same transaction and may refuse by raising (the queue's
        length check: `JobQueue.admission`), so a limit counted there holds under races."""
        values = self.new_row(**fields)

        async def work(s: AsyncSession) -> Job:
            if admit is not None:
                await admit(s)
            return await self.insert_in(s, values)

        return await self._db.run(work)

    async def insert_in(self, s: AsyncSession, values: Mapping[str, Any]) -> Job:
        """Insert a `new_row` inside the caller's write transaction."""
        row = (await s.execute(_INSERT, dict(values))).one()
        return _snapshot(row)

    async def insert_many_in(self, s: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> list[Job]:
        """Insert `new_row`s (all with the same keys) in one statement, inside the caller's write
        transaction; the jobs in the rows' order. Each job is its row as given plus the id the
        database chose: reading all the columns back cost more than the insert itself."""
        ids = [row.id for row in await insert_many(s, _TABLE, rows, (_TABLE.c.id,))]
        return [_job({**row, "id": int(i)}) for row, i in zip(rows, ids, strict=True)]

    def new_row(
        self,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        params: JobParams,
        cost: int,
        application_id: int | None = None,
        interaction_token: str | None = None,
        token_expires_at: datetime | None = None,
        status_message_id: int | None = None,
        upload_limit: int | None = None,
        reply_to_message_id: int | None = None,
        reservation_id: int | None = None,
        status: JobStatus = JobStatus.PENDING_SUBMIT,
        next_poll_at: datetime | None = None,
        lease: tuple[str, float] | None = None,
        locale: str | None = None,
        source: JobSource | None = None,
        private: bool = False,
        key_owner: int | None = None,
    ) -> dict[str, Any]:
        """The column values of a new job (see `create`). `lease`: (owner, seconds) — the job is
        born leased, so no worker claims it before its creator lets go (`release`)."""
        status = JobStatus(status)
        if status not in (JobStatus.QUEUED, JobStatus.PENDING_SUBMIT):
            raise ValueError("a job starts as queued or pending_submit")
        now = self._clock()
        if status is JobStatus.PENDING_SUBMIT and next_poll_at is None:
            next_poll_at = now
        values: dict[str, Any] = {
            "guild_id": guild_id,
            "channel_id": channel_id,
            "user_id": user_id,
            "application_id": application_id,
            "interaction_token": interaction_token,
            "token_expires_at": token_expires_at,
            "status_message_id": status_message_id,
            "upload_limit": upload_limit,
            "locale": locale,
            "reply_to_message_id": reply_to_message_id,
            "params": params.to_json(),
            "cost": cost,
            "reservation_id": reservation_id,
            "hub_generation_id": None,
            "status": status.value,
            "hub_status": None,
            "next_poll_at": next_poll_at,
            "poll_attempts": 0,
            "error_attempts": 0,
            "last_error": None,
            "result_urls": [],
            "delivered_images": 0,
            "charged_credits": None,
            "posted_message_ids": [],
            "lease_owner": lease[0] if lease else None,
            "lease_until": now + timedelta(seconds=lease[1]) if lease else None,
            "created_at": now,
            "submitted_at": None,
            "finished_at": None,
            "posted_at": None,
            "source_job_id": source.job_id if source else None,
            "source_action": source.action.value if source else None,
            "source_image": source.image if source else None,
            "private": private,
            "key_owner": key_owner,
        }
        return values

    def now(self) -> datetime:
        """This store's clock (a job's times are written by it)."""
        return self._clock()

    async def get_in(self, s: AsyncSession, job_id: int) -> Job | None:
        """The job as the caller's transaction sees it."""
        row = (await s.execute(select(*_COLUMNS).where(JobRow.id == job_id))).one_or_none()
        return None if row is None else _snapshot(row)

    async def get(self, job_id: int, guild_id: int | None = None) -> Job | None:
        """The job, or None (also when it belongs to another server than `guild_id`)."""
        query = select(*_COLUMNS).where(JobRow.id == job_id)
        if guild_id is not None:
            query = query.where(JobRow.guild_id == guild_id)
        async with self._db.session() as s:
            row = (await s.execute(query)).one_or_none()
        return None if row is None else _snapshot(row)

    async def _list(self, query: Any) -> list[Job]:
        async with self._db.session() as s:
            return [_snapshot(r) for r in (await s.execute(query)).all()]

    async def list_for_member(self, guild_id: int, user_id: int, limit: int = 10) -> list[Job]:
        """The member's newest jobs in the server, newest first."""
        return await self._list(
            select(*_COLUMNS)
            .where(JobRow.guild_id == guild_id, JobRow.user_id == user_id)
            .order_by(JobRow.created_at.desc(), JobRow.id.desc())
            .limit(limit)
        )

    async def recent_durations(self, limit: int = 500) -> list[tuple[str, str, float]]:
        """(model, tier, seconds from submission to posting) of the newest posted jobs: what the
        expected finish learns from when a process starts (`bot.eta`)."""
        query = (
            select(JobRow.params, JobRow.submitted_at, JobRow.finished_at)
            .where(JobRow.status == JobStatus.POSTED.value, JobRow.submitted_at.is_not(None))
            .order_by(JobRow.finished_at.desc())
            .limit(limit)
        )
        async with self._db.session() as s:
            rows = (await s.execute(query)).all()
        out = []
        for params, submitted, finished in reversed(rows):  # oldest first, as they were learned
            if finished is None or submitted is None:
                continue
            seconds = (as_utc(finished) - as_utc(submitted)).total_seconds()
            if seconds > 0:
                out.append((str(params.get("model", "")), str(params.get("tier", "")), seconds))
        return out

    async def list_by_status(self, statuses: Iterable[JobStatus], limit: int = 100) -> list[Job]:
        """Jobs in any of `statuses`, oldest first (for operators and recovery)."""
        values = [JobStatus(s).value for s in statuses]
        return await self._list(
            select(*_COLUMNS).where(JobRow.status.in_(values)).order_by(JobRow.id).limit(limit)
        )

    async def _count(self, statuses: Sequence[str], guild_id: int, user_id: int | None) -> int:
        query = (
            select(func.count())
            .select_from(JobRow)
            .where(JobRow.guild_id == guild_id, JobRow.status.in_(statuses))
        )
        if user_id is not None:
            query = query.where(JobRow.user_id == user_id)
        async with self._db.session() as s:
            return int((await s.execute(query)).scalar_one())

    async def count_active(self, guild_id: int, user_id: int | None = None) -> int:
        """ACTIVE jobs of the server (or of one member)."""
        return await self._count(_ACTIVE_VALUES, guild_id, user_id)

    async def count_queued(self, guild_id: int, user_id: int | None = None) -> int:
        return await self._count([JobStatus.QUEUED.value], guild_id, user_id)

    async def queued_jobs(self, guild_id: int) -> list[Job]:
        """The server's queued jobs, first come first."""
        return await self._list(
            select(*_COLUMNS)
            .where(JobRow.guild_id == guild_id, JobRow.status == JobStatus.QUEUED.value)
            .order_by(JobRow.created_at, JobRow.id)
        )

    # -- leases ------------------------------------------------------------------------------

    async def claim_due(
        self,
        owner: str,
        limit: int,
        lease_seconds: float,
        *,
        exclude: Collection[int] = (),
        deliveries: int | None = None,
    ) -> list[Job]:
        """Lease up to `limit` due ACTIVE jobs to `owner` for `lease_seconds`, oldest due first.

        `exclude`: jobs the caller is still working on (never claim a job twice in one process,
        even if its lease ran out under a slow step). `deliveries`: when given, `succeeded` jobs
        (results to post) have that many places of their own, and `limit` counts only the others,
        so results being posted never hold back polls (and polls never hold back posting)."""
        if limit <= 0 and not deliveries:
            return []
        skip = sorted(exclude)
        succeeded = JobStatus.SUCCEEDED.value

        async def due(s: AsyncSession, now: datetime, statuses: Sequence[str], count: int) -> list[int]:
            if count <= 0:
                return []
            query = (
                select(JobRow.id)
                .where(
                    JobRow.status.in_(statuses),
                    JobRow.next_poll_at <= now,
                    or_(JobRow.lease_until.is_(None), JobRow.lease_until <= now),
                    JobRow.id.not_in(skip) if skip else JobRow.id.is_not(None),
                )
                .order_by(JobRow.next_poll_at, JobRow.id)
                .limit(count)
                .with_for_update(skip_locked=True)
            )
            return list((await s.execute(query)).scalars().all())

        async def find(s: AsyncSession) -> list[int]:
            now = self._clock()
            if deliveries is None:
                return await due(s, now, _ACTIVE_VALUES, limit)
            others = [v for v in _ACTIVE_VALUES if v != succeeded]
            return await due(s, now, others, limit) + await due(s, now, [succeeded], deliveries)

        # A read first: a loop pass that finds nothing due costs no write transaction (no commit).
        if not await self._db.run(find, write=False):
            return []

        async def work(s: AsyncSession) -> list[Job]:
            now = self._clock()
            ids = await find(s)
            if not ids:
                return []
            rows = (
                await s.execute(
                    update(_TABLE)
                    .where(JobRow.id.in_(ids))
                    .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
                    .returning(*_COLUMNS)
                )
            ).all()
            jobs = [_snapshot(r) for r in rows]
            jobs.sort(key=lambda j: (j.next_poll_at or now, j.id))
            return jobs

        return await self._db.run(work)

    async def renew(self, owner: str, job_ids: Collection[int], lease_seconds: float) -> int:
        """Extend `owner`'s leases on jobs it is still working on; returns how many it still holds."""
        return await self._set_leases(owner, job_ids, keep_for=timedelta(seconds=lease_seconds))

    async def _set_leases(self, owner: str, job_ids: Collection[int], *, keep_for: timedelta | None) -> int:
        """`owner`'s leases on `job_ids`: extended by `keep_for` from now, or dropped (None)."""
        if not job_ids:
            return 0
        values: dict[str, Any] = (
            {"lease_until": self._clock() + keep_for}
            if keep_for is not None
            else {"lease_owner": None, "lease_until": None}
        )

        async def work(s: AsyncSession) -> int:
            result = await s.execute(
                update(_TABLE)
                .where(JobRow.id.in_(sorted(job_ids)), JobRow.lease_owner == owner)
                .values(**values)
            )
            return int(getattr(result, "rowcount", 0))

        return await self._db.run(work)

    async def held(self, owner: str, job_ids: Collection[int]) -> list[Job]:
        """The jobs among `job_ids` still leased to `owner` and not finished, as they are now: an
        engine that kept jobs between steps (`hand_back(keep=True)`) takes them back with a read,
        not a claim's write. A job cancelled or taken over meanwhile is not among them."""
        if not job_ids:
            return []
        async with self._db.session() as s:
            rows = (
                await s.execute(
                    select(*_COLUMNS).where(
                        JobRow.id.in_(sorted(job_ids)),
                        JobRow.lease_owner == owner,
                        JobRow.status.in_(_ACTIVE_VALUES),
                    )
                )
            ).all()
        return [_snapshot(r) for r in rows]

    async def let_go(self, owner: str, job_ids: Collection[int]) -> int:
        """Drop `owner`'s leases on jobs it kept between steps (a clean stop): due again at once
        for any process instead of when the leases run out."""
        return await self._set_leases(owner, job_ids, keep_for=None)

    async def with_held_reservation(self, limit: int = 500) -> list[Job]:
        """Finished (or succeeded) jobs whose reservation is still held: a crash came between
        the job's last write and settling its credits. Maintenance settles them from the job."""
        settled_states = [s.value for s in TERMINAL] + [JobStatus.SUCCEEDED.value]

        async def work(s: AsyncSession) -> list[Job]:
            rows = (
                await s.execute(
                    select(*_COLUMNS)
                    .join(QuotaReservation, QuotaReservation.id == JobRow.reservation_id)
                    .where(QuotaReservation.state == "held", JobRow.status.in_(settled_states))
                    .order_by(JobRow.id)
                    .limit(limit)
                )
            ).all()
            return [_snapshot(r) for r in rows]

        return await self._db.run(work, write=False)

    async def _explain_miss(
        self, s: AsyncSession, job_id: int, owner: str | None, expect: Collection[JobStatus] | None
    ) -> JobError:
        row = (
            await s.execute(select(JobRow.status, JobRow.lease_owner).where(JobRow.id == job_id))
        ).one_or_none()
        if row is None:
            return UnknownJob(job_id)
        if expect is None or (owner is not None and row.lease_owner != owner):
            return LeaseLost(job_id, owner)
        return JobConflict(job_id, JobStatus(row.status), expect)

    async def update(
        self,
        job_id: int,
        owner: str | None,
        *,
        also: Callable[[AsyncSession, Job], Awaitable[object]] | None = None,
        **fields: Any,
    ) -> Job:
        """Change some fields of a job; returns the new snapshot.

        `also(session, job)`: more work in the same write (e.g. settling the job's credits as it
        succeeds), so the two are committed together or not at all.

        `owner` must hold the job's lease, else `LeaseLost` (the lease counts as held until
        another worker claims the job or it is released). `owner=None` updates without a lease
        (e.g. the command handler right after `create`); see `update_if` for conditional ones.
        Moving to a TERMINAL status sets `finished_at`, clears `interaction_token` and
        `next_poll_at`; `submitted` sets `submitted_at` and `posted` sets `posted_at` if unset.
        `UnknownJob` when there is no such job.
        """
        return await self._update(job_id, owner, None, fields, also)

    async def update_if(self, job_id: int, expect_status: Collection[JobStatus], **fields: Any) -> Job | None:
        """Like `update` without a lease, but only while the job is in one of `expect_status`
        (atomic compare-and-set, e.g. a cancel button); None when it is not.

        Moving a job to a TERMINAL status this way also drops any lease on it, so the worker
        holding it gets `LeaseLost` on its next write (allow cancelling only from `queued` /
        `pending_submit` if a submission must never be orphaned)."""
        try:
            return await self._update(job_id, None, frozenset(JobStatus(x) for x in expect_status), fields)
        except JobConflict:
            return None

    async def _update(
        self,
        job_id: int,
        owner: str | None,
        expect_status: frozenset[JobStatus] | None,
        fields: Mapping[str, Any],
        also: Callable[[AsyncSession, Job], Awaitable[object]] | None = None,
    ) -> Job:
        values = {name: _convert(name, value) for name, value in fields.items()}
        now = self._clock()
        first: set[str] = set()  # set to `now` unless the row has a value already
        status = JobStatus(values["status"]) if "status" in values else None
        if status is not None:
            if status in TERMINAL:
                if "finished_at" not in values:
                    values["finished_at"] = now
                    first.add("finished_at")
                values["interaction_token"] = None
                values.setdefault("next_poll_at", None)
                if owner is None:  # finished from outside: take it away from any worker
                    values["lease_owner"] = None
                    values["lease_until"] = None
            for kept, when in (("submitted_at", JobStatus.SUBMITTED), ("posted_at", JobStatus.POSTED)):
                if status is when and kept not in values:
                    values[kept] = now
                    first.add(kept)
        statuses = None if expect_status is None else tuple(sorted(x.value for x in expect_status))
        statement = _update_statement(tuple(sorted(values)), frozenset(first), owner is not None, statuses)
        params = {f"b_{name}": value for name, value in values.items()}
        params["b_id"] = job_id
        if owner is not None:
            params["b_owner"] = owner

        async def work(s: AsyncSession) -> Job:
            row = (await s.execute(statement, params)).one_or_none()
            if row is None:
                raise await self._explain_miss(s, job_id, owner, expect_status)
            job = _snapshot(row)
            if also is not None:
                await also(s, job)
            return job

        return await self._db.run(work)

    async def release(
        self, job_id: int, owner: str, next_poll_at: datetime | None = None, **fields: Any
    ) -> bool:
        """Drop `owner`'s lease, optionally setting when the job is next due, and writing `fields`
        in the same statement (one write per poll instead of an update and a release; no status
        side effects, so not for terminal statuses).

        False (and nothing changed) when `owner` no longer held the lease.
        """
        changes = {name: _convert(name, value) for name, value in fields.items()}
        if "status" in changes and JobStatus(changes["status"]) in TERMINAL:
            raise ValueError("release() does not finish jobs; use update()")

        async def work(s: AsyncSession) -> bool:
            values: dict[str, Any] = {**changes, "lease_owner": None, "lease_until": None}
            if next_poll_at is not None:
                values["next_poll_at"] = as_utc(next_poll_at)
            result = await s.execute(
                update(_TABLE).where(JobRow.id == job_id, JobRow.lease_owner == owner).values(**values)
            )
            return bool(getattr(result, "rowcount", 0))

        return await self._db.run(work)

    async def hand_back(
        self, job_id: int, owner: str, next_poll_at: datetime, *, keep: bool = False, **fields: Any
    ) -> None:
        """`release` for a worker that need not know whether it still held the lease.

        Hand-backs that come while earlier ones are being written are written together, in one
        transaction with one statement per kind of change: a scheduler polling thousands of
        jobs makes a few writes, not one per poll. Returns once this one is committed.
        `keep`: the lease stays `owner`'s (an engine that keeps the job until its next step; see
        `held`); only the fields and the due time are written.
        """
        changes = {name: _convert(name, value) for name, value in fields.items()}
        if "status" in changes and JobStatus(changes["status"]) in TERMINAL:
            raise ValueError("hand_back() does not finish jobs; use update()")
        changes["next_poll_at"] = as_utc(next_poll_at)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hand_backs.append((job_id, owner, keep, changes, future))
        if self._hand_back_writer is None or self._hand_back_writer.done():
            self._hand_back_writer = asyncio.create_task(self._write_hand_backs(), name="job-hand-backs")
        await future

    async def _write_hand_backs(self) -> None:
        while self._hand_backs:
            batch, self._hand_backs = self._hand_backs[:HAND_BACK_BATCH], self._hand_backs[HAND_BACK_BATCH:]
            groups: dict[tuple[bool, tuple[str, ...]], list[dict[str, Any]]] = {}
            for job_id, owner, keep, changes, _ in batch:
                params = {"b_id": job_id, "b_owner": owner, **{f"b_{k}": v for k, v in changes.items()}}
                groups.setdefault((keep, tuple(sorted(changes))), []).append(params)

            try:
                await self._db.run(functools.partial(_write_groups, groups))
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for *_, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def mark_posted(self, job_id: int, owner: str | None, message_ids: Sequence[int]) -> bool:
        """`succeeded` → `posted`, recording the messages; the lease is dropped.

        Atomic: True for exactly one caller; False when the job was already posted (or is not
        `succeeded`). `LeaseLost` when `owner` is given and no longer holds the lease.
        """
        now = self._clock()

        params: dict[str, Any] = {"b_id": job_id, "b_now": now, "b_messages": [int(i) for i in message_ids]}
        if owner is not None:
            params["b_owner"] = owner

        async def work(s: AsyncSession) -> bool:
            result = await s.execute(_POSTED[owner is not None], params)
            if getattr(result, "rowcount", 0):
                return True
            row = (
                await s.execute(select(JobRow.status, JobRow.lease_owner).where(JobRow.id == job_id))
            ).one_or_none()
            if row is None:
                raise UnknownJob(job_id)
            if owner is not None and row.status == JobStatus.SUCCEEDED.value and row.lease_owner != owner:
                raise LeaseLost(job_id, owner)
            return False

        return await self._db.run(work)

    async def next_due_at(self) -> datetime | None:
        """When the next ACTIVE job becomes claimable (may be in the past); None when none is."""
        async with self._db.session() as s:
            free = (
                await s.execute(
                    select(func.min(JobRow.next_poll_at)).where(
                        JobRow.status.in_(_ACTIVE_VALUES),
                        or_(JobRow.lease_until.is_(None), JobRow.lease_until <= JobRow.next_poll_at),
                    )
                )
            ).scalar_one()
            leased = (
                await s.execute(
                    select(func.min(JobRow.lease_until)).where(
                        JobRow.status.in_(_ACTIVE_VALUES),
                        JobRow.next_poll_at.is_not(None),
                        JobRow.lease_until > JobRow.next_poll_at,
                    )
                )
            ).scalar_one()
        times = [as_utc(t) for t in (free, leased) if t is not None]
        return min(times) if times else None

    # -- maintenance -------------------------------------------------------------------------------

    async def recover(self, owner: str) -> list[Job]:
        """At start-up: jobs left in `submitting` become `unknown` (never resubmitted).

        Only jobs whose lease is free, expired or held by `owner` or by a dead worker of this
        host (a previous life of this process: see `dead_local_owner`) are touched, so a live
        worker elsewhere keeps its jobs. Leases of those owners are dropped, so their other jobs
        are due again at once instead of when the leases run out. Returns the jobs made `unknown`.
        """

        async def work(s: AsyncSession) -> list[Job]:
            now = self._clock()
            holders = (
                await s.execute(
                    select(JobRow.lease_owner)
                    .where(JobRow.lease_owner.is_not(None), JobRow.lease_until > now)
                    .distinct()
                )
            ).scalars()
            stale = [owner, *(o for o in holders if o and o != owner and dead_local_owner(o, owner))]
            not_live = or_(
                JobRow.lease_owner.is_(None), JobRow.lease_owner.in_(stale), JobRow.lease_until <= now
            )
            rows = (
                await s.execute(
                    update(_TABLE)
                    .where(JobRow.status == JobStatus.SUBMITTING.value, not_live)
                    .values(
                        status=JobStatus.UNKNOWN.value,
                        finished_at=now,
                        interaction_token=None,
                        next_poll_at=None,
                        lease_owner=None,
                        lease_until=None,
                        last_error=func.coalesce(JobRow.last_error, "interrupted while submitting"),
                    )
                    .returning(*_COLUMNS)
                )
            ).all()
            await s.execute(
                update(_TABLE).where(JobRow.lease_owner.in_(stale)).values(lease_owner=None, lease_until=None)
            )
            return sorted((_snapshot(r) for r in rows), key=lambda j: j.id)

        jobs = await self._db.run(work)
        if jobs:
            log.warning("%d job(s) were interrupted while submitting; marked unknown", len(jobs))
        return jobs

    async def prune(self, older_than: timedelta | datetime) -> int:
        """Delete TERMINAL jobs finished before `older_than` (a cutoff time, or an age)."""
        cutoff = as_utc(older_than) if isinstance(older_than, datetime) else self._clock() - older_than

        async def work(s: AsyncSession) -> int:
            result = await s.execute(
                delete(JobRow).where(JobRow.status.in_(_TERMINAL_VALUES), JobRow.finished_at < cutoff)
            )
            return int(getattr(result, "rowcount", 0))

        count = await self._db.run(work)
        if count:
            log.info("pruned %d finished job(s)", count)
        return count
