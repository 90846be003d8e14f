"""The step machine with a manual clock: one claimed job moved forward one state at a time.

Real pieces only: the job rows and the ledger on both database backends, the hub emulator over
HTTP, and a publisher that records what it was asked to show (an implementation of the engine's
`Publisher` protocol, as the Discord adapter's is). The clock moves only when a test moves it, so
"due", "too old" and the poll times are exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

import aiohttp
import pytest

from bot.alerts import BalanceWatcher
from bot.clock import ManualClock
from bot.db import Database
from bot.engine import Notice, NoticeKind, PublishError, Result, Tools
from bot.engine.loop import Engine
from bot.engine.policy import PollPolicy
from bot.engine.steps import Steps
from bot.guild_settings import GuildSettingsStore
from bot.hub import HubClient, Reference
from bot.hub.emulator import EmulatorState, create_app
from bot.hub.emulator.state import GenerationEvent, GenerationRecord
from bot.hub.netguard import AddressPolicy
from bot.job_store import JobStore
from bot.jobs import Job, JobParams, JobStatus, LeaseLost
from bot.queue import Place
from bot.quotas import QuotaService
from bot.timings import Timings
from tests.hub.conftest import serve

G, U, CHANNEL = 1_000_000_000_000_000_001, 2_000_000_000_000_000_002, 3_000_000_000_000_000_003
OWNER = "worker-1"
COST_PER_IMAGE = 8  # the emulator's gpt-image-2 at 1K
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class RecordingPublisher:
    """The engine's `Publisher`, keeping what it was asked to show; `fail` makes `result` raise."""

    progress_shown: list[tuple[int, JobStatus]] = field(default_factory=list)
    results: list[tuple[int, Result]] = field(default_factory=list)
    notices: list[tuple[int, Notice]] = field(default_factory=list)
    fail: PublishError | None = None

    async def progress(self, job: Job) -> None:
        self.progress_shown.append((job.id, job.status))

    async def result(self, job: Job, result: Result) -> list[int]:
        if self.fail is not None:
            raise self.fail
        self.results.append((job.id, result))
        return [9_000_000_000_000_000_000 + job.id]

    async def notice(self, job: Job, notice: Notice) -> None:
        self.notices.append((job.id, notice))

    async def queued(self, job: Job, place: Place) -> bool:
        return True

    async def low_balance(self, guild_id: int, credits: int, threshold: int) -> None:
        return None


class NoReferences:
    async def load(self, job: Job) -> list[Reference]:
        return []

    def discard(self, job_id: int) -> None:
        return None


class EmulatorHubs:
    """Hub clients for the emulator: the server's key, and a keyless downloader allowed to reach it."""

    def __init__(self, url: str, key: str, session: aiohttp.ClientSession) -> None:
        parts = urlsplit(url)
        self.url, self.key, self.session = url, key, session
        self.policy = AddressPolicy([(parts.hostname or "", parts.port or 80)])

    async def for_job(self, job: Job) -> HubClient | None:
        return HubClient(self.url, self.key, self.session, retries=0) if job.guild_id == G else None

    def downloader(self) -> HubClient:
        return HubClient(self.url, None, self.session, address_policy=self.policy)


@dataclass
class Rig:
    steps: Steps
    jobs: JobStore
    quotas: QuotaService
    clock: ManualClock
    hub: EmulatorState
    gate: asyncio.Event
    publisher: RecordingPublisher
    finished: asyncio.Event

    async def new_job(self, n: int = 1, *, guild_id: int = G) -> Job:
        """A job as the launch path leaves it: credits reserved, row stored, reservation attached."""
        cost = COST_PER_IMAGE * n
        reservation = await self.quotas.ledger.reserve(guild_id, U, [], cost)
        params = JobParams(
            model="gpt-image-2", prompt="a lighthouse", aspect="1:1", tier="1K", quality="auto", n=n
        )
        job = await self.jobs.create(
            guild_id=guild_id,
            channel_id=CHANNEL,
            user_id=U,
            params=params,
            cost=cost,
            reservation_id=reservation.id,
        )
        await self.quotas.ledger.attach(reservation.id, job.id)
        return job

    async def claim_and_step(self, job_id: int) -> Job:
        """Claim what is due now (it must include `job_id`), step that job, return its row after."""
        claimed = {j.id: j for j in await self.jobs.claim_due(OWNER, 10, 60.0)}
        assert job_id in claimed, f"job {job_id} is not due at {self.clock()}"
        await self.steps.step(claimed[job_id])
        row = await self.jobs.get(job_id)
        assert row is not None
        return row

    async def due_in(self, job: Job) -> float:
        assert job.next_poll_at is not None
        return (job.next_poll_at - self.clock()).total_seconds()

    async def spent_and_held(self) -> tuple[int, int]:
        budget = await self.quotas.ledger.budget(G, U, [])
        return budget.spent, budget.reserved


@pytest.fixture
async def rig(db: Database, clock: ManualClock) -> AsyncIterator[Rig]:
    gate = asyncio.Event()
    finished = asyncio.Event()
    hub = EmulatorState(gate=gate)

    def observe(event: GenerationEvent, gen: GenerationRecord) -> None:
        if event == "finished":
            finished.set()

    hub.observers.append(observe)
    key = hub.add_key(credits=1000)
    async with serve(create_app(hub)) as url, aiohttp.ClientSession() as session:
        jobs = JobStore(db, clock=clock)
        quotas = QuotaService(db, clock=clock)
        tools = Tools(
            jobs=jobs,
            ledger=quotas.ledger,
            hubs=EmulatorHubs(url, key, session),
            references=NoReferences(),
            balance=BalanceWatcher(GuildSettingsStore(db)),
            owner=OWNER,
            timings=Timings(),
            clock=clock,
        )
        publisher = RecordingPublisher()
        steps = Steps(tools, publisher, PollPolicy.from_timings(tools.timings))
        yield Rig(steps, jobs, quotas, clock, hub, gate, publisher, finished)


async def test_submit_poll_finish_post_with_each_state_written_and_the_hub_charge_settled(rig: Rig) -> None:
    job = await rig.new_job(n=2)

    job = await rig.claim_and_step(job.id)  # submit
    assert job.status in (JobStatus.SUBMITTED, JobStatus.RUNNING) and job.hub_generation_id
    assert job.submitted_at == rig.clock() and job.lease_owner is None  # handed back
    assert await rig.due_in(job) == pytest.approx(rig.steps.policy.first)  # no history: after `first`
    assert [gen.id for gen in rig.hub.generations.values()] == [job.hub_generation_id]
    assert await rig.spent_and_held() == (0, 16)

    rig.clock.advance(seconds=1)
    job = await rig.claim_and_step(job.id)  # the hub is still at it (gated)
    assert job.status is JobStatus.RUNNING and job.poll_attempts == 1
    assert await rig.due_in(job) == pytest.approx(rig.steps.policy.step + rig.steps.policy.margin - 1)

    rig.clock.advance(seconds=1)  # not due yet: not claimed
    assert job.id not in {j.id for j in await rig.jobs.claim_due(OWNER, 10, 60.0)}

    rig.gate.set()
    await asyncio.wait_for(rig.finished.wait(), 5)
    rig.clock.advance(seconds=5)
    job = await rig.claim_and_step(job.id)  # finished: settled, downloaded, posted
    assert job.status is JobStatus.POSTED and job.delivered_images == 2 and job.charged_credits == 16
    assert job.posted_message_ids == [9_000_000_000_000_000_000 + job.id]
    assert await rig.spent_and_held() == (16, 0)
    [(posted_id, result)] = rig.publisher.results
    assert posted_id == job.id and result.charged == 16 and result.refunded == 0
    assert [image.data[:8] for image in result.images if image.data] == [PNG, PNG]
    assert rig.publisher.notices == []


async def test_a_finish_whose_write_lost_the_lease_posts_nothing(rig: Rig) -> None:
    """The images are fetched while the finish is written. When that write fails (the lease went to
    another process), nothing is posted and nothing settled: the job is the new owner's."""
    rig.gate.set()
    job = await rig.new_job(n=1)
    job = await rig.claim_and_step(job.id)  # submitted
    await asyncio.wait_for(rig.finished.wait(), 5)
    rig.clock.advance(seconds=10)
    mine = {j.id: j for j in await rig.jobs.claim_due(OWNER, 10, 60.0)}[job.id]
    rig.clock.advance(seconds=61)  # this lease ran out: another process claims the job
    assert job.id in {j.id for j in await rig.jobs.claim_due("another-process", 10, 60.0)}
    with pytest.raises(LeaseLost):
        await rig.steps.step(mine)
    assert rig.publisher.results == [] and rig.publisher.notices == []
    row = await rig.jobs.get(job.id)
    assert row is not None and row.status is JobStatus.SUBMITTED and row.lease_owner == "another-process"
    assert await rig.spent_and_held() == (0, 8)


async def test_a_generation_the_hub_fails_is_refunded_in_full_and_told(rig: Rig) -> None:
    rig.hub.fail_next(1)
    rig.gate.set()
    job = await rig.new_job(n=1)
    job = await rig.claim_and_step(job.id)
    await asyncio.wait_for(rig.finished.wait(), 5)
    rig.clock.advance(seconds=10)
    job = await rig.claim_and_step(job.id)
    assert job.status is JobStatus.FAILED and job.finished_at == rig.clock()
    assert await rig.spent_and_held() == (0, 0)
    [(_, notice)] = rig.publisher.notices
    assert (notice.kind, notice.refunded, notice.charged) == (NoticeKind.HUB_FAILED, 8, 0)


async def test_a_generation_older_than_the_window_is_counted_not_refunded(rig: Rig) -> None:
    job = await rig.new_job(n=1)
    job = await rig.claim_and_step(job.id)
    rig.clock.advance(rig.steps.timings.max_generation_age + timedelta(seconds=1))
    job = await rig.claim_and_step(job.id)  # still running at the hub (gated), too old
    assert job.status is JobStatus.UNKNOWN
    assert await rig.spent_and_held() == (8, 0)  # the hub may yet charge: counted in full
    [(_, notice)] = rig.publisher.notices
    assert (notice.kind, notice.charged) == (NoticeKind.TIMED_OUT, 8)


async def test_a_job_found_mid_submission_is_never_sent_again(rig: Rig) -> None:
    job = await rig.new_job(n=1)
    await rig.jobs.update(job.id, None, status=JobStatus.SUBMITTING)  # a process died mid-POST
    job = await rig.claim_and_step(job.id)
    assert job.status is JobStatus.UNKNOWN and rig.hub.generations == {}
    assert await rig.spent_and_held() == (8, 0)
    [(_, notice)] = rig.publisher.notices
    assert notice.kind is NoticeKind.OUTCOME_UNKNOWN


async def test_a_crash_after_the_hub_accepted_is_given_up_from_the_row_as_it_is(rig: Rig) -> None:
    job = await rig.new_job(n=1)
    claimed = await rig.claim_and_step(job.id)  # submitted: the hub has it
    rig.clock.advance(seconds=1)
    [stale] = [j for j in await rig.jobs.claim_due(OWNER, 10, 60.0) if j.id == job.id]
    # The step crashed: the engine asks the steps to decide from the row, over and over.
    for _ in range(20):
        await rig.steps.crashed(stale, "boom")
        row = await rig.jobs.get(job.id)
        assert row is not None
        if row.is_terminal:
            break
        rig.clock.advance(seconds=await rig.due_in(row) + 0.01)
        [stale] = [j for j in await rig.jobs.claim_due(OWNER, 10, 60.0) if j.id == job.id]
    assert row.status is JobStatus.UNKNOWN and claimed.hub_generation_id == row.hub_generation_id
    assert await rig.spent_and_held() == (8, 0)  # never refunded once the hub had it


async def test_posting_retries_then_gives_up_with_the_charge_kept(rig: Rig) -> None:
    rig.gate.set()
    job = await rig.new_job(n=1)
    await rig.claim_and_step(job.id)
    await asyncio.wait_for(rig.finished.wait(), 5)
    rig.publisher.fail = PublishError("503 from Discord", permanent=False)
    rig.clock.advance(seconds=10)
    job = await rig.claim_and_step(job.id)
    assert job.status is JobStatus.SUCCEEDED and job.error_attempts == 1
    assert await rig.due_in(job) == pytest.approx(rig.steps.policy.error_delay(1))
    assert await rig.spent_and_held() == (8, 0)  # the hub charged when the images came

    rig.publisher.fail = PublishError("no access to the channel", permanent=True)
    rig.clock.advance(seconds=60)
    job = await rig.claim_and_step(job.id)
    assert job.status is JobStatus.FAILED and job.result_urls  # kept: /show can post it later
    assert await rig.spent_and_held() == (8, 0)
    [(_, notice)] = rig.publisher.notices
    assert (notice.kind, notice.charged, notice.refunded) == (NoticeKind.PUBLISH_FAILED, 8, 0)


async def test_a_server_without_a_key_is_refunded_before_anything_is_sent(rig: Rig) -> None:
    other = G + 1
    job = await rig.new_job(n=1, guild_id=other)
    job = await rig.claim_and_step(job.id)
    assert job.status is JobStatus.FAILED and rig.hub.generations == {}
    budget = await rig.quotas.ledger.budget(other, U, [])
    assert (budget.spent, budget.reserved) == (0, 0)
    [(_, notice)] = rig.publisher.notices
    assert (notice.kind, notice.refunded) == (NoticeKind.NO_KEY, 8)


async def test_the_status_is_edited_for_the_eta_only_when_the_estimate_moves_a_lot(rig: Rig) -> None:
    eta = rig.steps.tools.eta
    job = await rig.new_job(n=1)
    job = await rig.claim_and_step(job.id)  # submitted: the status shows the first estimate
    submitted = rig.clock()
    edits = len(rig.publisher.progress_shown)
    assert edits >= 1 and eta.finish(job, rig.clock()) == submitted + timedelta(seconds=30)  # 1K default

    async def poll_at(seconds: float) -> int:
        nonlocal job
        rig.clock.set(submitted + timedelta(seconds=seconds))
        await rig.jobs.update(job.id, None, next_poll_at=rig.clock())
        job = await rig.claim_and_step(job.id)
        return len(rig.publisher.progress_shown)

    edits = await poll_at(1)  # the hub's status may change once (queued → running)
    assert await poll_at(10) == edits  # same estimate: no edit
    assert await poll_at(29) == edits
    assert await poll_at(31) == edits + 1  # past it: now + 15 s, moved by 16 s of 0 left
    assert await poll_at(35) == edits + 1  # moved by 4 s: not worth an edit
    assert eta.finish(job, rig.clock()) == rig.clock() + timedelta(seconds=15)


async def test_a_kept_job_follows_a_new_schedule_only_when_it_polls_a_step_sooner(rig: Rig) -> None:
    """A job's next poll is chosen on its kind's schedule at its last poll. When what finished
    since moves that schedule a budget step (3 s) sooner or more, the job follows; a small shift
    would only cost a poll more, and the job keeps its time."""
    policy = PollPolicy(first=1.0, step=3.0, margin=0.2, min_samples=5, replace_every=5)
    engine = Engine(rig.steps.tools, policy=policy)  # not started: only what it keeps is looked at
    kind = "gpt-image-2:1K:1"
    for _ in range(5):
        policy.observe(kind, 30.0)  # this kind took 30 s so far
    sent = rig.clock()
    kept, other = [
        dataclasses.replace(job, hub_generation_id=f"gen-{job.id}", submitted_at=sent, poll_attempts=1)
        for job in (await rig.new_job(), await rig.new_job())
    ]
    delay = policy.next_delay(kind, 0.0, 1)
    assert delay > 25  # on that schedule, nothing before 30 s
    engine.hold(kept, delay)
    assert policy.take_replaced() == set()

    for _ in range(5):
        policy.observe(kind, 29.0)  # a small shift: placed again, the job keeps its time
    assert policy.schedule(kind) is not None
    engine.hold(other, delay)  # a step that keeps a job looks at the new schedules
    left = engine.due_in(kept.id)
    assert left is not None and left == pytest.approx(delay, abs=0.5)

    for _ in range(5):
        policy.observe(kind, 4.0)  # now some finish at 4 s: the job's next poll comes at 4 s
    assert policy.schedule(kind) is not None
    engine.hold(other, delay)
    left = engine.due_in(kept.id)
    assert left is not None and 3.0 < left < 5.0, left  # not before the budget allows (3.2 s)
    assert policy.take_replaced() == set()  # reported once


async def test_held_back_jobs_are_due_at_once_when_their_kind_is_let_go(rig: Rig) -> None:
    """A job past its kind's schedule is held back (polled 12 s apart). When one held back finishes,
    the hub is letting that kind go: the kept held-back jobs of the kind are due at once, and its
    young jobs keep their schedule."""
    policy = PollPolicy(first=1.0, step=3.0, margin=0.2, min_samples=5, overdue_step=12.0)
    engine = Engine(rig.steps.tools, policy=policy)  # not started: only what it keeps is looked at
    kind = "gpt-image-2:1K:1"
    for _ in range(5):
        policy.observe(kind, 3.0)
    now = rig.clock()
    old, young, other = [
        dataclasses.replace(job, hub_generation_id=f"gen-{job.id}", submitted_at=now - timedelta(seconds=age))
        for job, age in [(await rig.new_job(), 30.0), (await rig.new_job(), 1.0), (await rig.new_job(), 1.0)]
    ]
    old = dataclasses.replace(old, poll_attempts=3)
    held_back = policy.next_delay(kind, 30.0, 3, now.timestamp())
    assert held_back == pytest.approx(12.0)
    engine.hold(old, held_back)
    scheduled = policy.next_delay(kind, 1.0, 1, now.timestamp())
    engine.hold(young, scheduled)
    assert engine.due_in(old.id) == pytest.approx(12.0, abs=0.5)

    policy.finished(kind, 28.0, now.timestamp())  # one held back that long finished
    engine.hold(other, scheduled)  # a step that keeps a job looks at the kinds woken
    left = engine.due_in(old.id)
    assert left is not None and left <= 0.1, left  # at once: its budget allows it
    assert engine.due_in(young.id) == pytest.approx(scheduled, abs=0.5)  # not held back: as planned


async def test_a_lone_late_job_is_polled_at_the_budgets_pace(rig: Rig) -> None:
    """A late job alone is a slow one, not a crowd held up at the hub: no 12 s wait between its
    polls (a rare kind on a small server, or the first jobs after a start, which have no history)."""
    _, delay = await _polled_late(rig)
    assert delay <= rig.steps.policy.step


async def _polled_late(rig: Rig, *, status_moved: bool = False) -> tuple[Job, float]:
    """A new job, kept between steps, polled again 20 s after its submission (no history: late);
    what the steps keep it as, and its delay. `status_moved`: the hub's status changed since."""
    kept: list[tuple[Job, float]] = []
    steps = Steps(
        rig.steps.tools, rig.publisher, rig.steps.policy, on_hold=lambda job, delay: kept.append((job, delay))
    )
    job = await rig.new_job()
    claimed = {j.id: j for j in await rig.jobs.claim_due(OWNER, 10, 60.0)}
    await steps.step(claimed[job.id])  # submitted, kept
    rig.clock.advance(seconds=20)
    polled, _ = kept[-1]
    await steps.step(dataclasses.replace(polled, hub_status="an older status") if status_moved else polled)
    return kept[-1]


async def test_a_held_back_job_kept_in_memory_is_due_within_a_step_in_its_row(rig: Rig) -> None:
    """A held-back job waits 12 s between polls in the memory of the engine that keeps it. The row,
    written when the hub's status moves, says a budget step: a bot restarted after a crash knows
    nothing of that wait and polls the job soon (benchmarks.restart: the last job was polled again
    11.9 s after the spawn with the 12 s in the rows, 8.9 s with this)."""
    rig.steps.policy.crowd = 1  # a late job is held back alone (a crowd of one)
    held, delay = await _polled_late(rig, status_moved=True)  # no history: held back past 6 s
    assert delay == pytest.approx(rig.steps.policy.overdue_step)  # kept: polled again in 12 s
    assert held.next_poll_at == rig.clock() + timedelta(seconds=delay)
    row = await rig.jobs.get(held.id)
    assert row is not None and row.next_poll_at is not None
    assert (row.next_poll_at - rig.clock()).total_seconds() == pytest.approx(rig.steps.policy.step)
