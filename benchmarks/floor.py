"""The floor of the realistic lag target: what ANY poll placement can do on the true durations.

The realistic mix (benchmarks/lag.py): one tier in three each of 1K/2K/4K, durations log-normal
(sigma 0.15) around 8/12/16 s, clipped to 5-20 s. A placement may differ per tier (the bot learns
per model+tier+count), must keep the hub budget (the j-th poll never before 3(j-1) s: exactly the
1 + ceil(T/3) polls for every T) and may spend `--polls` polls per job on average over the mix
(the target: 0.3x the naive 1 s poller's, measured in the same run). Targets "at most share_i of
the jobs noticed later than w_i" (p50: 50 % later than w_50; p99: 1 % later than w_99) are all
met by no placement when, for some multipliers mu_i >= 0 and price >= 0 (weak duality),

    mean over tiers of min_schedule( sum_i mu_i * late_{w_i} + price * polls )
        - sum_i mu_i * share_i - price * P  >  0

(each inner minimum exact, by `bot.engine.placement.place` over candidate times on a quantile
discretisation of the true distribution). Bisection on w gives the floors: p50 alone, p99 alone,
and p50 given p99 <= 1.45 s; add the measured detecting poll -> posted time for the lag.

    .venv/bin/python -m benchmarks.floor [--polls 3.74] [--points 120]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from statistics import NormalDist

from bot.engine.placement import place

TIER_MEDIANS = (8.0, 12.0, 16.0)
SIGMA = 0.15
PRICES = [0.0, 0.01, 0.03, 0.1]
MULTIPLIERS = {
    1: [(1.0,)],
    2: [(a, b) for a in (0.5, 1.0, 2.0) for b in (1.0, 2.0, 4.0, 8.0, 16.0)],
}


def quantile_points(median: float, points: int) -> list[float]:
    """The clipped log-normal as `points` equally likely durations (mid-quantiles)."""
    normal = NormalDist()
    return [
        min(20.0, max(5.0, median * math.exp(SIGMA * normal.inv_cdf((i + 0.5) / points))))
        for i in range(points)
    ]


def naive_polls(points: int = 400) -> float:
    """Polls per job of a poller that sleeps 1 s between polls (ceil(T) for T seconds), on the mix."""
    tiers = [quantile_points(m, points) for m in TIER_MEDIANS]
    return sum(sum(math.ceil(t) for t in ds) / len(ds) for ds in tiers) / len(tiers)


def infeasibility(targets: list[tuple[float, float]], polls: float, tiers: list[list[float]]) -> float:
    """> 0 proves that no placement notices all but `share` of the jobs within `w` for every
    (w, share) in `targets` at once with <= `polls` per job: the best dual value found."""
    best = -math.inf
    for weights in MULTIPLIERS[len(targets)]:
        for price in PRICES:
            loss = [(w, mu) for (w, _), mu in zip(targets, weights, strict=True)]
            inner = sum(place(ds, price=price, loss=loss, margin=0.0).value for ds in tiers) / len(tiers)
            value = inner - sum(mu * share for (_, share), mu in zip(targets, weights, strict=True))
            best = max(best, value - price * polls)
    return best


Targets = Callable[[float], list[tuple[float, float]]]


def smallest(make: Targets, polls: float, tiers: list[list[float]]) -> float:
    """The smallest delay `w` (to 0.01 s) that `make(w)`'s targets are not proven impossible for."""
    low, high = 0.0, 6.0
    while high - low > 0.01:
        mid = (low + high) / 2
        if infeasibility(make(mid), polls, tiers) > 1e-9:
            low = mid
        else:
            high = mid
    return high


def floors(polls: float, points: int = 200, p99: float = 1.45) -> dict[str, float]:
    """Detection floors on the realistic mix with `polls` per job: p50 alone, p99 alone, and the
    p50 of any placement whose p99 is at most `p99` (or the p99 floor, when that is higher)."""
    tiers = [quantile_points(m, points) for m in TIER_MEDIANS]
    alone = smallest(lambda w: [(w, 0.01)], polls, tiers)
    given = max(p99, alone + 0.01)
    return {
        "polls": polls,
        "p50": smallest(lambda w: [(w, 0.5)], polls, tiers),
        "p99": alone,
        "p99_given": given,
        "p50_given_p99": smallest(lambda w: [(w, 0.5), (given, 0.01)], polls, tiers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.split("\n")[0])
    parser.add_argument("--polls", type=float, default=None, help="polls per job (default 0.3x naive)")
    parser.add_argument("--points", type=int, default=200, help="quantile points per tier")
    args = parser.parse_args()
    naive = naive_polls()
    polls = args.polls if args.polls is not None else 0.3 * naive
    found = floors(polls, args.points)
    print(f"naive 1 s poller: {naive:.2f} polls/job on the mix; allowed {polls:.2f} ({polls / naive:.2f}x)")
    print("detection floor, any placement within the budget:")
    print(f"  p50 {found['p50']:.2f} s alone, p99 {found['p99']:.2f} s alone")
    print(f"  and with p99 <= {found['p99_given']:.2f} s: p50 >= {found['p50_given_p99']:.2f} s")


if __name__ == "__main__":
    main()
