"""Spending against budgets: reservations, and the ledger that records every movement.

Spending is two-phase: `reserve` holds the expected cost before a generation is submitted
(refusing with `QuotaExceeded` when it does not fit), then `settle` charges the actual cost
(returning the difference) or `release` returns everything. A reservation counts towards the
period in which it was made. Reservations of one member are serialised (a PostgreSQL
advisory lock; SQLite's `BEGIN IMMEDIATE`), so racing requests — from any number of
processes — never overspend. Every movement is one ledger row (`_record`). Spending is never
cached: reservations always count the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock, as_utc, utcnow
from bot.db import Database
from bot.db.models import QuotaLedger, QuotaReservation
from bot.db.sql import advisory_locks, insert_many
from bot.quotas.periods import Period, period_bounds
from bot.quotas.policies import LimitSource, QuotaPolicies, QuotaPolicy, credits_arg

log = logging.getLogger(__name__)


class ReservationState(StrEnum):
    HELD = "held"
    SETTLED = "settled"
    RELEASED = "released"


class LedgerKind(StrEnum):
    RESERVE = "reserve"  # credits < 0: taken from the budget
    SETTLE_REFUND = "settle_refund"  # reserved - actual (> 0 returns credits; < 0 charges extra)
    RELEASE = "release"  # credits > 0: the whole reservation returned


@dataclass(frozen=True)
class Budget:
    """A member's position in the current period. `limit`/`remaining` are None when unlimited."""

    guild_id: int
    user_id: int
    limit: int | None
    source: LimitSource
    period: Period
    period_start: datetime
    resets_at: datetime
    spent: int
    reserved: int
    remaining: int | None

    @property
    def unlimited(self) -> bool:
        return self.limit is None


@dataclass(frozen=True)
class Reservation:
    id: int
    guild_id: int
    user_id: int
    credits: int
    created_at: datetime
    state: ReservationState = ReservationState.HELD
    actual: int | None = None
    job_id: int | None = None


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    guild_id: int
    user_id: int
    at: datetime
    reservation_id: int
    job_id: int | None
    credits: int
    kind: LedgerKind


class QuotaError(Exception):
    pass


class QuotaExceeded(QuotaError):
    """The cost does not fit in what remains of the member's budget this period."""

    def __init__(self, *, remaining: int, cost: int, resets_at: datetime, limit: int) -> None:
        super().__init__(f"needs {cost} credits, {remaining} of {limit} left until {resets_at.isoformat()}")
        self.remaining = remaining
        self.cost = cost
        self.resets_at = resets_at
        self.limit = limit


class UnknownReservation(QuotaError, LookupError):
    def __init__(self, reservation_id: int) -> None:
        super().__init__(f"no reservation {reservation_id}")
        self.reservation_id = reservation_id


# Plain (Core) statements on the tables where the ORM's bookkeeping buys nothing (hot writes).
_RESERVATIONS: Table = QuotaReservation.__table__  # type: ignore[assignment]
_LEDGER: Table = QuotaLedger.__table__  # type: ignore[assignment]

HELD = QuotaReservation.state == ReservationState.HELD.value
SETTLED = QuotaReservation.state == ReservationState.SETTLED.value

# The launch's statements, built once with named parameters: SQLAlchemy takes several times longer
# to build and key a statement than to run it (an INSERT: ~100 µs built each time, ~18 µs built
# once), and a burst of /imagine runs each of these once per launch.
_INSERT_LEDGER_ROW = insert(_LEDGER)
_R = _RESERVATIONS.c
_ATTACH = update(_RESERVATIONS).where(_R.id == bindparam("b_id")).values(job_id=bindparam("b_job"))
# Settling or releasing (every finished job): the row locked, then closed.
_LOCK = (
    select(_R.id, _R.guild_id, _R.user_id, _R.job_id, _R.credits, _R.actual, _R.state)
    .where(_R.id == bindparam("b_id"))
    .with_for_update()
)
_CLOSE = (
    update(_RESERVATIONS)
    .where(_R.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        actual=bindparam("b_actual", type_=_R.actual.type),
        closed_at=bindparam("b_at", type_=_R.closed_at.type),
    )
)
_USAGE = select(
    func.coalesce(func.sum(_R.actual).filter(_R.state == ReservationState.SETTLED.value), 0),
    func.coalesce(func.sum(_R.credits).filter(_R.state == ReservationState.HELD.value), 0),
    func.count().filter(_R.state != ReservationState.RELEASED.value),
).where(
    _R.guild_id == bindparam("guild_id"),
    _R.user_id == bindparam("user_id"),
    _R.created_at >= bindparam("start"),
    _R.created_at < bindparam("end"),
)
# The same per member, for the members of a group of launches (`Ledger.allowances_in`).
_USAGE_BY_MEMBER = (
    select(_R.user_id, *_USAGE.selected_columns)
    .where(
        _R.guild_id == bindparam("guild_id"),
        _R.user_id.in_(bindparam("user_ids", expanding=True)),
        _R.created_at >= bindparam("start"),
        _R.created_at < bindparam("end"),
    )
    .group_by(_R.user_id)
)


@dataclass(slots=True)
class Allowance:
    """What one member may still reserve this period, read under their lock: a group of launches
    stored together spends it in order (`check`, then `spend` once the launch is accepted)."""

    user_id: int
    policy: QuotaPolicy
    resets_at: datetime
    used: int  # spent and still reserved this period

    def check(self, role_ids: Iterable[int], cost: int) -> None:
        """`QuotaExceeded` unless `cost` fits in what is left."""
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
            raise ValueError("cost must be a whole number of at least 0")
        limit, _ = self.policy.resolve(self.user_id, list(role_ids))
        if limit is not None and cost > limit - self.used:
            remaining = max(0, limit - self.used)
            raise QuotaExceeded(remaining=remaining, cost=cost, resets_at=self.resets_at, limit=limit)

    def spend(self, cost: int) -> None:
        self.used += cost


def _reservation(row: QuotaReservation) -> Reservation:
    return Reservation(
        id=row.id,
        guild_id=row.guild_id,
        user_id=row.user_id,
        credits=row.credits,
        created_at=row.created_at,
        state=ReservationState(row.state),
        actual=row.actual,
        job_id=row.job_id,
    )


async def _record(
    s: AsyncSession,
    row: QuotaReservation | Reservation | Row[*tuple[Any, ...]],
    kind: LedgerKind,
    credits: int,
    at: datetime,
) -> None:
    """The ledger row for one movement of a reservation's credits (a plain INSERT: the launch's
    transaction writes one for every /imagine, and the ORM's unit of work costs several times more)."""
    await s.execute(_INSERT_LEDGER_ROW, _ledger_row(row, kind, credits, at))


def _ledger_row(
    row: QuotaReservation | Reservation | Row[*tuple[Any, ...]], kind: LedgerKind, credits: int, at: datetime
) -> dict[str, Any]:
    return {
        "guild_id": row.guild_id,
        "user_id": row.user_id,
        "at": at,
        "reservation_id": row.id,
        "job_id": row.job_id,
        "credits": credits,
        "kind": kind.value,
    }


async def usage(
    s: AsyncSession, guild_id: int, user_id: int, start: datetime, end: datetime
) -> tuple[int, int, int]:
    """(spent, reserved, generations) of a member for reservations made in [start, end)."""
    bounds = {"guild_id": guild_id, "user_id": user_id, "start": start, "end": end}
    row = (await s.execute(_USAGE, bounds)).one()
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)


class Ledger:
    """Budgets, reservations and their ledger rows for every server; see the module docstring."""

    def __init__(self, db: Database, policies: QuotaPolicies, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._policies = policies
        self._clock = clock

    async def budget(self, guild_id: int, user_id: int, role_ids: Iterable[int]) -> Budget:
        """Where the member stands this period."""
        now = self._clock()
        async with self._db.session() as s:
            policy = await self._policies.read(s, guild_id)
            start, end = period_bounds(policy.period, now)
            spent, reserved, _ = await usage(s, guild_id, user_id, start, end)
        limit, source = policy.resolve(user_id, role_ids)
        return Budget(
            guild_id=guild_id,
            user_id=user_id,
            limit=limit,
            source=source,
            period=policy.period,
            period_start=start,
            resets_at=end,
            spent=spent,
            reserved=reserved,
            remaining=None if limit is None else max(0, limit - spent - reserved),
        )

    async def reserve(self, guild_id: int, user_id: int, role_ids: Iterable[int], cost: int) -> Reservation:
        """Hold `cost` credits of the member's budget, or raise `QuotaExceeded`.

        Atomic per member across connections and processes. Unlimited members get a
        reservation too, so the ledger and reports see all use.
        """
        roles = list(role_ids)

        async def work(s: AsyncSession) -> Reservation:
            return await self.reserve_in(s, guild_id, user_id, roles, cost)

        return await self._db.run(work)

    async def reserve_in(
        self, s: AsyncSession, guild_id: int, user_id: int, role_ids: Iterable[int], cost: int
    ) -> Reservation:
        """`reserve` inside the caller's write transaction. The member's lock is held until that
        transaction ends."""
        allowance = (await self.allowances_in(s, guild_id, [user_id]))[user_id]
        allowance.check(role_ids, cost)
        (reservation,) = await self.reserve_many_in(s, guild_id, [(user_id, cost)])
        return reservation

    async def allowances_in(
        self, s: AsyncSession, guild_id: int, user_ids: Iterable[int]
    ) -> dict[int, Allowance]:
        """What each of these members may still reserve, read under their locks (taken in one
        statement, in key order, so groups of launches in several processes cannot deadlock),
        inside the caller's write transaction: the launches it stores spend it (`Allowance`)."""
        users = sorted(set(user_ids))
        await advisory_locks(s, [("quota", guild_id, user_id) for user_id in users])
        policy = await self._policies.read(s, guild_id)
        start, end = period_bounds(policy.period, self._clock())
        used = dict.fromkeys(users, 0)
        # Nobody here has a limit: nothing to count.
        limited = policy.default is not None or policy.roles or any(u in policy.members for u in users)
        if limited and len(users) == 1:  # the usual single launch: the statement without a list
            spent, reserved, _ = await usage(s, guild_id, users[0], start, end)
            used[users[0]] = spent + reserved
        elif limited:
            bounds = {"guild_id": guild_id, "user_ids": users, "start": start, "end": end}
            for user_id, spent, reserved, _ in (await s.execute(_USAGE_BY_MEMBER, bounds)).all():
                used[int(user_id)] = int(spent or 0) + int(reserved or 0)
        return {u: Allowance(user_id=u, policy=policy, resets_at=end, used=used[u]) for u in users}

    async def reserve_many_in(
        self, s: AsyncSession, guild_id: int, asks: list[tuple[int, int]]
    ) -> list[Reservation]:
        """Hold credits for each (member, cost), already checked against their `Allowance`s, inside
        the caller's write transaction: the reservations and their ledger rows, a statement each
        for the whole list."""
        if not asks:
            return []
        now = self._clock()
        rows = [
            {
                "guild_id": guild_id,
                "user_id": user_id,
                "credits": cost,
                "actual": None,
                "state": ReservationState.HELD.value,
                "job_id": None,
                "created_at": now,
                "closed_at": None,
            }
            for user_id, cost in asks
        ]
        ids = [row.id for row in await insert_many(s, _RESERVATIONS, rows, (_RESERVATIONS.c.id,))]
        reservations = [
            Reservation(id=int(i), guild_id=guild_id, user_id=user_id, credits=cost, created_at=now)
            for i, (user_id, cost) in zip(ids, asks, strict=True)
        ]
        entries = [_ledger_row(r, LedgerKind.RESERVE, -r.credits, now) for r in reservations]
        await s.execute(_INSERT_LEDGER_ROW, entries[0] if len(entries) == 1 else entries)
        return reservations

    async def get_reservation(self, reservation_id: int) -> Reservation | None:
        async with self._db.session() as s:
            row = await s.get(QuotaReservation, reservation_id)
            return None if row is None else _reservation(row)

    async def attach(self, reservation_id: int, job_id: int) -> None:
        """Record which job a reservation pays for (so it is no longer an orphan)."""
        await self._db.run(lambda s: self.attach_in(s, reservation_id, job_id))

    async def attach_many_in(self, s: AsyncSession, pairs: list[tuple[int, int]]) -> None:
        """`attach` for each (reservation, job), one statement, inside the caller's transaction
        (reservations it made itself)."""
        if len(pairs) == 1:
            await self.attach_in(s, *pairs[0])
        elif pairs:
            await s.execute(_ATTACH, [{"b_id": r, "b_job": j} for r, j in pairs])

    async def attach_in(self, s: AsyncSession, reservation_id: int, job_id: int) -> None:
        """`attach` inside the caller's write transaction."""
        result = await s.execute(_ATTACH, {"b_id": reservation_id, "b_job": job_id})
        if not getattr(result, "rowcount", 0):
            raise UnknownReservation(reservation_id)

    async def _close(self, reservation_id: int, kind: LedgerKind, actual: int | None) -> int:
        return await self._db.run(lambda s: self._close_in(s, reservation_id, kind, actual))

    async def _close_in(
        self, s: AsyncSession, reservation_id: int, kind: LedgerKind, actual: int | None
    ) -> int:
        row = (await s.execute(_LOCK, {"b_id": reservation_id})).one_or_none()
        if row is None:
            raise UnknownReservation(reservation_id)
        if row.state != ReservationState.HELD.value:
            return 0
        now = self._clock()
        if kind is LedgerKind.SETTLE_REFUND:
            assert actual is not None
            state, returned = ReservationState.SETTLED.value, int(row.credits) - actual
        else:
            state, actual, returned = ReservationState.RELEASED.value, row.actual, int(row.credits)
        await s.execute(_CLOSE, {"b_id": reservation_id, "b_state": state, "b_actual": actual, "b_at": now})
        await _record(s, row, kind, returned, now)
        return returned

    async def settle_in(self, s: AsyncSession, reservation_id: int, actual: int) -> int:
        """`settle` inside the caller's write transaction (a job's success and its charge together)."""
        actual = credits_arg(actual, name="actual") or 0
        return await self._close_in(s, reservation_id, LedgerKind.SETTLE_REFUND, actual)

    async def settle(self, reservation_id: int, actual: int) -> int:
        """Charge the actual cost; returns the credits given back (reserved - actual).

        Idempotent: settling (or releasing) an already closed reservation changes nothing and
        returns 0. A negative result means `actual` exceeded the reservation and was charged.
        """
        actual = credits_arg(actual, name="actual") or 0
        return await self._close(reservation_id, LedgerKind.SETTLE_REFUND, actual)

    async def release(self, reservation_id: int) -> int:
        """Give the whole reservation back (nothing was charged); returns the credits returned.

        Idempotent; a no-op (returning 0) after `settle`.
        """
        return await self._close(reservation_id, LedgerKind.RELEASE, None)

    async def release_orphans(self, older_than: timedelta | datetime) -> int:
        """Release held reservations with no job attached, made before `older_than`
        (a cutoff time, or an age relative to now). Returns how many were released."""
        cutoff = as_utc(older_than) if isinstance(older_than, datetime) else self._clock() - older_than

        async def work(s: AsyncSession) -> int:
            rows = (
                (
                    await s.execute(
                        select(QuotaReservation)
                        .where(HELD, QuotaReservation.job_id.is_(None), QuotaReservation.created_at < cutoff)
                        .order_by(QuotaReservation.id)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            now = self._clock()
            for row in rows:
                row.state = ReservationState.RELEASED.value
                row.closed_at = now
                await _record(s, row, LedgerKind.RELEASE, row.credits, now)
            return len(rows)

        count = await self._db.run(work)
        if count:
            log.info("released %d orphaned quota reservation(s)", count)
        return count
