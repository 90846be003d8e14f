"""Credit budgets per member, reservations against them, the ledger and usage reports.

Policy (most specific wins): an exempt role means no limit at all; else a member override;
else the most generous of the member's role overrides; else the server default (no default:
unlimited). Budgets reset at UTC period boundaries (weeks start Monday 00:00 UTC).

Spending is two-phase: `reserve` holds the expected cost before a generation is submitted
(refusing with `QuotaExceeded` when it does not fit), then `settle` charges the actual cost
(returning the difference) or `release` returns everything. A reservation counts towards the
period in which it was made. Reservations of one member are serialised (a PostgreSQL
advisory lock; SQLite's `BEGIN IMMEDIATE`), so racing requests — from any number of
processes — never overspend. Every movement is written to the ledger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock, as_utc, utcnow
from bot.db import Database
from bot.db.models import (
    QuotaExemptRole,
    QuotaLedger,
    QuotaMemberLimit,
    QuotaReservation,
    QuotaRoleLimit,
    QuotaSettings,
)
from bot.db.sql import advisory_lock, upsert

log = logging.getLogger(__name__)


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


DEFAULT_PERIOD = Period.DAY


def period_bounds(period: Period | str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC period containing `now`: `(start, end)`, start inclusive, end exclusive."""
    period = Period(period)
    now = as_utc(now)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        return day, day + timedelta(days=1)
    if period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


class LimitSource(StrEnum):
    """Which rule set a member's limit."""

    EXEMPT = "exempt"
    MEMBER = "member"
    ROLE = "role"
    DEFAULT = "default"


class ReservationState(StrEnum):
    HELD = "held"
    SETTLED = "settled"
    RELEASED = "released"


class LedgerKind(StrEnum):
    RESERVE = "reserve"  # credits < 0: taken from the budget
    SETTLE_REFUND = "settle_refund"  # reserved - actual (> 0 returns credits; < 0 charges extra)
    RELEASE = "release"  # credits > 0: the whole reservation returned


@dataclass(frozen=True)
class QuotaPolicy:
    """A server's quota rules. Credits are per `period`; `default` None means unlimited."""

    guild_id: int
    default: int | None = None
    period: Period = DEFAULT_PERIOD
    roles: Mapping[int, int] = field(default_factory=dict)  # role id -> credits
    members: Mapping[int, int] = field(default_factory=dict)  # user id -> credits
    exempt_roles: frozenset[int] = frozenset()

    def resolve(self, user_id: int, role_ids: Iterable[int]) -> tuple[int | None, LimitSource]:
        """The member's limit (None: unlimited) and the rule it came from."""
        held = set(role_ids)
        if held & self.exempt_roles:
            return None, LimitSource.EXEMPT
        if user_id in self.members:
            return self.members[user_id], LimitSource.MEMBER
        role_limits = [self.roles[r] for r in held if r in self.roles]
        if role_limits:
            return max(role_limits), LimitSource.ROLE
        return self.default, LimitSource.DEFAULT

    def limit_for(self, user_id: int, role_ids: Iterable[int]) -> int | None:
        return self.resolve(user_id, role_ids)[0]

    def bounds(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The current period `(start, end)` (of `now`, default the current time)."""
        return period_bounds(self.period, now if now is not None else utcnow())


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


@dataclass(frozen=True)
class MemberUsage:
    """A member's use in the current period: `spent` settled + `reserved` still held."""

    guild_id: int
    user_id: int
    period: Period
    period_start: datetime
    resets_at: datetime
    spent: int
    reserved: int
    generations: int

    @property
    def total(self) -> int:
        return self.spent + self.reserved


class MemberSpend(NamedTuple):
    """One row of `top_members`; unpacks as `(user_id, credits)`."""

    user_id: int
    credits: int


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


def _credits_arg(credits: int | None, *, name: str = "credits") -> int | None:
    if credits is None:
        return None
    if isinstance(credits, bool) or not isinstance(credits, int) or credits < 0:
        raise ValueError(f"{name} must be a whole number of at least 0")
    return credits


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


def _entry(row: QuotaLedger) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        guild_id=row.guild_id,
        user_id=row.user_id,
        at=row.at,
        reservation_id=row.reservation_id,
        job_id=row.job_id,
        credits=row.credits,
        kind=LedgerKind(row.kind),
    )


_HELD = QuotaReservation.state == ReservationState.HELD.value
_SETTLED = QuotaReservation.state == ReservationState.SETTLED.value


class QuotaService:
    """Quota policy, reservations, the ledger and reports for every server.

    Policies are cached for `POLICY_CACHE_SECONDS` (every budget check and reservation reads
    one): a change made through this service applies at once, one made by another process
    within that time. Spending is never cached: reservations always count the ledger's rows.
    """

    POLICY_CACHE_SECONDS = 5.0

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock
        self._policies: dict[int, tuple[float, QuotaPolicy]] = {}
        self._changes = 0  # policy writes through this service: a read racing one is not cached

    def _forget(self, guild_id: int) -> None:
        self._changes += 1
        self._policies.pop(guild_id, None)

    # -- policy ----------------------------------------------------------------------------

    async def set_default(
        self, guild_id: int, credits: int | None, period: Period | str | None = None
    ) -> QuotaPolicy:
        """Set the server's default budget (None: unlimited); `period` None keeps the current one."""
        credits = _credits_arg(credits)
        new_period = Period(period) if period is not None else None

        async def work(s: AsyncSession) -> None:
            values: dict[str, Any] = {"guild_id": guild_id, "credits": credits}
            changes: dict[str, Any] = {"credits": credits}
            values["period"] = (new_period or DEFAULT_PERIOD).value
            if new_period is not None:
                changes["period"] = new_period.value
            await upsert(s, QuotaSettings, values, ["guild_id"], update=changes)

        await self._db.run(work)
        self._forget(guild_id)
        return await self.policy(guild_id)

    async def set_role(self, guild_id: int, role_id: int, credits: int | None) -> QuotaPolicy:
        """Give a role its own budget per period; None removes the override."""
        return await self._set_override(QuotaRoleLimit, "role_id", guild_id, role_id, credits)

    async def set_member(self, guild_id: int, user_id: int, credits: int | None) -> QuotaPolicy:
        """Give one member their own budget (beats role overrides); None removes it."""
        return await self._set_override(QuotaMemberLimit, "user_id", guild_id, user_id, credits)

    async def _set_override(
        self,
        table: type[QuotaRoleLimit] | type[QuotaMemberLimit],
        key: str,
        guild_id: int,
        key_id: int,
        credits: int | None,
    ) -> QuotaPolicy:
        credits = _credits_arg(credits)
        column = getattr(table, key)

        async def work(s: AsyncSession) -> None:
            if credits is None:
                await s.execute(delete(table).where(table.guild_id == guild_id, column == key_id))
            else:
                values = {"guild_id": guild_id, key: key_id, "credits": credits}
                await upsert(s, table, values, ["guild_id", key])

        await self._db.run(work)
        self._forget(guild_id)
        return await self.policy(guild_id)

    async def set_exempt(self, guild_id: int, role_id: int, exempt: bool) -> QuotaPolicy:
        """Members with an exempt role have no limit."""

        async def work(s: AsyncSession) -> None:
            if exempt:
                await upsert(
                    s, QuotaExemptRole, {"guild_id": guild_id, "role_id": role_id}, ["guild_id", "role_id"]
                )
            else:
                await s.execute(
                    delete(QuotaExemptRole).where(
                        QuotaExemptRole.guild_id == guild_id, QuotaExemptRole.role_id == role_id
                    )
                )

        await self._db.run(work)
        self._forget(guild_id)
        return await self.policy(guild_id)

    async def policy(self, guild_id: int) -> QuotaPolicy:
        async with self._db.session() as s:
            return await self._policy(s, guild_id)

    async def _policy(self, s: AsyncSession, guild_id: int) -> QuotaPolicy:
        cached = self._policies.get(guild_id)
        if cached is not None and time.monotonic() - cached[0] < self.POLICY_CACHE_SECONDS:
            return cached[1]
        read_at, changes = time.monotonic(), self._changes
        policy = await self._load_policy(s, guild_id)
        if changes == self._changes:
            self._policies[guild_id] = (read_at, policy)
        return policy

    async def _load_policy(self, s: AsyncSession, guild_id: int) -> QuotaPolicy:
        settings = await s.get(QuotaSettings, guild_id)
        roles = (
            await s.execute(
                select(QuotaRoleLimit.role_id, QuotaRoleLimit.credits).where(
                    QuotaRoleLimit.guild_id == guild_id
                )
            )
        ).all()
        members = (
            await s.execute(
                select(QuotaMemberLimit.user_id, QuotaMemberLimit.credits).where(
                    QuotaMemberLimit.guild_id == guild_id
                )
            )
        ).all()
        exempt = (
            await s.execute(select(QuotaExemptRole.role_id).where(QuotaExemptRole.guild_id == guild_id))
        ).scalars()
        return QuotaPolicy(
            guild_id=guild_id,
            default=settings.credits if settings else None,
            period=Period(settings.period) if settings else DEFAULT_PERIOD,
            roles={r: c for r, c in roles},
            members={u: c for u, c in members},
            exempt_roles=frozenset(exempt),
        )

    # -- budgets and reservations ------------------------------------------------------------

    async def _usage(
        self, s: AsyncSession, guild_id: int, user_id: int, start: datetime, end: datetime
    ) -> tuple[int, int, int]:
        """(spent, reserved, generations) of a member for reservations made in [start, end)."""
        row = (
            await s.execute(
                select(
                    func.coalesce(func.sum(QuotaReservation.actual).filter(_SETTLED), 0),
                    func.coalesce(func.sum(QuotaReservation.credits).filter(_HELD), 0),
                    func.count().filter(QuotaReservation.state != ReservationState.RELEASED.value),
                ).where(
                    QuotaReservation.guild_id == guild_id,
                    QuotaReservation.user_id == user_id,
                    QuotaReservation.created_at >= start,
                    QuotaReservation.created_at < end,
                )
            )
        ).one()
        return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)

    async def budget(self, guild_id: int, user_id: int, role_ids: Iterable[int]) -> Budget:
        """Where the member stands this period."""
        now = self._clock()
        async with self._db.session() as s:
            policy = await self._policy(s, guild_id)
            start, end = period_bounds(policy.period, now)
            spent, reserved, _ = await self._usage(s, guild_id, user_id, start, end)
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
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
            raise ValueError("cost must be a whole number of at least 0")
        roles = list(role_ids)

        async def work(s: AsyncSession) -> Reservation:
            await advisory_lock(s, "quota", guild_id, user_id)
            now = self._clock()
            policy = await self._policy(s, guild_id)
            limit, _ = policy.resolve(user_id, roles)
            if limit is not None:
                start, end = period_bounds(policy.period, now)
                spent, reserved, _ = await self._usage(s, guild_id, user_id, start, end)
                remaining = limit - spent - reserved
                if cost > remaining:
                    raise QuotaExceeded(remaining=max(0, remaining), cost=cost, resets_at=end, limit=limit)
            row = QuotaReservation(
                guild_id=guild_id,
                user_id=user_id,
                credits=cost,
                actual=None,
                state=ReservationState.HELD.value,
                job_id=None,
                created_at=now,
                closed_at=None,
            )
            s.add(row)
            await s.flush()
            s.add(
                QuotaLedger(
                    guild_id=guild_id,
                    user_id=user_id,
                    at=now,
                    reservation_id=row.id,
                    job_id=None,
                    credits=-cost,
                    kind=LedgerKind.RESERVE.value,
                )
            )
            return _reservation(row)

        return await self._db.run(work)

    async def get_reservation(self, reservation_id: int) -> Reservation | None:
        async with self._db.session() as s:
            row = await s.get(QuotaReservation, reservation_id)
            return None if row is None else _reservation(row)

    async def attach(self, reservation_id: int, job_id: int) -> None:
        """Record which job a reservation pays for (so it is no longer an orphan)."""

        async def work(s: AsyncSession) -> int:
            result = await s.execute(
                update(QuotaReservation).where(QuotaReservation.id == reservation_id).values(job_id=job_id)
            )
            return int(getattr(result, "rowcount", 0))

        if not await self._db.run(work):
            raise UnknownReservation(reservation_id)

    async def _close(self, reservation_id: int, kind: LedgerKind, actual: int | None) -> int:
        async def work(s: AsyncSession) -> int:
            row = (
                await s.execute(
                    select(QuotaReservation).where(QuotaReservation.id == reservation_id).with_for_update()
                )
            ).scalar_one_or_none()
            if row is None:
                raise UnknownReservation(reservation_id)
            if row.state != ReservationState.HELD.value:
                return 0
            now = self._clock()
            if kind is LedgerKind.SETTLE_REFUND:
                assert actual is not None
                row.state, row.actual, returned = ReservationState.SETTLED.value, actual, row.credits - actual
            else:
                row.state, returned = ReservationState.RELEASED.value, row.credits
            row.closed_at = now
            s.add(
                QuotaLedger(
                    guild_id=row.guild_id,
                    user_id=row.user_id,
                    at=now,
                    reservation_id=row.id,
                    job_id=row.job_id,
                    credits=returned,
                    kind=kind.value,
                )
            )
            return returned

        return await self._db.run(work)

    async def settle(self, reservation_id: int, actual: int) -> int:
        """Charge the actual cost; returns the credits given back (reserved - actual).

        Idempotent: settling (or releasing) an already closed reservation changes nothing and
        returns 0. A negative result means `actual` exceeded the reservation and was charged.
        """
        actual = _credits_arg(actual, name="actual") or 0
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
                        .where(_HELD, QuotaReservation.job_id.is_(None), QuotaReservation.created_at < cutoff)
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
                s.add(
                    QuotaLedger(
                        guild_id=row.guild_id,
                        user_id=row.user_id,
                        at=now,
                        reservation_id=row.id,
                        job_id=None,
                        credits=row.credits,
                        kind=LedgerKind.RELEASE.value,
                    )
                )
            return len(rows)

        count = await self._db.run(work)
        if count:
            log.info("released %d orphaned quota reservation(s)", count)
        return count

    # -- reports -------------------------------------------------------------------------------
    # A reservation's net charge (held: its credits, settled: the actual cost, released: 0) equals
    # minus the sum of its ledger entries; reports sum net charges by when the reservation was made.

    async def member_usage(self, guild_id: int, user_id: int) -> MemberUsage:
        """The member's use in the server's current period."""
        now = self._clock()
        async with self._db.session() as s:
            policy = await self._policy(s, guild_id)
            start, end = period_bounds(policy.period, now)
            spent, reserved, generations = await self._usage(s, guild_id, user_id, start, end)
        return MemberUsage(
            guild_id=guild_id,
            user_id=user_id,
            period=policy.period,
            period_start=start,
            resets_at=end,
            spent=spent,
            reserved=reserved,
            generations=generations,
        )

    @staticmethod
    def _charge() -> Any:
        return func.coalesce(func.sum(QuotaReservation.actual).filter(_SETTLED), 0) + func.coalesce(
            func.sum(QuotaReservation.credits).filter(_HELD), 0
        )

    async def top_members(self, guild_id: int, limit: int = 10) -> list[MemberSpend]:
        """The biggest spenders of the current period, most first."""
        now = self._clock()
        async with self._db.session() as s:
            policy = await self._policy(s, guild_id)
            start, end = period_bounds(policy.period, now)
            charge = self._charge()
            rows = (
                await s.execute(
                    select(QuotaReservation.user_id, charge)
                    .where(
                        QuotaReservation.guild_id == guild_id,
                        QuotaReservation.created_at >= start,
                        QuotaReservation.created_at < end,
                    )
                    .group_by(QuotaReservation.user_id)
                    .having(charge > 0)
                    .order_by(charge.desc(), QuotaReservation.user_id)
                    .limit(limit)
                )
            ).all()
        return [MemberSpend(user_id=int(u), credits=int(c)) for u, c in rows]

    async def guild_spend(self, guild_id: int, since: datetime) -> int:
        """Credits used in the server by reservations made since `since`."""
        async with self._db.session() as s:
            value = (
                await s.execute(
                    select(self._charge()).where(
                        QuotaReservation.guild_id == guild_id, QuotaReservation.created_at >= as_utc(since)
                    )
                )
            ).scalar_one()
        return int(value or 0)

    async def daily_spend(self, guild_id: int, days: int = 30) -> list[tuple[date, int]]:
        """Credits used per UTC day over the last `days` days (today included), oldest first."""
        if days < 1:
            raise ValueError("days must be at least 1")
        today = self._clock().astimezone(UTC).date()
        first = today - timedelta(days=days - 1)
        since = datetime(first.year, first.month, first.day, tzinfo=UTC)
        async with self._db.session() as s:
            rows = (
                await s.execute(
                    select(
                        QuotaReservation.created_at,
                        QuotaReservation.state,
                        QuotaReservation.credits,
                        QuotaReservation.actual,
                    ).where(
                        QuotaReservation.guild_id == guild_id,
                        QuotaReservation.created_at >= since,
                        QuotaReservation.state != ReservationState.RELEASED.value,
                    )
                )
            ).all()
        totals = {first + timedelta(days=i): 0 for i in range(days)}
        for created_at, state, credits, actual in rows:
            day = created_at.astimezone(UTC).date()
            if day in totals:
                totals[day] += (actual or 0) if state == ReservationState.SETTLED.value else credits
        return sorted(totals.items())

    async def recent(self, guild_id: int, user_id: int | None = None, limit: int = 20) -> list[LedgerEntry]:
        """The newest ledger entries of the server (or of one member), newest first."""
        query = select(QuotaLedger).where(QuotaLedger.guild_id == guild_id)
        if user_id is not None:
            query = query.where(QuotaLedger.user_id == user_id)
        async with self._db.session() as s:
            rows = (
                await s.execute(query.order_by(QuotaLedger.at.desc(), QuotaLedger.id.desc()).limit(limit))
            ).scalars()
            return [_entry(r) for r in rows]
