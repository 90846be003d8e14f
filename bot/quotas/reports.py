"""Usage reports: a member's use this period, top spenders, a server's spend, per day, recent rows.

A reservation's net charge (held: its credits, settled: the actual cost, released: 0) equals
minus the sum of its ledger entries; reports sum net charges by when the reservation was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import func, select

from bot.clock import Clock, as_utc, utcnow
from bot.db import Database
from bot.db.models import QuotaLedger, QuotaReservation
from bot.quotas.ledger import HELD, SETTLED, LedgerEntry, LedgerKind, ReservationState, usage
from bot.quotas.periods import Period, period_bounds
from bot.quotas.policies import QuotaPolicies


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


def _charge() -> Any:
    return func.coalesce(func.sum(QuotaReservation.actual).filter(SETTLED), 0) + func.coalesce(
        func.sum(QuotaReservation.credits).filter(HELD), 0
    )


class QuotaReports:
    """Read-only views of the ledger for every server; see the module docstring."""

    def __init__(self, db: Database, policies: QuotaPolicies, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._policies = policies
        self._clock = clock

    async def member_usage(self, guild_id: int, user_id: int) -> MemberUsage:
        """The member's use in the server's current period."""
        now = self._clock()
        async with self._db.session() as s:
            policy = await self._policies.read(s, guild_id)
            start, end = period_bounds(policy.period, now)
            spent, reserved, generations = await usage(s, guild_id, user_id, start, end)
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

    async def top_members(self, guild_id: int, limit: int = 10) -> list[MemberSpend]:
        """The biggest spenders of the current period, most first."""
        now = self._clock()
        async with self._db.session() as s:
            policy = await self._policies.read(s, guild_id)
            start, end = period_bounds(policy.period, now)
            charge = _charge()
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
                    select(_charge()).where(
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
