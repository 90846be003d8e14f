"""A step that crashes on a database write: what the hub charged is never refunded.

The failing write is real: a trigger in the database (SQLite or PostgreSQL) refuses one specific
UPDATE of the job row, as a full disk or a lock held past every retry would (`failing_write`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from bot.db.models import JobRow
from bot.jobs import Job, JobStatus
from tests.bed import Bed
from tests.fakediscord import FakeInteraction
from tests.reliability.conftest import (
    assert_nothing_held,
    failing_write,
    hub_posts,
    ledger,
    result_messages,
    spent,
    text_of,
)

BOTH = pytest.mark.parametrize("bed_backend", ["sqlite", "postgres"], indirect=True)
COST = 8


async def queued_for_long(bed: Bed) -> tuple[Job, Job, FakeInteraction]:
    """Job A running (held at the hub) in a server allowing one at a time; job B queued behind it,
    made to look 40 minutes old (it waited that long)."""
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_guild=1)
    bed.hub.set_hold(True)
    first = await bed.job_of(await bed.imagine(member=bed.d.bob, prompt="the first"))
    first = await bed.wait_job(first.id, JobStatus.SUBMITTED, JobStatus.RUNNING)
    it = await bed.imagine(prompt="the second")
    second = await bed.job_of(it)
    assert second.status is JobStatus.QUEUED
    async with bed.services.db.transaction() as s:
        await s.execute(
            update(JobRow)
            .where(JobRow.id == second.id)
            .values(created_at=datetime.now(UTC) - timedelta(minutes=40))
        )
    return first, second, it


@BOTH
async def test_a_charged_generation_whose_next_write_fails_is_never_refunded(rbed: Bed) -> None:
    first, second, it = await queued_for_long(rbed)
    balance = rbed.hub.balance(rbed.key)
    # The first write after the hub accepted (and charged) the second job fails.
    recorded = f"NEW.id = {second.id} AND NEW.hub_generation_id IS NOT NULL AND OLD.hub_generation_id IS NULL"
    async with failing_write(rbed, "UPDATE", recorded):
        rbed.hub.complete(first.hub_generation_id or "")  # the slot frees: the second job is sent
        job = await rbed.wait_job(second.id, JobStatus.UNKNOWN, JobStatus.FAILED)
    assert hub_posts(rbed) == 2
    assert rbed.hub.balance(rbed.key) == balance - COST  # the hub charged it
    assert job.status is JobStatus.UNKNOWN  # not "failed": the hub may well have made it
    assert await spent(rbed) == COST  # the member's budget counts it: nothing refunded
    await assert_nothing_held(rbed)
    assert ("release", COST) not in [(k, abs(c)) for k, c in await ledger(rbed)]
    told = await it.original(predicate=lambda m: "not completed" in text_of(m))
    assert "returned" not in text_of(told)


@BOTH
async def test_the_give_up_window_counts_from_the_submission_not_the_wait_in_the_queue(rbed: Bed) -> None:
    """A job that waited 40 minutes in the queue, then hit one failed write on its first poll, is
    retried and delivered: it has been at the hub for seconds, not 30 minutes."""
    first, second, _ = await queued_for_long(rbed)
    # The first poll's write fails once (the retry counts an error, so it matches no more).
    first_poll = (
        f"NEW.id = {second.id} AND NEW.poll_attempts = 1 AND OLD.poll_attempts = 0 AND NEW.error_attempts = 0"
    )
    async with failing_write(rbed, "UPDATE", first_poll):
        rbed.hub.complete(first.hub_generation_id or "")
        sent = await rbed.wait_job(second.id, JobStatus.SUBMITTED, JobStatus.RUNNING)
        generation = sent.hub_generation_id or ""

        async def polled_again_or_ended() -> Job | None:
            job = await rbed.services.jobs.get(second.id)
            assert job is not None
            return job if job.is_terminal or rbed.hub.polls(generation) >= 2 else None

        job = await wait_until(rbed, polled_again_or_ended)
    assert not job.is_terminal, f"given up after one failed write: {job.status} {job.last_error}"
    rbed.hub.complete(generation)
    job = await rbed.wait_job(second.id, JobStatus.POSTED, JobStatus.UNKNOWN, JobStatus.FAILED)
    assert job.status is JobStatus.POSTED, job.last_error
    assert len(result_messages(rbed, job)) == 1
    assert await spent(rbed) == COST
    await assert_nothing_held(rbed)


async def wait_until(bed: Bed, check: Callable[[], Awaitable[Job | None]], timeout: float = 10.0) -> Job:
    """Wait, step by step of the scheduler, until `check` returns a job."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        step = asyncio.ensure_future(bed.services.engine.wait_step())
        try:
            if (found := await check()) is not None:
                return found
            if loop.time() > deadline:
                raise AssertionError("timed out waiting for the job")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(step, max(0.0, deadline - loop.time()))
        finally:
            step.cancel()
