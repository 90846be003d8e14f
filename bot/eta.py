"""When a job should be done: learned generation times per model and tier, a high quantile of them.

Pure: no I/O and no clock of its own (callers pass `now`). It starts from the newest posted jobs in
the database (`JobStore.recent_durations`, submission to posting, read once by `Services.open`), and
the engine's steps feed it how long each generation took from then on (the hub's own timestamps
when it gives them); until a kind has
`min_samples` of them, a default per tier stands in (`DEFAULT_SECONDS`). The estimate is the
`quantile` (p90) of the recent ones, so it is rarely too early. A running job is expected at its
submission time plus that; past it, a little after now (`overdue`). A queued job adds the wait
for its start. What the status message shows is remembered per job (`shown`), and a new estimate
is worth an edit only when it moved by more than `min_move` seconds and `rel_move` of the time
that was left (`moved`), so the ETA never adds edits for small changes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.jobs import Job, JobStatus

# Seconds a generation takes before anything was learned (the hub publishes no times of its own).
DEFAULT_SECONDS: dict[str, float] = {"1K": 30.0, "2K": 45.0, "4K": 75.0}
FALLBACK_SECONDS = 60.0
MAX_TRACKED = 10_000  # jobs whose shown estimate is remembered (running ones; ended ones are forgotten)


def _quantile(ordered: list[float], q: float) -> float:
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(slots=True)
class Estimator:
    """See the module docstring."""

    quantile: float = 0.9
    window: int = 50
    min_samples: int = 5
    min_move: float = 10.0
    rel_move: float = 0.2
    overdue: float = 15.0  # past the estimate: expected this long after now
    defaults: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SECONDS))
    _samples: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    _shown: dict[int, datetime] = field(default_factory=dict)

    def observe(self, model: str, tier: str, seconds: float) -> None:
        """A generation of `model` at `tier` took `seconds` from submission to its images."""
        if seconds > 0:
            self._samples.setdefault((model, tier), deque(maxlen=self.window)).append(seconds)

    def duration(self, model: str, tier: str) -> float:
        """Seconds a generation of this kind should take at most, mostly (the quantile)."""
        recent = self._samples.get((model, tier))
        if recent is None or len(recent) < self.min_samples:
            return self.defaults.get(tier, FALLBACK_SECONDS)
        return _quantile(sorted(recent), self.quantile)

    def finish(self, job: Job, now: datetime, starts_at: datetime | None = None) -> datetime | None:
        """When `job` should be done: running, from its submission; queued, from `starts_at`
        (its expected start); None for a job that is neither (or a queued one without a start)."""
        took = timedelta(seconds=self.duration(job.params.model, job.params.tier))
        if job.status is JobStatus.QUEUED:
            return None if starts_at is None else max(starts_at, now) + took
        if job.status not in (
            JobStatus.PENDING_SUBMIT,
            JobStatus.SUBMITTING,
            JobStatus.SUBMITTED,
            JobStatus.RUNNING,
        ):
            return None
        expected = (job.submitted_at or now) + took
        return max(expected, now + timedelta(seconds=self.overdue)) if expected <= now else expected

    def moved(self, job: Job, now: datetime) -> bool:
        """Whether the estimate moved enough from what the status message shows to edit it."""
        new = self.finish(job, now)
        if new is None:
            return False
        shown = self._shown.get(job.id)
        if shown is None:
            return True
        change = abs((new - shown).total_seconds())
        left = max((shown - now).total_seconds(), 0.0)
        return change > self.min_move and change > self.rel_move * left

    def shown(self, job_id: int, when: datetime | None) -> None:
        """The status message now shows `when` for the job (None: no estimate)."""
        if when is None:
            self._shown.pop(job_id, None)
            return
        if len(self._shown) >= MAX_TRACKED and job_id not in self._shown:
            self._shown.pop(next(iter(self._shown)))
        self._shown[job_id] = when

    def forget(self, job_id: int) -> None:
        self._shown.pop(job_id, None)
