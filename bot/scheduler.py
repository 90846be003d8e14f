"""The background scheduler: every generation's life after the member's command returns.

It claims due jobs from the database with a lease (so several processes can share one database),
submits them to the hub, polls with adaptive intervals, downloads the images and hands the result
to a `Publisher` — the only thing it knows about Discord. Every decision is written to the job
row before the next side effect, so a restart resumes exactly where the last process stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from bot import metrics
from bot.hub import (
    DownloadError,
    ExpiredApiKey,
    Generation,
    HubClient,
    HubError,
    HubUnavailable,
    InsufficientCredits,
    InvalidApiKey,
    InvalidRequest,
    MissingApiKey,
    NotFound,
    OutcomeUnknown,
    Reference,
)
from bot.job_store import JobStore
from bot.jobs import Job, JobStatus, LeaseLost
from bot.logs import kv
from bot.quotas import QuotaService
from bot.references import sniff_result_type
from bot.timings import Timings

log = logging.getLogger(__name__)

MAX_PUBLISH_ATTEMPTS = 6
# A step that keeps crashing for an unexpected reason is given up after this many tries.
MAX_STEP_ERRORS = 10


class NoticeKind(StrEnum):
    """Why a job ended without (all of) its images; rendered for members by the Discord side."""

    HUB_FAILED = "hub_failed"
    HUB_UNAVAILABLE = "hub_unavailable"
    OUTCOME_UNKNOWN = "outcome_unknown"
    NO_KEY = "no_key"
    BAD_KEY = "bad_key"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    INVALID_REQUEST = "invalid_request"
    DOWNLOAD_FAILED = "download_failed"
    TIMED_OUT = "timed_out"
    REFERENCES_GONE = "references_gone"
    PUBLISH_FAILED = "publish_failed"


@dataclass(frozen=True, slots=True)
class Notice:
    """A member-facing account of what happened to a job, and what it cost."""

    kind: NoticeKind
    detail: str = ""
    refunded: int = 0
    charged: int = 0


@dataclass(frozen=True, slots=True)
class ResultImage:
    """One downloaded image, or only its URL when the download failed."""

    index: int
    url: str
    data: bytes | None
    content_type: str = "image/png"


@dataclass(frozen=True, slots=True)
class Result:
    """A finished generation ready to post."""

    images: Sequence[ResultImage]
    requested: int
    charged: int
    refunded: int
    elapsed: float


class PublishError(Exception):
    """Posting failed. `permanent` means retrying cannot help (channel gone, no permission)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Publisher(Protocol):
    """What the scheduler needs from Discord; implemented in `bot/client.py`."""

    async def progress(self, job: Job) -> None:
        """Show the job's state on its status message (the publisher throttles edits)."""

    async def result(self, job: Job, result: Result) -> list[int]:
        """Post the images once; return the posted message ids. Raise `PublishError`."""

    async def notice(self, job: Job, notice: Notice) -> None:
        """Tell the member (and, for some kinds, moderators) why a job ended."""


class ReferenceSource(Protocol):
    async def load(self, job: Job) -> list[Reference]:
        """The job's reference images as bytes (from memory, or downloaded again)."""

    def discard(self, job_id: int) -> None:
        """Forget what is held for a job that ended."""


class HubPool(Protocol):
    """Hub clients by server: the server's own key, or the operator's fallback key."""

    async def for_guild(self, guild_id: int) -> HubClient | None: ...

    def downloader(self) -> HubClient:
        """A client without a key for image URLs from the hub's answers (untrusted: guarded)."""
        ...


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


def utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Claims due jobs and moves each one step forward; see the module docstring."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        quotas: QuotaService,
        hubs: HubPool,
        publisher: Publisher,
        references: ReferenceSource,
        owner: str,
        timings: Timings,
        concurrency: int = 32,
        policy: PollPolicy | None = None,
        retention: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.jobs = jobs
        self.quotas = quotas
        self.hubs = hubs
        self.publisher = publisher
        self.references = references
        self.owner = owner
        self.timings = timings
        self.lease_seconds = timings.lease_seconds
        self.policy = policy or PollPolicy.from_timings(timings)
        self.idle_wait = timings.idle_wait
        self.retention = retention
        self.clock = clock
        self._concurrency = concurrency
        self._wake = asyncio.Event()
        # Wake-ups are for what changes the plan, not for every finished step (each loop pass
        # costs a claim and two queries): when the loop sleeps on a timer, `_wake_at` is when it
        # wakes, and a job released to be due sooner (`_announced`) wakes it; when every slot is
        # busy (`_saturated`), finishing steps wake it once a few slots are free.
        self._wake_at: float | None = None
        self._announced = math.inf
        self._saturated = False
        self._stepped = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._stopping = False
        self.polls = 0
        # Run before each claim, e.g. the local queue's promotion (`bot.queue.QueueRunner.tick`).
        self.before_claim: Callable[[], Awaitable[object]] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def wake(self) -> None:
        """A job became due now (a new submission): stop sleeping."""
        self._wake.set()

    async def recover(self) -> None:
        """At start-up: a job caught mid-submission is `unknown`, never submitted twice."""
        try:
            recovered = await self.jobs.recover(self.owner)
        except Exception:
            log.exception(kv("scheduler.recover_failed"))
            return
        for job in recovered:
            log.warning(kv("job.outcome_unknown_after_restart", job=job.id, guild=job.guild_id))
            with contextlib.suppress(Exception):
                await self._settle_full(job)
            await self._notify(job, Notice(NoticeKind.OUTCOME_UNKNOWN, charged=job.cost))

    async def maintain(self) -> None:
        """Housekeeping, at start and hourly: settle reservations a crash left held (from their
        job's final state, or released when no job was stored) and prune old finished jobs."""
        try:
            settled = await self.reconcile()
            released = await self.quotas.ledger.release_orphans(self.timings.orphan_age)
            pruned = await self.jobs.prune(self.retention)
        except Exception:
            log.exception(kv("scheduler.maintenance_failed"))
            return
        if settled or released or pruned:
            log.info(
                kv("scheduler.maintenance", settled=settled, orphans_released=released, jobs_pruned=pruned)
            )

    async def reconcile(self) -> int:
        """Settle held reservations of jobs that already reached a settled state."""
        count = 0
        for job in await self.jobs.with_held_reservation():
            assert job.reservation_id is not None
            if job.status == JobStatus.CANCELLED or (
                job.status == JobStatus.FAILED and job.charged_credits is None
            ):
                await self.quotas.ledger.release(job.reservation_id)
            elif job.status == JobStatus.UNKNOWN:
                await self.quotas.ledger.settle(job.reservation_id, job.cost)
            else:  # succeeded, posted, or failed after the hub charged (e.g. posting failed)
                await self.quotas.ledger.settle(job.reservation_id, job.charged_credits or 0)
            count += 1
        return count

    async def run(self) -> None:
        """Loop until `stop()`: claim what is due, sleep until the next due time or a wake-up."""
        await self.recover()
        self._renewer = asyncio.create_task(self._renew_leases(), name="lease-renewer")
        next_maintenance = 0.0
        while not self._stopping:
            # Cleared before looking, so a wake-up that comes while we look is not lost.
            self._wake.clear()
            self._announced = math.inf
            if time.monotonic() >= next_maintenance:
                await self.maintain()
                next_maintenance = time.monotonic() + self.timings.maintenance_interval
            if self.before_claim is not None:
                try:
                    await self.before_claim()
                except Exception:
                    log.exception(kv("scheduler.before_claim_failed"))
            free = self._concurrency - len(self._in_flight)
            if free <= 0:
                self._saturated = True
                await self._wait(self.timings.saturated_wait)  # finishing steps wake us sooner
                self._saturated = False
                continue
            claimed: list[Job] = []
            try:
                claimed = await self.jobs.claim_due(
                    self.owner, free, self.lease_seconds, exclude=self._in_flight.keys()
                )
            except Exception:
                log.exception(kv("scheduler.claim_failed"))
            metrics.QUEUE_DEPTH.set(len(self._in_flight) + len(claimed))
            for job in claimed:
                task = asyncio.create_task(self._run_step(job), name=f"job-{job.id}")
                self._in_flight[job.id] = task
                task.add_done_callback(functools.partial(self._step_done, job.id))
            if claimed and len(claimed) == free:
                await asyncio.sleep(0)  # there may be more due; let steps run first
                continue
            sleep = await self._sleep_for()
            now = asyncio.get_running_loop().time()
            sleep = min(sleep, max(0.0, self._announced - now))
            self._wake_at = now + sleep
            await self._wait(sleep)
            self._wake_at = None

    async def _renew_leases(self) -> None:
        """Keep the leases of steps still under way, so a slow step is never taken over."""
        while not self._stopping:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.jobs.renew(self.owner, list(self._in_flight), self.lease_seconds)
            except Exception:
                log.exception(kv("scheduler.renew_failed"))

    def _step_done(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(job_id, None)
        if self._saturated and self._concurrency - len(self._in_flight) >= max(1, self._concurrency // 8):
            self._wake.set()
        self._stepped.set()
        self._stepped = asyncio.Event()

    @property
    def steps_in_flight(self) -> int:
        """Steps under way now (for tests and health: 0 when the scheduler is idle)."""
        return len(self._in_flight)

    def wait_step(self) -> Awaitable[bool]:
        """Wait for the next job step to finish (lets tests await progress, not sleep). The step is
        the next one after this call, even when the awaiting starts later (no lost wake-up)."""
        return self._stepped.wait()

    async def _sleep_for(self) -> float:
        try:
            due = await self.jobs.next_due_at()
        except Exception:
            log.exception(kv("scheduler.next_due_failed"))
            return 1.0
        if due is None:
            return self.idle_wait
        # A due job whose lease someone else holds shows as due now: don't spin on it.
        return min(self.idle_wait, max(0.05, (due - self.clock()).total_seconds()))

    async def _wait(self, seconds: float) -> None:
        """Sleep until a wake-up (set since the loop last cleared it) or `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(seconds, 0.0))

    async def stop(self) -> None:
        """Stop claiming; let steps under way finish their writes, then cancel what is left."""
        self._stopping = True
        self._wake.set()
        if self._renewer is not None:
            self._renewer.cancel()
        tasks = set(self._in_flight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.timings.stop_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    async def _run_step(self, job: Job) -> None:
        try:
            await self.step(job)
        except LeaseLost:
            log.info(kv("job.lease_lost", job=job.id))
        except Exception as exc:
            log.exception(kv("job.step_crashed", job=job.id, error=type(exc).__name__))
            reason = f"{type(exc).__name__}: {exc}"[:500]
            with contextlib.suppress(Exception):
                # Decide from the row as it is now: the step may have moved it (e.g. to
                # `submitting`, or submitted with the hub's charge) before the write that failed.
                current = await self.jobs.get(job.id)
                if current is None or current.is_terminal or current.lease_owner != self.owner:
                    return  # finished, cancelled or taken over meanwhile: nothing of ours to end
                errors = current.error_attempts + 1
                if (
                    errors >= MAX_STEP_ERRORS
                    or current.status is JobStatus.SUBMITTING
                    or self._too_old(current)
                ):
                    await self._give_up(current, reason)
                    return
                await self.jobs.update(job.id, self.owner, error_attempts=errors, last_error=reason)
                await self._release(current, self.policy.error_delay(errors))

    def _too_old(self, job: Job) -> bool:
        """At the hub for longer than any generation takes (the wait in the local queue doesn't count)."""
        age = self.timings.max_generation_age
        return job.submitted_at is not None and self.clock() - job.submitted_at > age

    async def _give_up(self, job: Job, reason: str) -> None:
        """End a job that keeps failing for an unexpected reason, with its credits accounted for.

        `job` is the row as it is now (re-read after the crash), never the snapshot the step was
        claimed with: a step that crashed after the hub accepted the job must not refund it."""
        log.error(kv("job.given_up", job=job.id, guild=job.guild_id, status=job.status, reason=reason))
        if job.status in (JobStatus.QUEUED, JobStatus.PENDING_SUBMIT):  # never sent: nothing charged
            await self._fail(job, Notice(NoticeKind.HUB_FAILED), last_error=reason)
        elif job.status == JobStatus.SUCCEEDED:  # charged and settled; the images could not be posted
            await self._finish(job, JobStatus.FAILED, last_error=reason)
            await self._notify(job, Notice(NoticeKind.PUBLISH_FAILED, charged=job.charged_credits or 0))
        else:  # the hub may have it: count it, as for an unknown outcome
            await self._finish(job, JobStatus.UNKNOWN, last_error=reason)
            await self._settle_full(job)
            kind = NoticeKind.OUTCOME_UNKNOWN if job.status is JobStatus.SUBMITTING else NoticeKind.TIMED_OUT
            await self._notify(job, Notice(kind, charged=job.cost))

    # -- one step ------------------------------------------------------------------------------

    async def step(self, job: Job) -> None:
        """Move one claimed job forward by one state."""
        if job.status == JobStatus.PENDING_SUBMIT:
            await self._submit(job)
        elif job.status in (JobStatus.SUBMITTED, JobStatus.RUNNING):
            await self._poll(job)
        elif job.status == JobStatus.SUCCEEDED:
            await self._deliver(job, None)
        elif job.status == JobStatus.SUBMITTING:
            # Only reachable if a lease expired mid-submission in another process.
            await self._finish(job, JobStatus.UNKNOWN, last_error="submission outcome unknown")
            await self._settle_full(job)
            await self._notify(job, Notice(NoticeKind.OUTCOME_UNKNOWN, charged=job.cost))

    async def _release(self, job: Job, delay: float, **fields: object) -> None:
        await self.jobs.hand_back(job.id, self.owner, self.clock() + timedelta(seconds=delay), **fields)
        self._due_in(delay)

    def _due_in(self, delay: float) -> None:
        """A job this process released is due in `delay` seconds: be awake by then."""
        at = asyncio.get_running_loop().time() + delay
        self._announced = min(self._announced, at)
        if self._wake_at is not None and at < self._wake_at:
            self._wake.set()

    async def _finish(self, job: Job, status: JobStatus, **fields: object) -> Job:
        metrics.GENERATIONS.labels(status.value).inc()
        self.references.discard(job.id)
        finished = await self.jobs.update(
            job.id, self.owner, status=status, finished_at=self.clock(), interaction_token=None, **fields
        )
        self._wake.set()  # a concurrency slot is free: queued jobs may start
        return finished

    async def _submit(self, job: Job) -> None:
        hub = await self.hubs.for_guild(job.guild_id)
        if hub is None:
            await self._fail(job, Notice(NoticeKind.NO_KEY))
            return
        try:
            references = await self.references.load(job)
        except Exception as exc:
            log.warning(kv("job.references_unavailable", job=job.id, error=type(exc).__name__))
            await self._fail(job, Notice(NoticeKind.REFERENCES_GONE))
            return
        job = await self.jobs.update(job.id, self.owner, status=JobStatus.SUBMITTING)
        p = job.params
        started = time.monotonic()
        try:
            gen = await hub.generate(
                model=p.model, prompt=p.prompt, size=p.size, quality=p.quality, n=p.n, references=references
            )
        except OutcomeUnknown as exc:
            log.warning(kv("job.outcome_unknown", job=job.id, guild=job.guild_id, error=exc.code))
            await self._finish(job, JobStatus.UNKNOWN, last_error=str(exc)[:500])
            await self._settle_full(job)
            await self._notify(job, Notice(NoticeKind.OUTCOME_UNKNOWN, charged=job.cost))
            return
        except HubError as exc:
            await self._fail(job, _notice_for_submit_error(exc), last_error=str(exc)[:500])
            return
        finally:
            metrics.HUB_LATENCY.labels("generate").observe(time.monotonic() - started)
        job = dataclasses.replace(
            job,
            status=_status_of(gen),
            hub_generation_id=gen.id,
            hub_status=gen.status,
            submitted_at=self.clock(),
        )
        submitted = {
            "status": job.status,
            "hub_generation_id": job.hub_generation_id,
            "hub_status": job.hub_status,
            "submitted_at": job.submitted_at,
        }
        log.info(kv("job.submitted", job=job.id, guild=job.guild_id, generation=gen.id))
        if gen.is_finished:  # a hub that answers synchronously
            job = await self.jobs.update(job.id, self.owner, **submitted)
            await self._on_finished(job, gen)
            return
        # Recorded and handed back in one write, before the status message shows it.
        await self._release(job, self.policy.next_delay(_policy_key(job), 0.0, 0), **submitted)
        await self._progress(job)

    async def _poll(self, job: Job) -> None:
        hub = await self.hubs.for_guild(job.guild_id)
        submitted_at = job.submitted_at or job.created_at
        elapsed = (self.clock() - submitted_at).total_seconds()
        if hub is None or job.hub_generation_id is None:
            await self._finish(job, JobStatus.UNKNOWN, last_error="no key to poll with")
            await self._settle_full(job)
            await self._notify(job, Notice(NoticeKind.NO_KEY, charged=job.cost))
            return
        self.polls += 1
        metrics.POLLS.inc()
        try:
            gen = await hub.get_generation(job.hub_generation_id)
        except (HubUnavailable, NotFound, InvalidApiKey, ExpiredApiKey, HubError) as exc:
            errors = job.error_attempts + 1
            if elapsed > self.timings.max_generation_age.total_seconds():
                await self._finish(job, JobStatus.UNKNOWN, last_error=str(exc)[:500])
                await self._settle_full(job)
                await self._notify(job, Notice(NoticeKind.TIMED_OUT, charged=job.cost))
                return
            log.info(kv("job.poll_error", job=job.id, error=type(exc).__name__, attempt=errors))
            job = await self.jobs.update(job.id, self.owner, error_attempts=errors, last_error=str(exc)[:500])
            await self._release(job, self.policy.error_delay(errors))
            return
        if gen.is_finished:
            self.policy.observe(_policy_key(job), generation_seconds(gen) or elapsed)
            await self._on_finished(job, gen)
            return
        if elapsed > self.timings.max_generation_age.total_seconds():
            await self._finish(job, JobStatus.UNKNOWN, hub_status=gen.status, last_error="timed out")
            await self._settle_full(job)
            await self._notify(job, Notice(NoticeKind.TIMED_OUT, charged=job.cost))
            return
        attempts = job.poll_attempts + 1
        delay = self.policy.next_delay(_policy_key(job), elapsed, attempts)
        progress = {"status": _status_of(gen), "hub_status": gen.status, "poll_attempts": attempts}
        await self._release(job, delay, **progress)  # one write, then show a changed status
        if gen.status != job.hub_status:
            shown = dataclasses.replace(job, status=_status_of(gen), hub_status=gen.status)
            await self._progress(dataclasses.replace(shown, poll_attempts=attempts))

    async def _on_finished(self, job: Job, gen: Generation) -> None:
        if not gen.succeeded or not gen.images:
            await self._finish(
                job, JobStatus.FAILED, hub_status=gen.status, last_error=gen.error or gen.status
            )
            refunded = await self._settle(job, 0)
            await self._notify(job, Notice(NoticeKind.HUB_FAILED, detail=gen.error or "", refunded=refunded))
            return
        delivered = len(gen.images)
        charged = gen.usage.credits if gen.usage.credits is not None else job.cost * delivered // job.params.n
        charged = max(0, min(charged, job.cost))
        job = await self.jobs.update(
            job.id,
            self.owner,
            status=JobStatus.SUCCEEDED,
            error_attempts=0,  # from here on it counts posting attempts only
            hub_status=gen.status,
            result_urls=[image.url for image in gen.images],
            delivered_images=delivered,
            charged_credits=charged,
        )
        await self._settle(job, charged)
        metrics.CREDITS_SPENT.inc(charged)
        await self._deliver(job, gen)

    async def _deliver(self, job: Job, gen: Generation | None) -> None:
        """Download the images and post them; retried on transient Discord errors."""
        hub = self.hubs.downloader()
        images = await self._download_all(hub, job)
        charged = job.charged_credits or 0
        elapsed = (job.submitted_at and (self.clock() - job.submitted_at).total_seconds()) or 0.0
        result = Result(
            images=images,
            requested=job.params.n,
            charged=charged,
            refunded=max(0, job.cost - charged),
            elapsed=elapsed,
        )
        if not any(image.data for image in images):
            # Nothing to post. The hub made (and charged) the images, so the quota stays settled.
            log.warning(kv("job.download_failed", job=job.id, guild=job.guild_id))
            await self._finish(job, JobStatus.FAILED, last_error="download failed: no image could be fetched")
            await self._notify(job, Notice(NoticeKind.DOWNLOAD_FAILED, charged=charged))
            return
        try:
            message_ids = await self.publisher.result(job, result)
        except PublishError as exc:
            attempts = job.error_attempts + 1
            if exc.permanent or attempts >= MAX_PUBLISH_ATTEMPTS:
                log.warning(kv("job.publish_abandoned", job=job.id, guild=job.guild_id, reason=str(exc)))
                await self._finish(
                    job, JobStatus.FAILED, last_error=f"publish: {exc}"[:500], error_attempts=attempts
                )
                # The member paid for these: say so (where Discord still lets us say anything).
                notice = Notice(NoticeKind.PUBLISH_FAILED, detail=str(exc)[:200], charged=charged)
                await self._notify(job, notice)
                return
            job = await self.jobs.update(
                job.id, self.owner, error_attempts=attempts, last_error=str(exc)[:500]
            )
            await self._release(job, self.policy.error_delay(attempts))
            return
        if await self.jobs.mark_posted(job.id, self.owner, message_ids):
            self._wake.set()  # a concurrency slot is free: queued jobs may start
            metrics.GENERATIONS.labels(JobStatus.POSTED.value).inc()
            log.info(kv("job.posted", job=job.id, guild=job.guild_id, messages=len(message_ids)))

    async def _download_all(self, hub: HubClient, job: Job) -> list[ResultImage]:
        async def one(index: int, url: str) -> ResultImage:
            try:
                t = self.timings
                data = await hub.download(url, t.max_image_bytes, timeout=t.download_timeout)
            except DownloadError as exc:
                log.warning(kv("job.image_download_failed", job=job.id, index=index, error=str(exc)[:200]))
                return ResultImage(index=index, url=url, data=None)
            content_type = sniff_result_type(data)
            if content_type is None:  # an error page or anything else: never posted as an image
                log.warning(kv("job.image_not_an_image", job=job.id, index=index, size=len(data)))
                return ResultImage(index=index, url=url, data=None)
            return ResultImage(index=index, url=url, data=data, content_type=content_type)

        return list(await asyncio.gather(*(one(i, url) for i, url in enumerate(job.result_urls))))

    # -- quota and notices ----------------------------------------------------------------------

    async def _fail(self, job: Job, notice: Notice, **fields: object) -> None:
        await self._finish(job, JobStatus.FAILED, **fields)
        refunded = await self._settle(job, 0)
        await self._notify(job, Notice(notice.kind, notice.detail, refunded=refunded))

    async def _settle(self, job: Job, charged: int) -> int:
        """Settle the job's reservation to what the hub charged; return what went back."""
        if job.reservation_id is None:
            return 0
        await self.quotas.ledger.settle(job.reservation_id, charged)
        return max(0, job.cost - charged)

    async def _settle_full(self, job: Job) -> None:
        # Unknown outcome: the hub may have charged, so the member's budget counts it.
        if job.reservation_id is not None:
            await self.quotas.ledger.settle(job.reservation_id, job.cost)

    async def _notify(self, job: Job, notice: Notice) -> None:
        try:
            await self.publisher.notice(job, notice)
        except Exception as exc:
            log.warning(kv("job.notice_failed", job=job.id, kind=notice.kind, error=type(exc).__name__))

    async def _progress(self, job: Job) -> None:
        try:
            await self.publisher.progress(job)
        except Exception as exc:
            log.info(kv("job.progress_failed", job=job.id, error=type(exc).__name__))


def _status_of(gen: Generation) -> JobStatus:
    if gen.status == "queued":
        return JobStatus.SUBMITTED
    return JobStatus.RUNNING


def _policy_key(job: Job) -> str:
    return f"{job.params.model}:{job.params.tier}:{job.params.n}"


def _notice_for_submit_error(exc: HubError) -> Notice:
    if isinstance(exc, HubUnavailable):
        return Notice(NoticeKind.HUB_UNAVAILABLE)
    if isinstance(exc, InsufficientCredits):
        return Notice(NoticeKind.INSUFFICIENT_CREDITS)
    if isinstance(exc, MissingApiKey | InvalidApiKey | ExpiredApiKey):
        return Notice(NoticeKind.BAD_KEY)
    if isinstance(exc, InvalidRequest):
        return Notice(NoticeKind.INVALID_REQUEST, detail=exc.message)
    return Notice(NoticeKind.HUB_FAILED, detail=exc.message)

