"""The step machine: one claimed job moved forward by one state.

`pending_submit` → submit to the hub → `submitted`/`running` → poll (adaptive, `PollPolicy`) →
`succeeded` (charged, settled) → download and post through the `Publisher` → `posted`. Every
decision is written to the job's row before the next side effect, so a restart resumes exactly
where the last process stopped. A job that ends any other way goes through `end`: finish the
row, settle its credits (`bot.engine.settlement`), tell the member. The loop that claims jobs
and runs these steps is `bot.engine.loop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot import metrics
from bot.alerts import BalanceWatcher
from bot.clock import Clock, utcnow
from bot.engine.images import download_images
from bot.engine.outcomes import Notice, NoticeKind, Publisher, PublishError, Result, ResultImage
from bot.engine.policy import PollPolicy, generation_seconds, policy_key
from bot.engine.settlement import Charge, settle
from bot.eta import Estimator
from bot.hub import (
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
from bot.jobs import Job, JobStatus
from bot.logs import kv
from bot.quotas import Ledger
from bot.timings import Timings

log = logging.getLogger(__name__)

MAX_PUBLISH_ATTEMPTS = 6
# A step that keeps crashing for an unexpected reason is given up after this many tries.
MAX_STEP_ERRORS = 10


class ReferenceSource(Protocol):
    async def load(self, job: Job) -> list[Reference]:
        """The job's reference images as bytes (from memory, or downloaded again)."""

    def discard(self, job_id: int) -> None:
        """Forget what is held for a job that ended."""


class HubPool(Protocol):
    """Hub clients by job: the key that pays for it (a member's own, the server's, or the
    operator's fallback key)."""

    async def for_job(self, job: Job) -> HubClient | None: ...

    def downloader(self) -> HubClient:
        """A client without a key for image URLs from the hub's answers (untrusted: guarded)."""
        ...


@dataclass(frozen=True)
class Tools:
    """What the steps work with, apart from the publisher (which comes when the engine starts)."""

    jobs: JobStore
    ledger: Ledger
    hubs: HubPool
    references: ReferenceSource
    balance: BalanceWatcher
    owner: str
    timings: Timings
    clock: Clock = utcnow
    #: learned generation times: the expected finish on the status message (`bot.eta`)
    eta: Estimator = field(default_factory=Estimator)


def _nothing(*_: object) -> None:
    return None


class Steps:
    """See the module docstring. `on_due(delay)` is told when a job is handed back to be due in
    `delay` seconds, `on_delivery(job)` when a step starts posting a result (it leaves the poll
    places for the delivery places) and `on_free()` when a job ends (its concurrency slot is free): the loop
    wakes for them. With `on_hold(job, delay)` (the engine's loop) a job between steps is not
    handed back but kept: its lease stays this process's, the loop steps it again in `delay`
    seconds from the snapshot it is given, and a poll that changed nothing but the attempt count
    writes nothing (after a crash the job is due at once; the lease keeps other processes off)."""

    def __init__(
        self,
        tools: Tools,
        publisher: Publisher,
        policy: PollPolicy,
        *,
        on_due: Callable[[float], None] = _nothing,
        on_free: Callable[[], None] = _nothing,
        on_delivery: Callable[[int], None] = _nothing,
        on_hold: Callable[[Job, float], None] | None = None,
    ) -> None:
        self.tools = tools
        self.jobs = tools.jobs
        self.owner = tools.owner
        self.timings = tools.timings
        self.clock = tools.clock
        self.publisher = publisher
        self.policy = policy
        self._on_due = on_due
        self._on_free = on_free
        self._on_delivery = on_delivery
        self._on_hold = on_hold

    async def step(self, job: Job) -> None:
        """Move one claimed job forward by one state."""
        if job.status == JobStatus.PENDING_SUBMIT:
            await self._submit(job)
        elif job.status in (JobStatus.SUBMITTED, JobStatus.RUNNING):
            await self._poll(job)
        elif job.status == JobStatus.SUCCEEDED:
            await self._deliver(job)
        elif job.status == JobStatus.SUBMITTING:
            # Only reachable if a lease expired mid-submission in another process.
            await self.end(
                job,
                JobStatus.UNKNOWN,
                NoticeKind.OUTCOME_UNKNOWN,
                Charge.IN_FULL,
                last_error="submission outcome unknown",
            )

    # -- ending a job ----------------------------------------------------------------------------

    async def end(
        self,
        job: Job,
        status: JobStatus,
        kind: NoticeKind,
        charge: Charge,
        *,
        detail: str = "",
        **fields: Any,
    ) -> None:
        """Finish the job's row as `status`, settle its credits by `charge`, tell the member."""
        await self._finish(job, status, **fields)
        refunded, charged = await settle(self.tools.ledger, job, charge)
        await self._notify(job, Notice(kind, detail, refunded=refunded, charged=charged))

    async def recovered(self, job: Job) -> None:
        """A job a restart found mid-submission, already `unknown` in its row: counted in full
        (the hub may have it) and the member told. A failure to settle is left to `reconcile`."""
        with contextlib.suppress(Exception):
            await settle(self.tools.ledger, job, Charge.IN_FULL)
        await self._notify(job, Notice(NoticeKind.OUTCOME_UNKNOWN, charged=job.cost))

    async def crashed(self, job: Job, reason: str) -> None:
        """A step failed for an unexpected reason: back off and try again, or give up.

        Decided from the row as it is now: the step may have moved it (e.g. to `submitting`, or
        submitted with the hub's charge) before the write that failed."""
        current = await self.jobs.get(job.id)
        if current is None or current.is_terminal or current.lease_owner != self.owner:
            return  # finished, cancelled or taken over meanwhile: nothing of ours to end
        errors = current.error_attempts + 1
        if errors >= MAX_STEP_ERRORS or current.status is JobStatus.SUBMITTING or self._too_old(current):
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
            await self.end(job, JobStatus.FAILED, NoticeKind.HUB_FAILED, Charge.NOTHING, last_error=reason)
        elif job.status == JobStatus.SUCCEEDED:  # charged and settled; the images could not be posted
            await self.end(
                job, JobStatus.FAILED, NoticeKind.PUBLISH_FAILED, Charge.AS_CHARGED, last_error=reason
            )
        else:  # the hub may have it: count it, as for an unknown outcome
            kind = NoticeKind.OUTCOME_UNKNOWN if job.status is JobStatus.SUBMITTING else NoticeKind.TIMED_OUT
            await self.end(job, JobStatus.UNKNOWN, kind, Charge.IN_FULL, last_error=reason)

    # -- the steps -------------------------------------------------------------------------------

    async def _submit(self, job: Job) -> None:
        hub = await self.tools.hubs.for_job(job)
        if hub is None:
            await self.end(job, JobStatus.FAILED, NoticeKind.NO_KEY, Charge.NOTHING)
            return
        try:
            references = await self.tools.references.load(job)
        except Exception as exc:
            log.warning(kv("job.references_unavailable", job=job.id, error=type(exc).__name__))
            await self.end(job, JobStatus.FAILED, NoticeKind.REFERENCES_GONE, Charge.NOTHING)
            return
        # (A new job's status message id comes with this write: see `Engine.launched`.)
        shown: dict[str, Any] = {}
        if job.status_message_id is not None:
            shown["status_message_id"] = job.status_message_id
        job = await self.jobs.update(job.id, self.owner, status=JobStatus.SUBMITTING, **shown)
        p = job.params
        started = time.monotonic()
        try:
            gen = await hub.generate(
                model=p.model, prompt=p.prompt, size=p.size, quality=p.quality, n=p.n, references=references
            )
        except OutcomeUnknown as exc:
            log.warning(kv("job.outcome_unknown", job=job.id, guild=job.guild_id, error=exc.code))
            await self.end(
                job, JobStatus.UNKNOWN, NoticeKind.OUTCOME_UNKNOWN, Charge.IN_FULL, last_error=str(exc)[:500]
            )
            return
        except HubError as exc:
            kind, detail = _submit_error(exc)
            await self.end(
                job, JobStatus.FAILED, kind, Charge.NOTHING, detail=detail, last_error=str(exc)[:500]
            )
            return
        finally:
            metrics.HUB_LATENCY.labels("generate").observe(time.monotonic() - started)
        await self._watch_balance(job, gen)
        job = dataclasses.replace(
            job,
            status=_status_of(gen),
            hub_generation_id=gen.id,
            hub_status=gen.status,
            submitted_at=self.clock(),
        )
        submitted: dict[str, Any] = {
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
        await self._release(job, self.policy.next_delay(policy_key(job), 0.0, 0), **submitted)
        await self._progress(job)

    async def _poll(self, job: Job) -> None:
        hub = await self.tools.hubs.for_job(job)
        submitted_at = job.submitted_at or job.created_at
        elapsed = (self.clock() - submitted_at).total_seconds()
        if hub is None or job.hub_generation_id is None:
            await self.end(
                job, JobStatus.UNKNOWN, NoticeKind.NO_KEY, Charge.IN_FULL, last_error="no key to poll with"
            )
            return
        metrics.POLLS.inc()
        too_old = elapsed > self.timings.max_generation_age.total_seconds()
        try:
            gen = await hub.get_generation(job.hub_generation_id)
        except (HubUnavailable, NotFound, InvalidApiKey, ExpiredApiKey, HubError) as exc:
            if too_old:
                await self.end(
                    job, JobStatus.UNKNOWN, NoticeKind.TIMED_OUT, Charge.IN_FULL, last_error=str(exc)[:500]
                )
                return
            errors = job.error_attempts + 1
            log.info(kv("job.poll_error", job=job.id, error=type(exc).__name__, attempt=errors))
            job = await self.jobs.update(job.id, self.owner, error_attempts=errors, last_error=str(exc)[:500])
            await self._release(job, self.policy.error_delay(errors))
            return
        await self._watch_balance(job, gen)
        if gen.is_finished:
            took = generation_seconds(gen) or elapsed
            kind = policy_key(job)
            self.policy.observe(kind, took)
            self.policy.finished(kind, took, self.clock().timestamp())
            if gen.succeeded:
                self.tools.eta.observe(job.params.model, job.params.tier, took)
            await self._on_finished(job, gen)
            return
        if too_old:
            await self.end(
                job,
                JobStatus.UNKNOWN,
                NoticeKind.TIMED_OUT,
                Charge.IN_FULL,
                hub_status=gen.status,
                last_error="timed out",
            )
            return
        attempts = job.poll_attempts + 1
        delay = self.policy.next_delay(
            policy_key(job), elapsed, attempts, self.clock().timestamp(), job=job.id
        )
        progress = {"status": _status_of(gen), "hub_status": gen.status, "poll_attempts": attempts}
        # One write when the hub's status moved (kept jobs: none otherwise), then show it.
        changed = gen.status != job.hub_status or _status_of(gen) != job.status
        await self._release(job, delay, changed=changed, **progress)
        shown = dataclasses.replace(
            job, status=_status_of(gen), hub_status=gen.status, poll_attempts=attempts
        )
        # A changed status, or an expected finish that moved by a lot (never for small changes).
        if gen.status != job.hub_status or self.tools.eta.moved(shown, self.clock()):
            await self._progress(shown)

    async def _on_finished(self, job: Job, gen: Generation) -> None:
        if not gen.succeeded or not gen.images:
            await self.end(
                job,
                JobStatus.FAILED,
                NoticeKind.HUB_FAILED,
                Charge.NOTHING,
                detail=gen.error or "",
                hub_status=gen.status,
                last_error=gen.error or gen.status,
            )
            return
        delivered = len(gen.images)
        charged = gen.usage.credits if gen.usage.credits is not None else job.cost * delivered // job.params.n
        charged = max(0, min(charged, job.cost))
        ledger = self.tools.ledger

        async def settle_charge(s: AsyncSession, done: Job) -> None:
            if done.reservation_id is not None:
                await ledger.settle_in(s, done.reservation_id, charged)

        # The images are fetched while the outcome is written: a download changes nothing, and
        # nothing is posted before the write commits (a crash in between polls the job again).
        urls = [image.url for image in gen.images]
        self._on_delivery(job.id)  # from here the step holds a delivery's place, not a poll's
        fetching = asyncio.ensure_future(self._download(dataclasses.replace(job, result_urls=urls)))
        try:
            # Succeeded and charged in one write: a crash can't leave one without the other.
            job = await self.jobs.update(
                job.id,
                self.owner,
                also=settle_charge,
                status=JobStatus.SUCCEEDED,
                error_attempts=0,  # from here on it counts posting attempts only
                hub_status=gen.status,
                result_urls=urls,
                delivered_images=delivered,
                charged_credits=charged,
            )
        except BaseException:
            fetching.cancel()
            raise
        metrics.CREDITS_SPENT.inc(charged)
        await self._deliver(job, fetching)

    def _download(self, job: Job) -> Awaitable[list[ResultImage]]:
        return download_images(self.tools.hubs.downloader(), job, self.timings)

    async def _deliver(self, job: Job, fetching: Awaitable[list[ResultImage]] | None = None) -> None:
        """Download the images (unless `fetching` already does) and post them; retried on
        transient Discord errors."""
        self._on_delivery(job.id)  # from here the step holds a delivery's place, not a poll's
        images = await (fetching or self._download(job))
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
            await self.end(
                job,
                JobStatus.FAILED,
                NoticeKind.DOWNLOAD_FAILED,
                Charge.AS_CHARGED,
                last_error="download failed: no image could be fetched",
            )
            return
        try:
            message_ids = await self.publisher.result(job, result)
        except PublishError as exc:
            attempts = job.error_attempts + 1
            if exc.permanent or attempts >= MAX_PUBLISH_ATTEMPTS:
                log.warning(kv("job.publish_abandoned", job=job.id, guild=job.guild_id, reason=str(exc)))
                # The member paid for these: say so (where Discord still lets us say anything).
                await self.end(
                    job,
                    JobStatus.FAILED,
                    NoticeKind.PUBLISH_FAILED,
                    Charge.AS_CHARGED,
                    detail=str(exc)[:200],
                    last_error=f"publish: {exc}"[:500],
                    error_attempts=attempts,
                )
                return
            job = await self.jobs.update(
                job.id, self.owner, error_attempts=attempts, last_error=str(exc)[:500]
            )
            await self._release(job, self.policy.error_delay(attempts))
            return
        self.tools.eta.forget(job.id)
        if await self.jobs.mark_posted(job.id, self.owner, message_ids):
            self._on_free()  # a concurrency slot is free: queued jobs may start
            metrics.GENERATIONS.labels(JobStatus.POSTED.value).inc()
            log.info(kv("job.posted", job=job.id, guild=job.guild_id, messages=len(message_ids)))

    # -- rows, the balance, the publisher ---------------------------------------------------------

    async def _release(self, job: Job, delay: float, *, changed: bool = True, **fields: Any) -> None:
        """Due again in `delay` seconds, with `fields` written in the same statement: handed back,
        or kept by the engine (`on_hold`; then nothing is written unless `changed`)."""
        at = self.clock() + timedelta(seconds=delay)
        if self._on_hold is None:
            await self.jobs.hand_back(job.id, self.owner, at, **fields)
            self._on_due(delay)
            return
        if changed:
            # The row's due time is for a process that takes the job over (this one keeps its own
            # in memory): within a budget step, not after a held-back job's long wait (`PollPolicy`),
            # so that a restarted bot, knowing nothing of what it was waiting for, polls soon.
            soon = self.clock() + timedelta(seconds=min(delay, self.policy.step))
            await self.jobs.hand_back(job.id, self.owner, soon, keep=True, **fields)
        self._on_hold(dataclasses.replace(job, next_poll_at=at, **fields), delay)

    async def _finish(self, job: Job, status: JobStatus, **fields: Any) -> Job:
        metrics.GENERATIONS.labels(status.value).inc()
        self.tools.references.discard(job.id)
        self.tools.eta.forget(job.id)
        finished = await self.jobs.update(
            job.id, self.owner, status=status, finished_at=self.clock(), interaction_token=None, **fields
        )
        self._on_free()  # a concurrency slot is free: queued jobs may start
        return finished

    async def _watch_balance(self, job: Job, gen: Generation) -> None:
        """Every generation the hub returns carries the server's balance: the low-balance alert.
        (A member's own key carries the member's balance: none of the server's business.)"""
        if job.key_owner is not None:
            return
        alert = await self.tools.balance.observe_generation(job.guild_id, gen)
        if alert is None:
            return
        try:
            await self.publisher.low_balance(job.guild_id, alert.credits, alert.threshold)
        except Exception as exc:
            log.warning(kv("alerts.notify_failed", guild=job.guild_id, error=type(exc).__name__))

    async def _notify(self, job: Job, notice: Notice) -> None:
        try:
            await self.publisher.notice(job, notice)
        except Exception as exc:
            log.warning(kv("job.notice_failed", job=job.id, kind=notice.kind, error=type(exc).__name__))

    async def _progress(self, job: Job) -> None:
        # What the status message shows from now on: the next estimate is compared with it.
        self.tools.eta.shown(job.id, self.tools.eta.finish(job, self.clock()))
        try:
            await self.publisher.progress(job)
        except Exception as exc:
            log.info(kv("job.progress_failed", job=job.id, error=type(exc).__name__))


def _status_of(gen: Generation) -> JobStatus:
    if gen.status == "queued":
        return JobStatus.SUBMITTED
    return JobStatus.RUNNING


def _submit_error(exc: HubError) -> tuple[NoticeKind, str]:
    """What the member is told when the hub refused a submission: the kind, and the hub's words."""
    if isinstance(exc, HubUnavailable):
        return NoticeKind.HUB_UNAVAILABLE, ""
    if isinstance(exc, InsufficientCredits):
        return NoticeKind.INSUFFICIENT_CREDITS, ""
    if isinstance(exc, MissingApiKey | InvalidApiKey | ExpiredApiKey):
        return NoticeKind.BAD_KEY, ""
    if isinstance(exc, InvalidRequest):
        return NoticeKind.INVALID_REQUEST, exc.message
    return NoticeKind.HUB_FAILED, exc.message
