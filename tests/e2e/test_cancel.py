"""The Cancel button — full refund before the hub, "already spent" after."""

from __future__ import annotations

import pytest

from bot.jobs import JobStatus
from bot.quotas import LedgerKind, Period
from tests.bed import Bed
from tests.e2e.queue_support import (
    FAST_POLLS,
    QUICK,
    custom_ids,
    status_message,
    text,
    wait_position,
)

pytestmark = QUICK


async def _one_running_one_queued(bed: Bed) -> tuple[int, int]:
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_guild=1)
    await bed.services.quotas.policies.set_default(bed.guild_id, 100, Period.DAY)
    bed.hub.set_hold(True)
    running = await bed.job_of(await bed.imagine(prompt="running"))
    await bed.hub.wait_generation_created(1)
    queued = await bed.job_of(await bed.imagine(prompt="waiting"))
    assert queued.status == JobStatus.QUEUED
    await wait_position(bed, queued, 1)
    return running.id, queued.id


async def test_cancel_a_queued_job_returns_every_credit(bed: Bed) -> None:
    running_id, queued_id = await _one_running_one_queued(bed)
    queued = await bed.services.jobs.get(queued_id)
    assert queued is not None
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())
    assert budget.reserved == 2 * queued.cost

    message = status_message(bed, queued)
    press = await bed.fake.press_button(message, f"imagine:cancel:{queued_id}", bed.d.alice)
    cb = await press.callback()
    assert cb.type == 7 and not cb.ephemeral  # the status message itself now says so
    assert "Generation cancelled" in text(message) and f"{queued.cost} credits were returned" in text(message)
    assert custom_ids(message) == []

    cancelled = await bed.services.jobs.get(queued_id)
    assert cancelled is not None and cancelled.status == JobStatus.CANCELLED
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())
    assert (budget.reserved, budget.spent, budget.remaining) == (queued.cost, 0, 100 - queued.cost)
    ledger = await bed.services.quotas.reports.recent(bed.guild_id, bed.d.alice.id, 100)
    mine = [e for e in ledger if e.job_id == queued_id and e.kind == LedgerKind.RELEASE]
    assert [e.credits for e in mine] == [queued.cost]

    # The cancelled job never reaches the hub, even once the slot frees.
    generation = next(iter(bed.hub.generations.values()))
    bed.hub.complete(generation.id)
    await bed.wait_job(running_id, JobStatus.POSTED)
    assert len(bed.hub.requests_to("/api/v1/images/generations", "POST")) == 1
    assert await bed.services.jobs.count_queued(bed.guild_id) == 0


async def test_only_the_author_or_a_moderator_may_cancel(bed: Bed) -> None:
    _, queued_id = await _one_running_one_queued(bed)
    queued = await bed.services.jobs.get(queued_id)
    assert queued is not None
    message = status_message(bed, queued)
    refused = await (
        await bed.fake.press_button(message, f"imagine:cancel:{queued_id}", bed.d.bob)
    ).callback()
    assert refused.ephemeral and "Only the member who asked" in text(refused)
    still = await bed.services.jobs.get(queued_id)
    assert still is not None and still.status == JobStatus.QUEUED

    press = await bed.fake.press_button(message, f"imagine:cancel:{queued_id}", bed.d.moderator)
    await press.callback()
    assert f"by <@{bed.d.moderator.id}>" in text(message)
    done = await bed.services.jobs.get(queued_id)
    assert done is not None and done.status == JobStatus.CANCELLED


@FAST_POLLS
async def test_cancel_after_submission_says_the_credits_are_spent(bed: Bed) -> None:
    bed.hub.set_hold(True)
    job = await bed.job_of(await bed.imagine(prompt="already at the hub"))
    generation = await bed.hub.wait_generation_created(1)
    await bed.wait_job(job.id, JobStatus.SUBMITTED, JobStatus.RUNNING)
    message = status_message(bed, job)
    assert custom_ids(message) == [f"imagine:cancel:{job.id}"]

    press = await bed.fake.press_button(message, f"imagine:cancel:{job.id}", bed.d.alice)
    cb = await press.callback()
    assert cb.type == 7  # the button is taken off the status message
    notice = await press.followup()
    assert notice.ephemeral and "credits are spent" in str(notice.embeds)
    await bed.fake.wait_for(lambda: custom_ids(message) == [], what="the Cancel button removed")

    bed.hub.complete(generation.id)
    done = await bed.wait_job(job.id, JobStatus.POSTED)
    assert done.charged_credits == job.cost
    assert (await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())).spent == job.cost


@FAST_POLLS
async def test_a_cancel_racing_the_scheduler_is_safe(bed: Bed) -> None:
    """A job already claimed by the scheduler (pending_submit, leased) is cancelled: the worker
    loses its lease and never submits it."""
    await bed.services.engine.stop()  # nobody claims while the test takes the lease by hand
    bed.hub.set_hold(True)
    job = await bed.job_of(await bed.imagine(prompt="race"))
    assert job.status == JobStatus.PENDING_SUBMIT
    (claimed,) = await bed.services.jobs.claim_due("another-worker", 1, 60)
    assert claimed.id == job.id
    press = await bed.fake.press_button(status_message(bed, job), f"imagine:cancel:{job.id}", bed.d.alice)
    await press.callback()
    cancelled = await bed.services.jobs.get(job.id)
    assert cancelled is not None and cancelled.status == JobStatus.CANCELLED and cancelled.lease_owner is None
    from bot.jobs import LeaseLost

    with pytest.raises(LeaseLost):
        await bed.services.jobs.update(job.id, "another-worker", status=JobStatus.SUBMITTING)
    assert bed.hub.requests_to("/api/v1/images/generations", "POST") == []
    assert (await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())).reserved == 0
