"""The poll policy alone, in simulated time: detection and polls for a setting, over many seeds.

`benchmarks.lag` measures the real bot, one run in about two minutes, and its figures move between
runs (the schedule is placed on the first few durations of each kind). This replays the same mix
against `PollPolicy` only, as the engine drives it (a poll when due; on a finish, `observe` and
`finished`; held-back jobs of a woken kind due at once; jobs moved sooner when their kind's
schedule is placed again), so a setting can be compared on dozens of seeds in seconds. No
network, no database, no engine delays: detection only (finish to the poll that sees it).

    .venv/bin/python -m benchmarks.policy_sim [--seeds 24] [--crowd 1,8,16,1000000000]
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
from dataclasses import dataclass

from benchmarks.common import TIER_MEDIAN
from bot.engine.policy import PollPolicy


@dataclass
class _Job:
    submitted: float
    seconds: float
    kind: str
    polls: int = 0
    due: float = 0.0
    version: int = 0
    detection: float | None = None


def simulate(
    seed: int, policy: PollPolicy, *, uniform: bool, warmup: int = 60, jobs: int = 300, rate: float = 12.0
) -> tuple[float, float, float]:
    """Detection p50 and p99 (s) and polls per job over the naive 1 s poller's, for the measured
    jobs of one run of `benchmarks.lag`'s mix (the warm-up's results learned first)."""
    rng = random.Random(seed)
    every: list[_Job] = []
    events: list[tuple[float, int, int, int]] = []  # (due, tie, job, version)
    for i in range(warmup + jobs):
        tier = rng.choice(list(TIER_MEDIAN))
        seconds = min(20.0, max(5.0, TIER_MEDIAN[tier] * math.exp(rng.gauss(0.0, 0.15))))
        if uniform:
            seconds = rng.uniform(5.0, 20.0)
        submitted = i / rate + (30.0 if i >= warmup else 0.0)  # the warm-up's results come first
        every.append(_Job(submitted, seconds, f"gpt-image-2:{tier}:1", version=-1))
        events.append((submitted, len(events), i, -1))
    heapq.heapify(events)
    live: set[int] = set()
    tie = len(events)

    def due(i: int, at: float) -> None:
        nonlocal tie
        job = every[i]
        job.due, job.version, tie = at, job.version + 1, tie + 1
        heapq.heappush(events, (at, tie, i, job.version))

    while events:
        now, _, i, version = heapq.heappop(events)
        job = every[i]
        if version != job.version:
            continue  # moved sooner meanwhile
        elapsed = now - job.submitted
        if version == -1:  # submitted
            live.add(i)
            due(i, now + policy.next_delay(job.kind, 0.0, 0))
            continue
        job.polls += 1
        if elapsed < job.seconds:
            due(i, now + policy.next_delay(job.kind, elapsed, job.polls, now, job=i))
            continue
        job.detection = elapsed - job.seconds
        live.discard(i)
        policy.observe(job.kind, job.seconds)
        policy.finished(job.kind, job.seconds, now)
        woken, replaced = policy.take_woken(), policy.take_replaced()
        for other in live:  # as `Engine._follow_new_schedules`
            kept = every[other]
            if kept.kind not in woken and kept.kind not in replaced:
                continue
            age = now - kept.submitted
            delay = policy.wake_delay(kept.kind, age, kept.polls, now) if kept.kind in woken else None
            if delay is not None:
                sooner = now + delay
            else:
                sooner = now + policy.next_delay(kept.kind, age, kept.polls)
                sooner = sooner if sooner < kept.due - policy.step else kept.due
            if sooner < kept.due:
                due(other, sooner)
    measured = every[warmup:]
    detections = sorted(j.detection for j in measured if j.detection is not None)
    polls = statistics.mean(j.polls for j in measured)
    naive = statistics.mean(math.ceil(j.seconds) for j in measured)
    return detections[len(detections) // 2], detections[int(len(detections) * 0.99)], polls / naive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--crowd", default="1,8,16,1000000000", help="PollPolicy.crowd values")
    args = parser.parse_args()
    print(f"{'mix':10} {'crowd':>10}  detection p50  p99 mean (range)     polls vs naive (range)")
    for uniform in (False, True):
        for crowd in (int(c) for c in args.crowd.split(",")):
            runs = [simulate(s, PollPolicy(crowd=crowd), uniform=uniform) for s in range(args.seeds)]
            p50 = statistics.mean(r[0] for r in runs)
            p99 = [r[1] for r in runs]
            ratio = [r[2] for r in runs]
            print(
                f"{'uniform' if uniform else 'realistic':10} {crowd:>10}  {p50:.2f} s         "
                f"{statistics.mean(p99):.2f} s ({min(p99):.2f}-{max(p99):.2f})   "
                f"{statistics.mean(ratio):.3f}x ({min(ratio):.2f}-{max(ratio):.2f})"
            )


if __name__ == "__main__":
    main()
