"""Poll placement on a distribution of durations: the dynamic program finds the exact optimum
under the hub budget (checked against brute force over every schedule), and its bound is sound."""

from __future__ import annotations

import bisect
import itertools
import math
import random

import pytest

from bot.engine.placement import place

STEP, MARGIN = 3.0, 0.2


def cost(times: tuple[float, ...], durations: list[float], price: float, loss: float | str) -> float:
    """The objective of one schedule, counted job by job (the program's own arithmetic aside)."""
    total = 0.0
    for d in durations:
        i = bisect.bisect_left(times, d)
        assert i < len(times), "every duration is caught"
        delay = times[i] - d
        late = delay if loss == "mean" else float(delay > float(loss))
        total += late + price * (i + 1)
    return total / len(durations)


def within_budget(times: tuple[float, ...]) -> bool:
    return all(t >= STEP * j + MARGIN - 1e-9 for j, t in enumerate(times))


@pytest.mark.parametrize(("seed", "loss"), [(0, "mean"), (1, "mean"), (2, 0.5), (3, 1.0)])
def test_the_program_finds_the_best_schedule_of_all(seed: int, loss: float | str) -> None:
    rng = random.Random(seed)
    durations = sorted(rng.uniform(2.0, 11.0) for _ in range(7))
    price = 0.3 if loss == "mean" else 0.02
    found = place(durations, price=price, loss=loss, step=STEP, margin=MARGIN)
    assert within_budget(found.times) and found.times[-1] >= durations[-1]
    assert found.value == pytest.approx(cost(found.times, durations, price, loss))
    # Brute force: every increasing schedule over the same candidates that catches every duration.
    shifted = [d + float(loss) for d in durations] if loss != "mean" else []
    grid = sorted({*durations, *shifted, *(STEP * j + MARGIN for j in range(4))})
    grid = [t for t in grid if t <= durations[-1]]
    best = math.inf
    for k in range(1, 6):
        for times in itertools.combinations(grid, k):
            if times[-1] >= durations[-1] and within_budget(times):
                best = min(best, cost(times, durations, price, loss))
    assert found.value == pytest.approx(best)


def test_a_cheaper_poll_buys_a_shorter_delay_and_never_breaks_the_budget() -> None:
    rng = random.Random(5)
    durations = [rng.lognormvariate(math.log(12.0), 0.15) for _ in range(64)]
    dear = place(durations, price=2.0, step=STEP, margin=MARGIN)
    cheap = place(durations, price=0.05, step=STEP, margin=MARGIN)
    assert cheap.polls > dear.polls and cheap.loss < dear.loss
    assert within_budget(cheap.times) and within_budget(dear.times)
