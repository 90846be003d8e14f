"""When to poll a generation next, and how long to back off after errors: pure decisions.

No I/O and no clock of its own: the engine's steps pass in how old a generation is and how
often it was polled, and tell the policy how long finished generations took.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime

from bot.engine.placement import place
from bot.hub import Generation
from bot.jobs import Job
from bot.timings import Timings

_KERNEL = (-1.5, -0.75, 0.0, 0.75, 1.5)  # standard normal points of the smoothing kernel


@dataclass(slots=True)
class PollPolicy:
    """When to poll a generation next: few polls, each as close after the finish as they can be.

    The hub budget is at most one poll per `step` seconds of generation, plus one: the k-th poll
    of a job is never sent before `step * (k - 1) + margin` seconds, so a generation of T seconds
    gets at most 1 + ceil(T / step) polls, whatever happens.

    Within that budget the policy learns recent generation times per model, tier and count (the
    hub's own timestamps, so the estimate is not biased by when we looked), and places the polls
    on that learned distribution with `bot.engine.placement.place`: the schedule that minimises
    the share of jobs noticed later than each of `objective`'s delays (weighted), plus `price`
    per poll, exactly, under the budget. The distribution is the recent durations themselves
    (quantiles, not a mean), each widened by a small log-normal kernel so that one a little
    beyond those seen is expected too, taken as `points` quantiles (which bounds the program's
    work). The schedule is placed again after every `replace_every` new durations of its kind.
    Without history: after `first` seconds, then every `step` seconds.

    Held back: when `crowd` jobs of a kind are past its schedule at once (or, without history,
    older than `hold_back_after`), the hub is most likely holding them up (a stall, a backlog).
    Their polls then go `overdue_step` apart: they would find nothing, and the budget they save
    is spent when the hub lets go. A few late jobs are only slow ones (a rare kind, a small
    server): they keep the budget's pace.
    A held-back job that finishes wakes its kind (`finished`): for `release_hold` seconds after
    each such finish, every held-back job of the kind is polled at once, then every `wake_gap`
    seconds, as far as its budget allows (`wake_delay`, `next_delay`).
    """

    first: float = 1.0
    step: float = 3.0
    margin: float = 0.2
    objective: tuple[tuple[float, float], ...] = ((0.5, 1.0), (1.4, 8.0))  # (delay, weight) pairs
    price: float = 0.001  # of one poll, in the objective's units
    smoothing: float = 1.5  # kernel width, times Silverman's rule, on log durations
    points: int = 96  # the smoothed distribution as this many equally likely durations
    window: int = 150
    min_samples: int = 5
    replace_every: int = 24
    slow_after: float = 120.0
    slow_step: float = 10.0
    hold_back_after: float = 6.0
    overdue_step: float = 12.0
    wake_gap: float = 2.2
    release_hold: float = 6.0
    crowd: int = 16  # benchmarks.policy_sim: at 8, slow jobs alone made crowds (uniform p99 up to 6.3 s)
    backoff: float = 1.0  # the n-th error in a row waits backoff * 2**n seconds...
    backoff_max: float = 60.0  # ...at most this long
    durations: dict[str, deque[float]] = field(default_factory=dict)
    _schedules: dict[str, tuple[float, ...]] = field(default_factory=dict)
    _fresh: dict[str, int] = field(default_factory=dict)  # durations seen since the last placement
    _replaced: set[str] = field(default_factory=set)  # kinds placed again since `take_replaced`
    # Woken kinds: until when (the caller's clock), and the age past which a job was held back.
    _releases: dict[str, tuple[float, float]] = field(default_factory=dict)
    _woken: set[str] = field(default_factory=set)  # kinds woken since `take_woken`
    # Jobs seen past their kind's hold-back age, and when (the caller's clock), oldest first.
    _overdue: dict[str, OrderedDict[int, float]] = field(default_factory=dict)

    @classmethod
    def from_timings(cls, timings: Timings) -> PollPolicy:
        return cls(
            first=timings.poll_first,
            step=timings.poll_step,
            slow_after=timings.poll_slow_after,
            slow_step=timings.poll_slow_step,
            backoff=timings.error_backoff,
            backoff_max=timings.error_backoff_max,
        )

    def observe(self, key: str, seconds: float) -> None:
        """A generation of this kind took `seconds` from submission to its images."""
        if seconds > 0:
            self.durations.setdefault(key, deque(maxlen=self.window)).append(seconds)
            self._fresh[key] = self._fresh.get(key, 0) + 1

    def schedule(self, key: str) -> tuple[float, ...] | None:
        """The planned poll times (seconds since submission) for this kind, or None without
        enough history. Placed again once `replace_every` new durations came in."""
        recent = self.durations.get(key)
        if recent is None or len(recent) < self.min_samples:
            return None
        planned = self._schedules.get(key)
        if planned is None or self._fresh.get(key, 0) >= self.replace_every:
            known = [d for d in recent if d < self.slow_after]
            if not known:
                return None
            smoothed = self._smoothed(known)
            planned = place(
                smoothed,
                price=self.price,
                loss=self.objective,
                step=self.step,
                margin=self.margin,
                max_polls=math.ceil(smoothed[-1] / self.step) + 2,  # enough for a poll every step
            ).times
            if key in self._schedules:
                self._replaced.add(key)
            self._schedules[key] = planned
            self._fresh[key] = 0
        return planned

    def held_back_after(self, key: str) -> float:
        """The age past which a job of this kind is held back: its schedule's last poll."""
        planned = self.schedule(key)
        return planned[-1] if planned else self.hold_back_after

    def finished(self, key: str, seconds: float, now: float) -> None:
        """A generation of this kind finished after `seconds`, at `now` (the caller's clock, as in
        `next_delay`). Held back that long, it wakes the kind, or keeps it woken."""
        release = self._active_release(key, now)
        end = release[1] if release is not None else self.held_back_after(key)
        if seconds <= end:
            return
        if release is None:
            self._woken.add(key)
        self._releases[key] = (now + self.release_hold, end)

    def take_woken(self) -> set[str]:
        """The kinds woken since the last call (their held-back jobs are due at once)."""
        woken, self._woken = self._woken, set()
        return woken

    def wake_delay(self, key: str, elapsed: float, attempts: int, now: float) -> float | None:
        """Seconds until the next poll of a held-back job of a woken kind: at once, as far as the
        budget allows. None: the kind is not woken, or the job is not held back."""
        if not self.let_go(key, elapsed, now):
            return None
        return max(0.05, self.step * attempts + self.margin - elapsed)

    def let_go(self, key: str, elapsed: float, now: float | None) -> bool:
        """True for a held-back job of a woken kind (its polls may fill the engine's extra places)."""
        release = self._active_release(key, now)
        return release is not None and elapsed > release[1]

    def releasing(self, now: float) -> bool:
        """Some kind is woken."""
        return any(until >= now for until, _ in self._releases.values())

    def _active_release(self, key: str, now: float | None) -> tuple[float, float] | None:
        release = self._releases.get(key)
        if release is None or now is None:
            return None
        if release[0] < now:
            del self._releases[key]
            return None
        return release

    def take_replaced(self) -> set[str]:
        """The kinds whose schedule was placed again since the last call. A job's next poll was
        chosen on the schedule of its last poll: where the new one polls sooner, it should too
        (what finished meanwhile moved the plan; measured: 2,000 generations whose finishes were
        learned as they came had next polls up to 11 s away, chosen on the first few)."""
        replaced, self._replaced = self._replaced, set()
        return replaced

    def _smoothed(self, known: list[float]) -> list[float]:
        """The recent durations as a smooth distribution (a log-normal kernel around each, so a
        duration a little beyond the ones seen is expected too), as `points` quantiles."""
        logs = [math.log(d) for d in known]
        spread = statistics.pstdev(logs) if len(logs) > 1 else 0.0
        width = self.smoothing * 1.06 * spread * len(logs) ** -0.2
        spread_out = sorted(d * math.exp(width * z) for d in known for z in _KERNEL)
        n = len(spread_out)
        return [spread_out[min(n - 1, int((i + 0.5) * n / self.points))] for i in range(self.points)]

    def next_delay(
        self, key: str, elapsed: float, attempts: int, now: float | None = None, job: int | None = None
    ) -> float:
        """Seconds until the next poll of a job `elapsed` seconds old that was polled `attempts` times
        (`now`: the caller's clock, which tells whether its kind is woken; `job`: which one, which
        tells whether a crowd of its kind is overdue; without both, an overdue job is held back)."""
        earliest = self.step * attempts + self.margin  # the poll budget
        if elapsed >= self.slow_after:
            return max(self.slow_step, earliest - elapsed)
        planned = self.schedule(key)
        # The next planned poll (a late step skips the ones it missed); past the plan, late.
        at = bisect.bisect_right(planned, elapsed + 0.01) if planned else 0
        late = elapsed > self.hold_back_after if planned is None else at >= len(planned)
        crowded = late and self._crowded(key, job, now)  # every late job counts, let go or not
        if self.let_go(key, elapsed, now):
            target = elapsed + self.wake_gap  # held back, and its kind is being let go
        elif crowded:
            target = elapsed + self.overdue_step  # held back
        elif planned is None:
            target = max(self.first, earliest)
        else:
            target = earliest if late else planned[at]  # a few late jobs: the budget's pace
        return max(0.05, max(target, earliest) - elapsed)

    def _crowded(self, key: str, job: int | None, now: float | None) -> bool:
        """Count `job` as overdue at `now`: whether `crowd` jobs of its kind were seen overdue in
        the last `overdue_step + step` seconds (long enough for a held-back job to be seen again)."""
        if job is None or now is None:
            return True
        seen = self._overdue.setdefault(key, OrderedDict())
        seen[job] = now
        seen.move_to_end(job)
        horizon = now - self.overdue_step - self.step
        while seen and next(iter(seen.values())) < horizon:
            seen.popitem(last=False)
        return len(seen) >= self.crowd

    def error_delay(self, errors: int) -> float:
        """Seconds to wait after the `errors`-th error in a row."""
        return float(min(self.backoff_max, self.backoff * 2.0 ** min(errors, 16)))


def policy_key(job: Job) -> str:
    """Generations of one model, tier and count take alike: the policy learns them together."""
    return f"{job.params.model}:{job.params.tier}:{job.params.n}"


def generation_seconds(gen: Generation) -> float | None:
    """How long the hub took, by its own clock: first image's time minus the generation's."""
    times = [image.created_at for image in gen.images if image.created_at]
    if not gen.created_at or not times:
        return None
    try:
        started = datetime.fromisoformat(gen.created_at)
        finished = min(datetime.fromisoformat(t) for t in times)
    except ValueError:
        return None
    if started.tzinfo is None or finished.tzinfo is None:
        return None
    seconds = (finished - started).total_seconds()
    return seconds if seconds > 0 else None
