"""When to poll a generation next, and how long to back off after errors: pure decisions.

No I/O and no clock of its own: the engine's steps pass in how old a generation is and how
often it was polled, and tell the policy how long finished generations took.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.hub import Generation
from bot.jobs import Job
from bot.timings import Timings


@dataclass(slots=True)
class PollPolicy:
    """When to poll a generation next: few polls, each as close after the finish as they can be.

    The hub budget is at most one poll per `step` seconds of generation, plus one: the k-th poll
    of a job is never sent before `step * (k - 1) + margin` seconds, so a generation of T seconds
    gets at most 1 + ceil(T / step) polls, whatever happens.

    Within that budget the policy learns recent generation times per model, tier and count
    (the hub's own timestamps, so the estimate is not biased by when we looked). With history it
    skips the start (the polls saved there are spent later), polls first just before the
    `low_quantile` of recent durations, then at an even gap chosen so that the budget lasts until
    `horizon` times the `high_quantile`; past that, as often as the budget allows. Without history: after
    `first` seconds, then every `step` seconds.
    """

    first: float = 1.0
    step: float = 3.0
    margin: float = 0.2
    min_gap: float = 0.5
    low_quantile: float = 0.05
    high_quantile: float = 1.0  # the slowest of the recent ones...
    horizon: float = 1.1  # ...and a little more, for one slower than any of them
    window: int = 64
    min_samples: int = 5
    slow_after: float = 120.0
    slow_step: float = 10.0
    backoff: float = 1.0  # the n-th error in a row waits backoff * 2**n seconds...
    backoff_max: float = 60.0  # ...at most this long
    durations: dict[str, deque[float]] = field(default_factory=dict)
    _bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

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
            self._bounds.pop(key, None)

    def _range(self, key: str) -> tuple[float, float] | None:
        """(low, high) quantiles of recent durations, or None without enough history."""
        bounds = self._bounds.get(key)
        if bounds is None:
            recent = self.durations.get(key)
            if recent is None or len(recent) < self.min_samples:
                return None
            ordered = sorted(recent)
            bounds = self._bounds[key] = (
                _quantile(ordered, self.low_quantile),
                _quantile(ordered, self.high_quantile) * self.horizon,
            )
        return bounds

    def next_delay(self, key: str, elapsed: float, attempts: int) -> float:
        """Seconds until the next poll of a job `elapsed` seconds old that was polled `attempts` times."""
        earliest = self.step * attempts + self.margin  # the poll budget
        if elapsed >= self.slow_after:
            return max(self.slow_step, earliest - elapsed)
        bounds = self._range(key)
        if bounds is None:
            target = max(self.first, earliest)
        else:
            low, high = bounds
            if elapsed < low:
                target = low
            else:
                # Spend the polls saved before `low` evenly between `low` and `high`.
                gap = self.step * (high - low) / high if high > 0 else self.step
                target = elapsed + min(self.step, max(self.min_gap, gap))
            target = max(target, earliest)
        return max(0.05, target - elapsed)

    def error_delay(self, errors: int) -> float:
        """Seconds to wait after the `errors`-th error in a row."""
        return float(min(self.backoff_max, self.backoff * 2.0 ** min(errors, 16)))


def _quantile(ordered: Sequence[float], q: float) -> float:
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


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
