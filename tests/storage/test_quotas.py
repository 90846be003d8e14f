"""Quota policy, periods, reservations, the ledger and reports."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.clock import ManualClock
from bot.db import Database
from bot.db.models import QuotaLedger, QuotaReservation
from bot.quotas import (
    Budget,
    LedgerKind,
    LimitSource,
    MemberSpend,
    Period,
    QuotaExceeded,
    QuotaPolicy,
    QuotaService,
    ReservationState,
    UnknownReservation,
    period_bounds,
)

G = 1_100_000_000_000_000_001
U = 1_200_000_000_000_000_001
V = U + 1
ROLE_A, ROLE_B, ROLE_C, ADMIN = 31, 32, 33, 34


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- periods --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        (Period.DAY, utc(2025, 1, 15, 12), utc(2025, 1, 15), utc(2025, 1, 16)),
        (Period.DAY, utc(2025, 1, 15), utc(2025, 1, 15), utc(2025, 1, 16)),
        (Period.DAY, utc(2024, 12, 31, 23, 59, 59), utc(2024, 12, 31), utc(2025, 1, 1)),
        (Period.WEEK, utc(2025, 1, 15, 12), utc(2025, 1, 13), utc(2025, 1, 20)),  # Wednesday
        (Period.WEEK, utc(2025, 1, 13), utc(2025, 1, 13), utc(2025, 1, 20)),  # Monday 00:00
        (Period.WEEK, utc(2025, 1, 19, 23, 59), utc(2025, 1, 13), utc(2025, 1, 20)),  # Sunday night
        (Period.WEEK, utc(2025, 1, 1), utc(2024, 12, 30), utc(2025, 1, 6)),  # across a year
        (Period.MONTH, utc(2025, 1, 15, 12), utc(2025, 1, 1), utc(2025, 2, 1)),
        (Period.MONTH, utc(2024, 2, 29, 23), utc(2024, 2, 1), utc(2024, 3, 1)),
        (Period.MONTH, utc(2024, 12, 31, 23), utc(2024, 12, 1), utc(2025, 1, 1)),
    ],
)
def test_period_bounds(period: Period, now: datetime, start: datetime, end: datetime) -> None:
    assert period_bounds(period, now) == (start, end)


def test_period_bounds_are_utc() -> None:
    from datetime import timezone

    tokyo = timezone(timedelta(hours=9))
    # 2025-01-16 02:00 in Tokyo is still the 15th in UTC.
    assert period_bounds("day", datetime(2025, 1, 16, 2, tzinfo=tokyo)) == (
        utc(2025, 1, 15),
        utc(2025, 1, 16),
    )


# -- policy -----------------------------------------------------------------------------------------


def test_policy_resolution() -> None:
    policy = QuotaPolicy(
        guild_id=G,
        default=100,
        period=Period.DAY,
        roles={ROLE_A: 50, ROLE_B: 500, ROLE_C: 200},
        members={V: 10},
        exempt_roles=frozenset({ADMIN}),
    )
    assert policy.resolve(U, []) == (100, LimitSource.DEFAULT)
    assert policy.resolve(U, [ROLE_A]) == (50, LimitSource.ROLE)  # a role overrides the default
    assert policy.resolve(U, [ROLE_A, ROLE_C, ROLE_B]) == (500, LimitSource.ROLE)  # most generous
    assert policy.resolve(U, [999]) == (100, LimitSource.DEFAULT)
    assert policy.resolve(V, [ROLE_B]) == (10, LimitSource.MEMBER)  # member beats roles
    assert policy.resolve(V, [ROLE_B, ADMIN]) == (None, LimitSource.EXEMPT)  # exempt beats all
    assert policy.limit_for(U, [ADMIN]) is None
    unlimited = QuotaPolicy(guild_id=G, roles={ROLE_A: 5})
    assert unlimited.resolve(U, []) == (None, LimitSource.DEFAULT)
    assert unlimited.resolve(U, [ROLE_A]) == (5, LimitSource.ROLE)


async def test_policy_round_trip(db: Database, clock: ManualClock) -> None:
    q = QuotaService(db, clock=clock)
    assert await q.policies.policy(G) == QuotaPolicy(guild_id=G)
    await q.policies.set_default(G, 100, Period.WEEK)
    await q.policies.set_role(G, ROLE_A, 50)
    await q.policies.set_role(G, ROLE_B, 0)
    await q.policies.set_member(G, U, 7)
    policy = await q.policies.set_exempt(G, ADMIN, True)
    assert policy == QuotaPolicy(
        guild_id=G,
        default=100,
        period=Period.WEEK,
        roles={ROLE_A: 50, ROLE_B: 0},
        members={U: 7},
        exempt_roles=frozenset({ADMIN}),
    )
    assert policy.bounds(clock()) == (utc(2025, 1, 13), utc(2025, 1, 20))
    await q.policies.set_default(G, None)  # unlimited, period kept
    await q.policies.set_role(G, ROLE_A, None)
    await q.policies.set_member(G, U, None)
    await q.policies.set_exempt(G, ADMIN, False)
    await q.policies.set_exempt(G, ADMIN, False)
    assert await q.policies.policy(G) == QuotaPolicy(guild_id=G, period=Period.WEEK, roles={ROLE_B: 0})
    assert await q.policies.policy(G + 1) == QuotaPolicy(guild_id=G + 1)
    await q.policies.set_default(G, 5, "month")
    assert (await q.policies.policy(G)).period is Period.MONTH
    with pytest.raises(ValueError):
        await q.policies.set_default(G, -1)
    with pytest.raises(ValueError):
        await q.policies.set_role(G, ROLE_A, -5)


async def test_budget_resolution(db: Database, clock: ManualClock) -> None:
    q = QuotaService(db, clock=clock)
    budget = await q.ledger.budget(G, U, [])
    assert budget == Budget(
        guild_id=G,
        user_id=U,
        limit=None,
        source=LimitSource.DEFAULT,
        period=Period.DAY,
        period_start=utc(2025, 1, 15),
        resets_at=utc(2025, 1, 16),
        spent=0,
        reserved=0,
        remaining=None,
    )
    assert budget.unlimited
    await q.policies.set_default(G, 100, Period.DAY)
    await q.policies.set_role(G, ROLE_A, 300)
    await q.policies.set_role(G, ROLE_B, 200)
    await q.policies.set_exempt(G, ADMIN, True)
    assert (await q.ledger.budget(G, U, [])).limit == 100
    assert (await q.ledger.budget(G, U, [ROLE_A, ROLE_B])).limit == 300
    assert (await q.ledger.budget(G, U, [ROLE_B, ADMIN])).limit is None
    await q.policies.set_member(G, U, 20)
    budget = await q.ledger.budget(G, U, [ROLE_A])
    assert (budget.limit, budget.source, budget.remaining) == (20, LimitSource.MEMBER, 20)


# -- reservations -----------------------------------------------------------------------------------


async def test_reserve_settle_release(db: Database, clock: ManualClock) -> None:
    q = QuotaService(db, clock=clock)
    await q.policies.set_default(G, 100, Period.DAY)

    r1 = await q.ledger.reserve(G, U, [], 40)
    assert (r1.credits, r1.state, r1.guild_id, r1.user_id) == (40, ReservationState.HELD, G, U)
    r2 = await q.ledger.reserve(G, U, [], 40)
    budget = await q.ledger.budget(G, U, [])
    assert (budget.spent, budget.reserved, budget.remaining) == (0, 80, 20)

    with pytest.raises(QuotaExceeded) as excinfo:
        await q.ledger.reserve(G, U, [], 30)
    assert (excinfo.value.remaining, excinfo.value.cost, excinfo.value.limit) == (20, 30, 100)
    assert excinfo.value.resets_at == utc(2025, 1, 16)
    assert (await q.ledger.budget(G, V, [])).remaining == 100  # other members unaffected

    assert await q.ledger.settle(r1.id, 25) == 15  # 15 returned
    assert await q.ledger.settle(r1.id, 25) == 0  # idempotent
    assert await q.ledger.release(r1.id) == 0  # no-op after settle
    budget = await q.ledger.budget(G, U, [])
    assert (budget.spent, budget.reserved, budget.remaining) == (25, 40, 35)

    assert await q.ledger.release(r2.id) == 40
    assert await q.ledger.release(r2.id) == 0
    assert await q.ledger.settle(r2.id, 40) == 0  # no-op after release
    budget = await q.ledger.budget(G, U, [])
    assert (budget.spent, budget.reserved, budget.remaining) == (25, 0, 75)

    r3 = await q.ledger.reserve(G, U, [], 75)  # exactly what remains
    assert (await q.ledger.budget(G, U, [])).remaining == 0
    assert await q.ledger.settle(r3.id, 0) == 75
    assert (await q.ledger.get_reservation(r3.id)).state is ReservationState.SETTLED  # type: ignore[union-attr]
    assert await q.ledger.get_reservation(999_999) is None

    with pytest.raises(UnknownReservation):
        await q.ledger.settle(999_999, 1)
    with pytest.raises(UnknownReservation):
        await q.ledger.release(999_999)
    with pytest.raises(ValueError):
        await q.ledger.reserve(G, U, [], -1)
    with pytest.raises(ValueError):
        await q.ledger.settle(r3.id, -1)


async def test_settle_above_reservation_charges_extra(db: Database, clock: ManualClock) -> None:
    q = QuotaService(db, clock=clock)
    await q.policies.set_default(G, 100)
    r = await q.ledger.reserve(G, U, [], 10)
    assert await q.ledger.settle(r.id, 12) == -2
    assert (await q.ledger.budget(G, U, [])).spent == 12


async def test_unlimited_members_are_tracked(db: Database, clock: ManualClock) -> None:
    q = QuotaService(db, clock=clock)
    await q.policies.set_default(G, 10)
    await q.policies.set_exempt(G, ADMIN, True)
    for _ in range(5):
        await q.ledger.reserve(G, U, [ADMIN], 10)
    budget = await q.ledger.budget(G, U, [ADMIN])
    assert (budget.limit, budget.remaining, budget.reserved) == (None, None, 50)
    with pytest.raises(QuotaExceeded):
        await q.ledger.reserve(G, U, [], 10)  # without the role, the default applies to the same spending


async def test_zero_budget_refuses_everything_but_free(db: Database, clock: ManualClock) -> None:
    q = QuotaService(db, clock=clock)
    await q.policies.set_default(G, 0)
    with pytest.raises(QuotaExceeded) as excinfo:
        await q.ledger.reserve(G, U, [], 1)
    assert excinfo.value.remaining == 0
    await q.ledger.reserve(G, U, [], 0)


async def test_budget_resets_at_the_period_boundary(db: Database, clock: ManualClock) -> None:
    q = QuotaService(db, clock=clock)
    await q.policies.set_default(G, 50, Period.WEEK)
    clock.set(utc(2025, 1, 19, 23, 59, 59))  # Sunday night
    r = await q.ledger.reserve(G, U, [], 50)
    with pytest.raises(QuotaExceeded) as excinfo:
        await q.ledger.reserve(G, U, [], 1)
    assert excinfo.value.resets_at == utc(2025, 1, 20)
    clock.set(utc(2025, 1, 20))  # Monday 00:00 UTC: a new week
    budget = await q.ledger.budget(G, U, [])
    assert (budget.remaining, budget.period_start, budget.resets_at) == (
        50,
        utc(2025, 1, 20),
        utc(2025, 1, 27),
    )
    await q.ledger.reserve(G, U, [], 50)
    # Settling last week's reservation now refunds last week, not this week.
    assert await q.ledger.settle(r.id, 10) == 40
    assert (await q.ledger.budget(G, U, [])).remaining == 0


async def test_release_orphans(db: Database, clock: ManualClock) -> None:
    q = QuotaService(db, clock=clock)
    await q.policies.set_default(G, 100)
    orphan = await q.ledger.reserve(G, U, [], 10)
    attached = await q.ledger.reserve(G, U, [], 20)
    await q.ledger.attach(attached.id, 77)
    assert (await q.ledger.get_reservation(attached.id)).job_id == 77  # type: ignore[union-attr]
    settled = await q.ledger.reserve(G, U, [], 30)
    await q.ledger.settle(settled.id, 30)
    clock.advance(minutes=10)
    young = await q.ledger.reserve(G, U, [], 5)

    assert await q.ledger.release_orphans(timedelta(minutes=15)) == 0
    assert await q.ledger.release_orphans(timedelta(minutes=5)) == 1
    assert (await q.ledger.get_reservation(orphan.id)).state is ReservationState.RELEASED  # type: ignore[union-attr]
    assert (await q.ledger.get_reservation(attached.id)).state is ReservationState.HELD  # type: ignore[union-attr]
    assert (await q.ledger.get_reservation(young.id)).state is ReservationState.HELD  # type: ignore[union-attr]
    assert await q.ledger.release_orphans(timedelta(minutes=5)) == 0
    assert await q.ledger.release_orphans(clock() + timedelta(seconds=1)) == 1  # a cutoff time works too
    budget = await q.ledger.budget(G, U, [])
    assert (budget.spent, budget.reserved) == (30, 20)
    with pytest.raises(UnknownReservation):
        await q.ledger.attach(999_999, 1)


# -- ledger and reports -----------------------------------------------------------------------------


async def test_ledger_records_every_movement(db: Database, clock: ManualClock) -> None:
    q = QuotaService(db, clock=clock)
    a = await q.ledger.reserve(G, U, [], 40)
    await q.ledger.attach(a.id, 5)
    clock.advance(seconds=1)
    b = await q.ledger.reserve(G, U, [], 10)
    clock.advance(seconds=1)
    await q.ledger.settle(a.id, 30)
    await q.ledger.settle(a.id, 30)
    clock.advance(seconds=1)
    await q.ledger.release(b.id)
    clock.advance(seconds=1)
    await q.ledger.reserve(G, V, [], 7)

    entries = await q.reports.recent(G, U, 10)
    assert [(e.kind, e.credits, e.reservation_id, e.job_id) for e in entries] == [
        (LedgerKind.RELEASE, 10, b.id, None),
        (LedgerKind.SETTLE_REFUND, 10, a.id, 5),
        (LedgerKind.RESERVE, -10, b.id, None),
        (LedgerKind.RESERVE, -40, a.id, None),
    ]
    assert all(e.guild_id == G and e.user_id == U for e in entries)
    assert entries[0].at == clock() - timedelta(seconds=1)
    assert len(await q.reports.recent(G)) == 5
    assert len(await q.reports.recent(G, limit=2)) == 2
    assert await q.reports.recent(G + 1) == []

    # Each reservation's ledger sums to minus what it finally cost.
    async with db.session() as s:
        sums = dict(
            (
                await s.execute(
                    select(QuotaLedger.reservation_id, func.sum(QuotaLedger.credits)).group_by(
                        QuotaLedger.reservation_id
                    )
                )
            ).all()
        )
        reservations = (await s.execute(select(QuotaReservation))).scalars().all()
    for r in reservations:
        cost = {"held": r.credits, "settled": r.actual, "released": 0}[r.state]
        assert sums[r.id] == -cost


async def test_reports(db: Database, clock: ManualClock) -> None:
    q = QuotaService(db, clock=clock)
    await q.policies.set_default(G, None, Period.WEEK)
    clock.set(utc(2025, 1, 13, 9))  # Monday
    r = await q.ledger.reserve(G, U, [], 40)
    await q.ledger.settle(r.id, 35)
    await q.ledger.reserve(G, V, [], 10)
    clock.set(utc(2025, 1, 15, 9))  # Wednesday
    await q.ledger.reserve(G, U, [], 20)  # held
    released = await q.ledger.reserve(G, V, [], 100)
    await q.ledger.release(released.id)
    await q.ledger.reserve(G + 1, U, [], 999)  # another server
    clock.set(utc(2025, 1, 10, 9))  # the previous week (a Friday)
    old = await q.ledger.reserve(G, V, [], 500)
    await q.ledger.settle(old.id, 500)
    clock.set(utc(2025, 1, 15, 12))

    usage = await q.reports.member_usage(G, U)
    assert (usage.spent, usage.reserved, usage.total, usage.generations) == (35, 20, 55, 2)
    assert (usage.period, usage.period_start, usage.resets_at) == (
        Period.WEEK,
        utc(2025, 1, 13),
        utc(2025, 1, 20),
    )
    v_usage = await q.reports.member_usage(G, V)
    assert (v_usage.total, v_usage.generations) == (10, 1)  # released and last week's are not counted

    top = await q.reports.top_members(G, 10)
    assert top == [MemberSpend(U, 55), MemberSpend(V, 10)]
    user, credits = top[0]
    assert (user, credits) == (U, 55)
    assert await q.reports.top_members(G, 1) == [MemberSpend(U, 55)]
    assert await q.reports.top_members(G + 2, 10) == []

    assert await q.reports.guild_spend(G, since=utc(2025, 1, 13)) == 65
    assert await q.reports.guild_spend(G, since=utc(2025, 1, 14)) == 20
    assert await q.reports.guild_spend(G, since=utc(2025, 1, 1)) == 565

    daily = await q.reports.daily_spend(G, 7)
    assert daily == [
        (date(2025, 1, 9), 0),
        (date(2025, 1, 10), 500),
        (date(2025, 1, 11), 0),
        (date(2025, 1, 12), 0),
        (date(2025, 1, 13), 45),
        (date(2025, 1, 14), 0),
        (date(2025, 1, 15), 20),
    ]
    assert await q.reports.daily_spend(G, 1) == [(date(2025, 1, 15), 20)]
    with pytest.raises(ValueError):
        await q.reports.daily_spend(G, 0)
