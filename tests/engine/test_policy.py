"""The poll policy alone: pure decisions, no clock, no I/O, no event loop.

Its promise to the hub is a budget (the k-th poll of a job never before `step * (k - 1) +
margin` seconds, so a generation of T seconds costs at most 1 + ceil(T / step) polls); its
promise to members is that, with history, polls gather where generations of that kind finish.
"""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from bot.engine.policy import PollPolicy, generation_seconds
from bot.hub import Generation

KEY = "gpt-image-2:1K:1"


def polls_until(policy: PollPolicy, key: str, finish: float) -> list[float]:
    """When a job finishing at `finish` seconds is polled, the last poll being the one that sees it."""
    at, attempts, times = 0.0, 0, []
    while True:
        at += policy.next_delay(key, at, attempts)
        times.append(at)
        attempts += 1
        if at >= finish:
            return times


def test_without_history_first_after_first_then_every_step_then_held_back() -> None:
    policy = PollPolicy(first=1.0, step=3.0, margin=0.2, hold_back_after=6.0, overdue_step=12.0)
    times = polls_until(policy, KEY, 40.0)
    assert times[:3] == pytest.approx([1.0, 3.2, 6.2])  # then every budget step, up to 6 s
    assert [b - a for a, b in itertools.pairwise(times[2:])] == pytest.approx([12.0] * (len(times) - 3))


def test_held_back_jobs_save_their_budget_and_spend_it_when_their_kind_is_let_go() -> None:
    """Past its schedule a job is held up at the hub, most likely: its polls go `overdue_step` apart.
    When one held back finishes, the hub is letting them go: the others are polled at once, then
    every `wake_gap` seconds, as far as the budget they saved allows, then every budget step."""
    policy = PollPolicy(
        first=1.0,
        step=3.0,
        margin=0.2,
        min_samples=5,
        overdue_step=12.0,
        wake_gap=2.2,
        release_hold=6.0,
        slow_after=1000.0,
    )
    for _ in range(10):
        policy.observe(KEY, 3.0)
    end = policy.held_back_after(KEY)
    assert 3.0 <= end < 6.0  # the schedule's last poll
    # A job submitted at clock 1000: held back past the schedule, 12 s apart.
    at, attempts, times = 0.0, 0, []
    while at < 40.0:
        at += policy.next_delay(KEY, at, attempts, 1000.0 + at)
        times.append(at)
        attempts += 1
    past = [t for t in times if t > end]
    assert [b - a for a, b in itertools.pairwise(past)] == pytest.approx([12.0] * (len(past) - 1))
    assert policy.take_woken() == set()

    policy.finished(KEY, end, 1000.0 + at)  # within the schedule: wakes nothing
    assert policy.take_woken() == set()
    assert policy.wake_delay(KEY, at, attempts, 1000.0 + at) is None
    policy.finished(KEY, at - 1.0, 1000.0 + at)  # another held back finished: the kind wakes, once
    assert policy.take_woken() == {KEY} and policy.take_woken() == set()
    assert policy.let_go(KEY, at, 1000.0 + at) and not policy.let_go(KEY, end - 0.5, 1000.0 + at)
    assert policy.releasing(1000.0 + at)
    assert policy.wake_delay(KEY, at, attempts, 1000.0 + at) == pytest.approx(0.05)  # at once
    assert policy.wake_delay(KEY, 2.0, 1, 1000.0 + at) is None  # not held back: its own schedule

    # Woken: polled every wake_gap while the saved budget lasts (finishes keep it woken), then
    # every step; never before the budget allows (the k-th poll not before 3 (k - 1) + 0.2 s).
    gaps = []
    for _ in range(60):
        policy.finished(KEY, at - 1.0, 1000.0 + at)
        delay = policy.next_delay(KEY, at, attempts, 1000.0 + at)
        gaps.append(delay)
        at += delay
        attempts += 1
        assert at >= policy.step * (attempts - 1) + policy.margin - 1e-9
    assert gaps[0] == pytest.approx(2.2) and gaps[-1] == pytest.approx(3.0, abs=0.01)
    assert sum(1 for g in gaps if g == pytest.approx(2.2)) >= 5

    # No finish for `release_hold` seconds: the kind sleeps again, and its jobs are held back.
    quiet = 1000.0 + at + 6.5
    assert not policy.releasing(quiet) and policy.wake_delay(KEY, at, attempts, quiet) is None
    assert policy.next_delay(KEY, at, attempts, quiet) == pytest.approx(12.0)


def test_a_few_late_jobs_keep_the_budgets_pace_a_crowd_of_them_is_held_back() -> None:
    """A lone late job is a slow one (a rare kind, a small server): polled every budget step, as
    without the hold-back. Only `crowd` jobs of a kind late at once mean the hub holds them up."""
    for history in (0, 10):
        policy = PollPolicy(first=1.0, step=3.0, margin=0.2, crowd=3, overdue_step=12.0)
        for _ in range(history):
            policy.observe(KEY, 3.0)
        assert policy.held_back_after(KEY) < 20.0  # the jobs below are late
        # Two jobs late at clock 1000: each keeps polling every step.
        for job in (1, 2):
            assert policy.next_delay(KEY, 20.0, 7, 1000.0, job=job) == pytest.approx(1.2)
            assert policy.next_delay(KEY, 21.2, 8, 1003.0, job=job) == pytest.approx(3.0)
        # A third: a crowd, and all three are held back (each seen again within 15 s).
        assert policy.next_delay(KEY, 21.2, 8, 1003.0, job=3) == pytest.approx(12.0)
        assert policy.next_delay(KEY, 24.2, 9, 1006.0, job=1) == pytest.approx(12.0)
        # Jobs not late yet follow their schedule, crowd or not.
        planned = policy.schedule(KEY)
        first = 1.0 if planned is None else max(planned[0], 0.2)  # after `first`, or the plan's first
        assert policy.next_delay(KEY, 0.0, 0, 1006.0, job=9) == pytest.approx(first)
        # Seen no more for 15 s (finished, or gone): the crowd has left, a late job keeps pace.
        assert policy.next_delay(KEY, 40.0, 14, 1022.0, job=4) == pytest.approx(2.2)


def test_jobs_let_go_still_count_towards_their_crowd() -> None:
    """A release that ends with the jobs still late (the hub holds them again) finds them still a
    crowd: held back at once, not polled at the budget's pace until they are counted again."""
    policy = PollPolicy(step=3.0, margin=0.2, crowd=3, overdue_step=12.0, wake_gap=2.2, release_hold=6.0)
    for _ in range(10):
        policy.observe(KEY, 3.0)
    ages = {job: 30.0 for job in (1, 2, 3)}
    polls = {job: 4 for job in ages}
    now = 1000.0
    delays = [policy.next_delay(KEY, ages[job], polls[job], now, job=job) for job in ages]
    assert delays[-1] == pytest.approx(12.0)  # the third makes a crowd
    # 20 s of release (a held-back job finishes every 4 s): the three are polled every 2.2 s.
    while now < 1020.0:
        policy.finished(KEY, 28.0, now)
        for job in ages:
            assert policy.next_delay(KEY, ages[job], polls[job], now, job=job) == pytest.approx(2.2)
            polls[job] += 1
            ages[job] += 2.2
        now += 2.2
    # The release ends (no finish for 6 s); the three are still late, and still a crowd.
    now += 6.5
    assert not policy.releasing(now)
    assert policy.next_delay(KEY, ages[1] + 6.5, polls[1], now, job=1) == pytest.approx(12.0)


@pytest.mark.parametrize("seed", range(5))
def test_the_budget_holds_through_wakes(seed: int) -> None:
    rng = random.Random(seed)
    policy = PollPolicy(min_samples=5)
    for _ in range(20):
        policy.observe(KEY, rng.uniform(2.0, 20.0))
    for _ in range(100):
        finish, at, attempts = rng.uniform(0.1, 200.0), 0.0, 0
        while at < finish:
            if rng.random() < 0.3:  # some other job of the kind finishes, held back or not
                policy.finished(KEY, rng.uniform(1.0, 80.0), at)
                policy.take_woken()
            wake = policy.wake_delay(KEY, at, attempts, at) if rng.random() < 0.3 else None
            at += wake if wake is not None else policy.next_delay(KEY, at, attempts, at)
            assert at >= policy.step * attempts + policy.margin - 1e-9 or (attempts == 0 and at >= 0.05)
            attempts += 1


@pytest.mark.parametrize("seed", range(5))
def test_the_budget_holds_for_any_history_and_any_duration(seed: int) -> None:
    rng = random.Random(seed)
    policy = PollPolicy()
    for _ in range(50):  # a history of any shape: very short, very long, mixed
        policy.observe(KEY, rng.choice([0.3, 2.0, 8.0, 30.0, 200.0]) * rng.uniform(0.5, 1.5))
    for _ in range(200):
        finish = rng.uniform(0.1, 300.0)
        times = polls_until(policy, KEY, finish)
        for k, at in enumerate(times):  # the k-th poll (from 0) never before step * k + margin
            assert at >= policy.step * k + policy.margin - 1e-9 or (k == 0 and at >= 0.05)
        if finish < policy.slow_after:
            assert len(times) <= 1 + math.ceil(finish / policy.step) + 1  # the poll that sees it


def test_with_history_the_polls_gather_where_generations_finish() -> None:
    rng = random.Random(7)
    durations = [rng.lognormvariate(math.log(12.0), 0.15) for _ in range(64)]
    learned, naive = PollPolicy(), PollPolicy()
    for seconds in durations:
        learned.observe(KEY, seconds)

    def mean_lag(policy: PollPolicy) -> tuple[float, float]:
        lags, polls = [], []
        for finish in (rng.lognormvariate(math.log(12.0), 0.15) for _ in range(500)):
            times = polls_until(policy, KEY, finish)
            lags.append(times[-1] - finish)
            polls.append(len(times))
        return sum(lags) / len(lags), sum(polls) / len(polls)

    learned_lag, learned_polls = mean_lag(learned)
    naive_lag, naive_polls = mean_lag(naive)
    # Fewer polls wasted before the earliest finish, spent around the finishes instead.
    assert learned_lag < naive_lag * 0.7, (learned_lag, naive_lag)
    assert learned_polls <= naive_polls, (learned_polls, naive_polls)


def test_history_is_per_kind_and_needs_a_few_samples() -> None:
    policy = PollPolicy(min_samples=5)
    for _ in range(4):
        policy.observe(KEY, 20.0)
    assert policy.next_delay(KEY, 0.0, 0) == pytest.approx(policy.first)  # not enough yet
    policy.observe(KEY, 20.0)
    assert policy.next_delay(KEY, 0.0, 0) == pytest.approx(20.0)  # first poll at the earliest finish
    assert policy.next_delay("other:2K:4", 0.0, 0) == pytest.approx(policy.first)


def test_slow_generations_are_polled_every_slow_step() -> None:
    policy = PollPolicy(slow_after=120.0, slow_step=10.0)
    assert policy.next_delay(KEY, 130.0, 44) == pytest.approx(10.0)


def test_errors_back_off_exponentially_to_a_cap() -> None:
    policy = PollPolicy(backoff=1.0, backoff_max=60.0)
    assert [policy.error_delay(n) for n in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert policy.error_delay(10_000) == 60.0


def test_generation_seconds_is_the_hubs_own_clock() -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def gen(created: str | None, images: list[str | None]) -> Generation:
        return Generation.model_validate(
            {
                "id": "g",
                "status": "completed",
                "created_at": created,
                "images": [
                    {"id": str(i), "url": f"https://h/{i}.png", "created_at": t} for i, t in enumerate(images)
                ],
            }
        )

    later = (start + timedelta(seconds=9.5)).isoformat()
    earlier = (start + timedelta(seconds=8.0)).isoformat()
    assert generation_seconds(gen(start.isoformat(), [later, earlier])) == pytest.approx(8.0)
    assert generation_seconds(gen(None, [later])) is None
    assert generation_seconds(gen(start.isoformat(), [])) is None
    assert generation_seconds(gen("not a time", [later])) is None
    assert generation_seconds(gen(start.replace(tzinfo=None).isoformat(), [later])) is None  # naive
