"""Where to place a generation's polls, given how long generations of its kind took: a small
dynamic program over the poll times, used by the poll policy on learned durations and by the
benchmarks on the true distribution (the floor of what any placement can do).

A poll at `t` seconds after submission sees a generation that took `T <= t`; the generation
then waits `t - T` to be noticed (its detection delay). A poll is only sent while the job is
unfinished at the previous poll, so a schedule `t_1 < t_2 < ...` costs a job of `T` seconds
`1 + #{j : t_j < T}` polls. The hub budget (1 + ceil(T / step) polls for T seconds) holds for
every T exactly when the j-th poll is never before `step * (j - 1) + margin`, a constraint of
the program. Objectives are additive over the polls, so one pass of dynamic programming over
candidate times finds the exact optimum of `loss + price * polls` (the candidates: just at the
known durations, where a poll catches the most for the least, and the budget's boundaries):

- `loss="mean"`: the mean detection delay;
- `loss=w` (seconds): the share of jobs noticed later than `w` (for percentile floors);
- `loss=[(w1, a1), (w2, a2), ...]`: a weighted sum of such shares (percentiles together).

Weak duality turns the priced optimum into a bound: for any schedule with at most `P` polls per
job on average, share later than `w` >= max over price of (optimum(price) - price * P).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Loss = str | float | Sequence[tuple[float, float]]  # "mean"; a delay w; or (w, weight) pairs


@dataclass(frozen=True, slots=True)
class Placement:
    """A schedule and what it costs on the distribution it was placed for."""

    times: tuple[float, ...]
    polls: float  # expected polls per job
    loss: float  # expected loss (mean delay, or share later than w)
    value: float  # loss + price * polls


def place(
    durations: Sequence[float],
    weights: Sequence[float] | None = None,
    *,
    price: float,
    loss: Loss = "mean",
    step: float = 3.0,
    margin: float = 0.2,
    max_polls: int = 32,
    grid: float = 0.0,
) -> Placement:
    """The schedule minimising `loss + price * polls` on this distribution (see the module doc).

    Every duration is caught by the last poll. `grid` > 0 adds candidate times every `grid`
    seconds (needed for a threshold loss, whose best polls sit `w` after a duration, too)."""
    d = np.asarray(sorted(durations), dtype=float)
    if d.size == 0:
        raise ValueError("no durations")
    w = np.full(d.size, 1.0 / d.size) if weights is None else np.asarray(weights, dtype=float)
    if weights is not None:
        order = np.argsort(np.asarray(durations, dtype=float), kind="stable")
        w = w[order] / w.sum()
    last = float(d[-1])
    cand = set(d.tolist())
    cand.update(step * j + margin for j in range(max_polls) if step * j + margin < last)
    if grid > 0:
        cand.update(np.arange(grid, last, grid).tolist())
    thresholds: list[tuple[float, float]] = []
    if isinstance(loss, int | float):
        thresholds = [(float(loss), 1.0)]
    elif not isinstance(loss, str):
        thresholds = [(float(x), float(y)) for x, y in loss]
    for delay, _ in thresholds:
        cand.update(x for x in (d + delay).tolist() if x < last)
    times = np.asarray(sorted(t for t in cand if 0 < t <= last), dtype=float)
    c = np.concatenate(([0.0], times))  # index 0: the submission (no poll)
    cum_w = np.concatenate(([0.0], np.cumsum(w)))
    cum_s = np.concatenate(([0.0], np.cumsum(w * d)))

    def mass(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(cum_w[np.searchsorted(d, x, side="right")], dtype=float)

    done = mass(c)  # share seen by a poll at each candidate
    survive = 1.0 - done  # the next poll is sent for these
    a, b = np.meshgrid(np.arange(c.size), np.arange(c.size), indexing="ij")
    if loss == "mean":
        idx = np.searchsorted(d, c, side="right")
        sw, ss = cum_w[idx], cum_s[idx]
        cost = (sw[b] - sw[a]) * c[b] - (ss[b] - ss[a])
    else:
        cost = np.zeros((c.size, c.size))
        for delay, weight in thresholds:
            late = mass(c - delay)  # a poll at c[b] is late for durations <= c[b] - delay
            cost = cost + weight * np.maximum(0.0, late[b] - done[a])
    step_cost = np.where(b > a, cost + price * survive[a], np.inf)
    value = np.full(c.size, np.inf)
    value[0] = 0.0
    back: list[NDArray[np.intp]] = []
    best, best_at = math.inf, (0, 0)
    for j in range(1, max_polls + 1):
        total = value[:, None] + step_cost
        prev = np.argmin(total, axis=0)
        value = total[prev, np.arange(c.size)]
        value[c < step * (j - 1) + margin] = np.inf  # the budget: the j-th poll not before this
        value[0] = np.inf
        back.append(prev)
        if value[-1] < best:
            best, best_at = float(value[-1]), (j, c.size - 1)
        if not np.isfinite(value).any():
            break
    if not math.isfinite(best):
        raise ValueError("no schedule fits the budget")
    j, at = best_at
    chosen: list[int] = []
    while j > 0:
        chosen.append(at)
        at = int(back[j - 1][at])
        j -= 1
    chosen.reverse()
    polls = float(sum(survive[p] for p in [0, *chosen[:-1]]))
    return Placement(tuple(float(c[i]) for i in chosen), polls, best - price * polls, best)


def place_within(
    durations: Sequence[float],
    polls: float,
    *,
    loss: Loss = "mean",
    step: float = 3.0,
    margin: float = 0.2,
    rounds: int = 18,
) -> Placement:
    """The best schedule spending at most `polls` per job on average (bisection on the price)."""
    low, high = 0.0, 64.0
    best = place(durations, price=high, loss=loss, step=step, margin=margin)
    if best.polls > polls:
        return best  # fewer is impossible: one poll per job, then the budget
    for _ in range(rounds):
        mid = (low + high) / 2
        found = place(durations, price=mid, loss=loss, step=step, margin=margin)
        if found.polls <= polls:
            best, high = found, mid
        else:
            low = mid
    return best
