"""The engine's loop: claims due jobs with leases and runs their steps, many at once.

It knows when to look (due times, wake-ups, a saturated pool), keeps the leases of steps under
way, promotes the local queue before every claim and does housekeeping; what a step does is
`bot.engine.steps`. Leases (`bot.job_store`) let several processes share one database: a
crashed process's jobs are taken over once its leases run out. The engine starts with the
`Publisher` it will hand results to, and stops cleanly (steps under way finish their writes).
Between steps a job stays with the engine that stepped it (`hold`): its lease is renewed, its due
time kept in memory, and it is taken back with a read of its row instead of a claim's write
(`_take_held`), so a poll costs no write unless the hub's status moved. A clean stop lets them go.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

from bot import metrics
from bot.engine.outcomes import Publisher
from bot.engine.policy import PollPolicy, policy_key
from bot.engine.settlement import reconcile
from bot.engine.steps import Steps, Tools
from bot.jobs import Job, JobStatus, LeaseLost
from bot.logs import kv
from bot.queue import QueueRunner

log = logging.getLogger(__name__)

# Places for the polls of held-back jobs that the hub is letting go (`PollPolicy.let_go`), per place
# of the engine's `concurrency` (MAX_CONCURRENT_POLLS).
POLL_PLACES_PER_PLACE = 4


class _Kept(NamedTuple):
    """What the engine remembers of a job it keeps between steps, beside its row."""

    delivery: bool  # a result to post: it takes a delivery's place
    poll_attempts: int  # a poll that changed nothing wrote nothing
    status_message_id: int | None  # a new job's: written with its submission (see `launched`)
    kind: str  # the poll policy's kind (`policy_key`): its next poll follows a new schedule
    submitted_at: datetime | None  # None: not sent to the hub yet


class Engine:
    """See the module docstring. `start(publisher)`, then `stop()`."""

    def __init__(
        self,
        tools: Tools,
        *,
        queue: QueueRunner | None = None,
        concurrency: int = 32,
        deliveries: int | None = None,
        retention: timedelta = timedelta(days=30),
        policy: PollPolicy | None = None,
    ) -> None:
        self.tools = tools
        self.jobs = tools.jobs
        self.owner = tools.owner
        self.timings = tools.timings
        self.queue = queue
        self.retention = retention
        self.policy = policy or PollPolicy.from_timings(tools.timings)
        self.steps: Steps | None = None  # from `start`
        self._concurrency = concurrency
        # When the hub lets held-up generations go, thousands of held-back jobs are polled at once
        # (`PollPolicy`): those polls may fill more places than other steps. Not every poll: 128
        # places for all of them took a burst's first answer p99 from 40-80 ms to 100-210 ms.
        self._poll_places = concurrency * POLL_PLACES_PER_PLACE
        self._extra: set[int] = set()  # steps in those extra places: they leave the others free
        # Results being posted have places of their own (as many as the polls by default): a
        # slow upload never holds back polls, nor the other results (each its own step).
        self._deliveries = deliveries if deliveries is not None else concurrency
        self._delivering: set[int] = set()
        self._task: asyncio.Task[None] | None = None
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
        # Jobs kept between steps (still leased to this process): loop time due and what their
        # row may not hold yet (`_Kept`); and a heap of (due, job) to find the due ones (entries
        # no longer in `_held` are skipped). Thousands may be kept: a few numbers each.
        self._held: dict[int, tuple[float, _Kept]] = {}
        self._held_due: list[tuple[float, int]] = []
        self._renewer: asyncio.Task[None] | None = None
        self._stopping = False
        # Launches under way (members waiting for a first answer), and an event set while they are
        # fewer than a burst (`Timings.burst_launches`).
        self._launches = 0
        self._no_burst = asyncio.Event()
        self._no_burst.set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, publisher: Publisher) -> None:
        """Run the loop in the background, handing results and notices to `publisher`."""
        assert self._task is None, "started twice"
        self.steps = Steps(
            self.tools,
            publisher,
            self.policy,
            on_due=self._due_in,
            on_free=self._wake.set,
            on_delivery=self._delivery_started,
            on_hold=self.hold,
        )
        self._task = asyncio.create_task(self._run(publisher), name="scheduler")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical(kv("scheduler.died", error=repr(task.exception())), exc_info=task.exception())

    @property
    def keeps_jobs(self) -> bool:
        """Running and not stopping: a job given to `launched` is kept and stepped."""
        return self._task is not None and not self._task.done() and not self._stopping

    def alive(self) -> bool:
        """For /healthz: the loop is running (or has not been started yet)."""
        return self._task is None or not self._task.done()

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
        if self._task is not None:
            # The loop ends by itself once stopped; cancelling it mid-query would leave a
            # connection half rolled back. Cancel only if it does not end in time.
            done, _ = await asyncio.wait({self._task}, timeout=10)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        held, self._held, self._held_due = list(self._held), {}, []
        with contextlib.suppress(Exception):
            await self.jobs.let_go(self.owner, held)  # due at once for whoever runs next
        if self.queue is not None:
            await self.queue.close()

    def wake(self) -> None:
        """A job became due now (a new submission, a freed slot): stop sleeping."""
        self._wake.set()

    def launched(self, job: Job | None = None) -> None:
        """A launch is done with the job it stored (born leased to this engine until its status
        message was known): keep `job` (still leased to us) and step it now, or, without one (let
        go), claim it; and let `wait_step` waiters look at it. A kept new job's status message id
        is remembered here and written by its first step (`Steps._submit`), not by a write of its
        own: one commit fewer per job."""
        if job is not None:
            self.hold(job, 0.0)
        self._wake.set()
        self._stepped.set()
        self._stepped = asyncio.Event()

    @property
    def launches(self) -> int:
        """Launches under way (see `launching`)."""
        return self._launches

    @contextlib.contextmanager
    def launching(self) -> Iterator[None]:
        """Around a launch (a member waiting for the first answer): in a burst members go first.
        Under one GIL a step started beside a burst of launches takes CPU from them, so while at
        least `Timings.burst_launches` launches are under way the loop starts no new steps, for at
        most `Timings.launch_priority` seconds per pass (steps already under way go on). A steady
        trickle of launches (fewer at once) does not hold the engine back. Measured: 250 /imagine
        in one second were 29 real first answers without this, 250 with it."""
        self._launches += 1
        if self._launches >= self.timings.burst_launches:
            self._no_burst.clear()
        try:
            yield
        finally:
            self._launches -= 1
            if self._launches < self.timings.burst_launches:
                self._no_burst.set()

    def hold(self, job: Job, delay: float) -> None:
        """Keep a job leased to this engine between steps: stepped again in `delay` seconds, with
        no claim (a read of its row, not a write; see `_take_held`)."""
        # (While stopping too: a step that ends then leaves its job here, and `stop` lets it go.)
        at = asyncio.get_running_loop().time() + delay
        kept = _Kept(
            job.status is JobStatus.SUCCEEDED,
            job.poll_attempts,
            job.status_message_id,
            policy_key(job),
            job.submitted_at if job.hub_generation_id is not None else None,
        )
        self._held[job.id] = (at, kept)
        heapq.heappush(self._held_due, (at, job.id))
        self._due_in(delay)
        self._follow_new_schedules()

    def _follow_new_schedules(self) -> None:
        """Kept jobs of a kind whose poll schedule was placed again are due at their next poll on
        the new schedule, when that comes a budget step (3 s) sooner or more (`take_replaced`).
        Moving for less cost polls and no lag: on a steady mix (benchmarks.lag) moving for any gain
        took 4.18 polls per job to 4.45. Held-back jobs of a kind just woken (`take_woken`: the hub
        lets its held-up generations go) are due at once, as far as their budget allows."""
        replaced, woken = self.policy.take_replaced(), self.policy.take_woken()
        if not replaced and not woken:
            return
        now, wall = asyncio.get_running_loop().time(), self.tools.clock()
        for job_id, (at, kept) in list(self._held.items()):
            if kept.kind not in replaced and kept.kind not in woken:
                continue
            if kept.delivery or kept.submitted_at is None:
                continue
            elapsed = (wall - kept.submitted_at).total_seconds()
            delay = None
            if kept.kind in woken:
                delay = self.policy.wake_delay(kept.kind, elapsed, kept.poll_attempts, wall.timestamp())
            if delay is not None:
                sooner = now + delay
            elif kept.kind in replaced:
                sooner = now + self.policy.next_delay(kept.kind, elapsed, kept.poll_attempts)
                sooner = sooner if sooner < at - self.policy.step else at  # a small shift: a poll more
            else:
                continue
            if sooner < at:
                self._held[job_id] = (sooner, kept)
                heapq.heappush(self._held_due, (sooner, job_id))
                self._due_in(sooner - now)

    def due_in(self, job_id: int) -> float | None:
        """Seconds until a kept job is stepped again (None: not kept). For tests and diagnosis."""
        held = self._held.get(job_id)
        return None if held is None else held[0] - asyncio.get_running_loop().time()

    @property
    def steps_in_flight(self) -> int:
        """Steps under way now (for tests and health: 0 when the engine is idle)."""
        return len(self._in_flight)

    def wait_step(self) -> Awaitable[bool]:
        """Wait for the next job step (or launch) to finish (lets tests await progress, not sleep).
        The step is the next one after this call, even when the awaiting starts later (no lost
        wake-up)."""
        return self._stepped.wait()

    # -- housekeeping ------------------------------------------------------------------------

    async def recover(self) -> None:
        """At start-up: a job caught mid-submission is `unknown`, never submitted twice."""
        assert self.steps is not None
        try:
            recovered = await self.jobs.recover(self.owner)
        except Exception:
            log.exception(kv("scheduler.recover_failed"))
            return
        for job in recovered:
            log.warning(kv("job.outcome_unknown_after_restart", job=job.id, guild=job.guild_id))
            await self.steps.recovered(job)

    async def maintain(self) -> None:
        """Housekeeping, at start and hourly: settle reservations a crash left held (from their
        job's final state, or released when no job was stored) and prune old finished jobs."""
        try:
            settled = await self.reconcile()
            released = await self.tools.ledger.release_orphans(self.timings.orphan_age)
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
        return await reconcile(self.jobs, self.tools.ledger)

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self, publisher: Publisher) -> None:
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
            if self.queue is not None:  # the local queue: promote what fits, show places
                try:
                    await self.queue.tick(publisher)
                except Exception:
                    log.exception(kv("scheduler.before_claim_failed"))
            if not self._no_burst.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._no_burst.wait(), self.timings.launch_priority)
            free, free_deliveries = self._free()
            wall = self.tools.clock().timestamp()
            if free <= 0 and (self._free_polls() <= 0 or not self.policy.releasing(wall)):
                self._saturated = True
                await self._wait(self.timings.saturated_wait)  # finishing steps wake us sooner
                self._saturated = False
                continue
            # Claimable jobs first (oldest due first: after a restart, all of them), then the kept
            # ones in the places left: jobs nobody has stepped for a while go before jobs just stepped.
            claimed: list[Job] = []
            free = max(0, free)
            try:
                if free > 0 or free_deliveries > 0:
                    claimed = await self.jobs.claim_due(
                        self.owner,
                        free,
                        self.timings.lease_seconds,
                        exclude=self._in_flight.keys(),  # kept jobs: leased to us, not claimable
                        deliveries=max(0, free_deliveries),
                    )
            except Exception:
                log.exception(kv("scheduler.claim_failed"))
            for job in claimed:
                self._start_step(job)
            taken: list[Job] = []
            left, left_deliveries = self._free()
            # The extra places only while a kind is being let go: otherwise every due job would be
            # looked at (and put back) on each pass once the other places are full.
            left_polls = self._free_polls() if self.policy.releasing(wall) else 0
            if left > 0 or left_deliveries > 0 or left_polls > 0:
                try:
                    taken = await self._take_held(left, left_deliveries, left_polls)
                except Exception:
                    log.exception(kv("scheduler.take_held_failed"))
            for job in taken:
                self._start_step(job)
            metrics.QUEUE_DEPTH.set(len(self._in_flight) + len(self._held))
            if claimed and len(claimed) == free + max(0, free_deliveries):
                await asyncio.sleep(0)  # there may be more due; let steps run first
                continue
            sleep = await self._sleep_for()
            now = asyncio.get_running_loop().time()
            held_due = self._held_due[0][0] if self._held_due else math.inf
            # (A kept job due already but with no place free of its kind: look again soon, no spin.)
            sleep = min(sleep, max(0.0, self._announced - now), max(0.05, held_due - now))
            self._wake_at = now + sleep
            await self._wait(sleep)
            self._wake_at = None

    def _start_step(self, job: Job) -> None:
        self._held.pop(job.id, None)  # claimed again (its lease ran out meanwhile): one step at a time
        if job.status is JobStatus.SUCCEEDED:
            self._delivering.add(job.id)
        task = asyncio.create_task(self._run_step(job), name=f"job-{job.id}")
        self._in_flight[job.id] = task
        task.add_done_callback(functools.partial(self._step_done, job.id))

    async def _take_held(self, free: int, free_deliveries: int, free_polls: int) -> list[Job]:
        """The kept jobs that are due, as many as there are places, as their rows are now (one
        read: a job cancelled or taken over meanwhile is dropped). What the row does not hold
        (a poll that changed nothing wrote nothing) comes from the kept snapshot. `free_polls`:
        places for the polls of jobs the hub is letting go, those of other steps included."""
        now = asyncio.get_running_loop().time()
        wall = self.tools.clock()
        picked: dict[int, _Kept] = {}
        extra: set[int] = set()  # picked into the extra places
        skipped: list[tuple[float, int]] = []  # due, but no place of their kind is free
        while (
            self._held_due
            and self._held_due[0][0] <= now
            and (free > 0 or free_deliveries > 0 or free_polls > 0)
        ):
            at, job_id = heapq.heappop(self._held_due)
            held = self._held.get(job_id)
            if held is None or held[0] != at:
                continue  # stepped meanwhile, or kept again for a later time
            if job_id in self._in_flight:  # the step that kept it is still finishing: next pass
                skipped.append((at, job_id))
                continue
            kept = held[1]
            if kept.delivery:
                if free_deliveries <= 0:
                    skipped.append((at, job_id))
                    continue
                free_deliveries -= 1
            elif free > 0:
                free -= 1
                free_polls -= 1
            elif free_polls > 0 and self._let_go(kept, wall):
                free_polls -= 1
                extra.add(job_id)
            else:
                skipped.append((at, job_id))
                continue
            picked[job_id] = kept
            del self._held[job_id]
        for entry in skipped:
            heapq.heappush(self._held_due, entry)
        if not picked:
            return []
        try:
            current = await self.jobs.held(self.owner, picked.keys())
        except Exception:
            for job_id, kept in picked.items():  # kept as they were, due now: the next pass tries again
                self._held[job_id] = (now, kept)
                heapq.heappush(self._held_due, (now, job_id))
            raise
        self._extra.update(row.id for row in current if row.id in extra)  # started by the caller now
        return [
            dataclasses.replace(
                row,
                poll_attempts=max(row.poll_attempts, picked[row.id].poll_attempts),
                status_message_id=row.status_message_id or picked[row.id].status_message_id,
            )
            for row in current
        ]

    async def _run_step(self, job: Job) -> None:
        assert self.steps is not None
        try:
            await self.steps.step(job)
        except LeaseLost:
            log.info(kv("job.lease_lost", job=job.id))
        except Exception as exc:
            log.exception(kv("job.step_crashed", job=job.id, error=type(exc).__name__))
            with contextlib.suppress(Exception):
                await self.steps.crashed(job, f"{type(exc).__name__}: {exc}"[:500])

    async def _renew_leases(self) -> None:
        """Keep the leases of steps still under way, so a slow step is never taken over."""
        lease = self.timings.lease_seconds
        while not self._stopping:
            await asyncio.sleep(lease / 3)
            try:
                await self.jobs.renew(self.owner, [*self._in_flight, *self._held], lease)
            except Exception:
                log.exception(kv("scheduler.renew_failed"))

    def _free(self) -> tuple[int, int]:
        """Free places: (steps, deliveries). Polls of jobs being let go: `_free_polls`."""
        delivering = len(self._delivering)
        busy = len(self._in_flight) - delivering - len(self._extra)
        return self._concurrency - busy, self._deliveries - delivering

    def _free_polls(self) -> int:
        return self._poll_places - (len(self._in_flight) - len(self._delivering))

    def _let_go(self, kept: _Kept, wall: datetime) -> bool:
        if kept.submitted_at is None:
            return False
        elapsed = (wall - kept.submitted_at).total_seconds()
        return self.policy.let_go(kept.kind, elapsed, wall.timestamp())

    def _delivery_started(self, job_id: int) -> None:
        """A step moved on to posting its result: its poll place is free."""
        if job_id in self._in_flight and job_id not in self._delivering:
            self._delivering.add(job_id)
            self._extra.discard(job_id)
            if self._saturated:
                self._wake.set()

    def _step_done(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(job_id, None)
        self._delivering.discard(job_id)
        self._extra.discard(job_id)
        held = self._held.get(job_id)
        if held is not None and held[0] <= asyncio.get_running_loop().time():
            self._wake.set()  # kept due by its own step, which only now let go of its place
        free, free_deliveries = self._free()
        if self._saturated and self.policy.releasing(self.tools.clock().timestamp()):
            free = max(free, self._free_polls())
        if self._saturated and max(free, free_deliveries) >= max(1, self._concurrency // 8):
            self._wake.set()
        self._stepped.set()
        self._stepped = asyncio.Event()

    def _due_in(self, delay: float) -> None:
        """A job this process released is due in `delay` seconds: be awake by then."""
        at = asyncio.get_running_loop().time() + delay
        self._announced = min(self._announced, at)
        if self._wake_at is not None and at < self._wake_at:
            self._wake.set()

    async def _sleep_for(self) -> float:
        try:
            due = await self.jobs.next_due_at()
        except Exception:
            log.exception(kv("scheduler.next_due_failed"))
            return 1.0
        if due is None:
            return self.timings.idle_wait
        # A due job whose lease someone else holds shows as due now: don't spin on it.
        return min(self.timings.idle_wait, max(0.05, (due - self.tools.clock()).total_seconds()))

    async def _wait(self, seconds: float) -> None:
        """Sleep until a wake-up (set since the loop last cleared it) or `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(seconds, 0.0))
