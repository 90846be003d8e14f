"""The queue's selection, without a database: round robin by member, limits, ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.queue import Waiting, estimate_start, queue_order, select_promotions

T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


def waiting(*spec: tuple[int, int]) -> list[Waiting]:
    """(job id, user id) in arrival order, one second apart."""
    return [Waiting(job, user, T0 + timedelta(seconds=i)) for i, (job, user) in enumerate(spec)]


def ids(items: list[Waiting]) -> list[int]:
    return [w.job_id for w in items]


def test_members_take_turns_instead_of_first_come_by_volume() -> None:
    # Alice queued three before Bob's one and Carol's one: they don't wait behind all of hers.
    queue = waiting((1, 10), (2, 10), (3, 10), (4, 20), (5, 30))
    assert ids(queue_order(queue, {})) == [1, 4, 5, 2, 3]


def test_the_member_served_longest_ago_goes_first() -> None:
    queue = waiting((1, 10), (2, 20), (3, 10))
    served = {10: T0 - timedelta(minutes=1), 20: T0 - timedelta(minutes=5)}
    assert ids(queue_order(queue, served)) == [2, 1, 3]
    # Never served beats served long ago.
    assert ids(queue_order(waiting((1, 10), (2, 30)), {10: T0 - timedelta(days=1)})) == [2, 1]


def test_selection_fills_free_slots_and_skips_members_at_their_limit() -> None:
    queue = waiting((1, 10), (2, 10), (3, 20), (4, 20), (5, 30))
    chosen = select_promotions(queue, {}, {10: 2}, per_member=2, per_guild=5)
    assert ids(chosen) == [3, 5, 4]  # Alice is at her limit; three slots are free
    assert select_promotions(queue, {}, {10: 2, 20: 2, 30: 1}, per_member=2, per_guild=5) == []
    assert ids(select_promotions(queue, {}, {}, per_member=1, per_guild=10)) == [1, 3, 5]


def test_one_slot_at_a_time_alternates_between_members() -> None:
    queue = waiting((1, 10), (2, 10), (3, 10), (4, 20), (5, 20))
    served: dict[int, datetime] = {}
    started = []
    now = T0 + timedelta(minutes=1)
    while queue:
        (pick,) = select_promotions(queue, served, {}, per_member=1, per_guild=1)
        started.append(pick.job_id)
        served[pick.user_id] = now
        now += timedelta(seconds=30)
        queue = [w for w in queue if w.job_id != pick.job_id]
    assert started == [1, 4, 2, 5, 3]


def test_estimated_start_counts_rounds_of_slots() -> None:
    assert estimate_start(1, 2, 30.0, T0) == T0 + timedelta(seconds=30)
    assert estimate_start(2, 2, 30.0, T0) == T0 + timedelta(seconds=30)
    assert estimate_start(3, 2, 30.0, T0) == T0 + timedelta(seconds=60)
