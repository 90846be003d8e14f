"""Limits under races: simultaneous requests never pass a queue length.

The requests are dispatched together, so the bot checks them concurrently (on PostgreSQL over
several connections): only an atomic count-and-insert keeps the limit.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from bot.jobs import JobStatus
from tests.bed import Bed
from tests.fakediscord import FakeInteraction
from tests.fakediscord.models import FakeMember
from tests.reliability.conftest import assert_nothing_held, text_of

BOTH = pytest.mark.parametrize("bed_backend", ["sqlite", "postgres"], indirect=True)
COST = 8
BURST = 8


def decision(it: FakeInteraction) -> str | None:
    """"job <id>" when the request was accepted (its status message names the job), the text of
    the refusal (the ephemeral first answer, or the public or "thinking…" answer edited into it),
    or None while neither has come."""
    cb = it.callback_record
    if cb is not None and cb.ephemeral:
        return text_of(cb)
    for followup in it.followups:
        # The refusal that replaces a public "thinking…" answer: the original is deleted first.
        if followup.ephemeral or it.original_deleted:
            return text_of(followup)
    original = it.original_message
    if original is not None and not it.original_deleted:
        match = re.search(r"job #(\d+)", str(original.embeds))
        if match:
            return f"job {match.group(1)}"
        if "⚠️" in str(original.embeds):
            return text_of(original)
    return None


async def outcome(it: FakeInteraction, timeout: float = 15.0) -> str:
    """The request's `decision`, once it has come."""
    return await it.fake.wait_for(lambda: decision(it), timeout, what="the request's outcome")


async def burst(bed: Bed, members: list[FakeMember]) -> list[str]:
    dispatched = await asyncio.gather(
        *(bed.imagine(member=m, prompt=f"burst {i}") for i, m in enumerate(members))
    )
    return list(await asyncio.gather(*(outcome(it) for it in dispatched)))


async def running_job(bed: Bed) -> None:
    """One of alice's generations held at the hub: alice (and, at one per server, everyone) is at
    the concurrency limit, so new requests must wait in the queue."""
    bed.hub.set_hold(True)
    job = await bed.job_of(await bed.imagine(prompt="running"))
    await bed.wait_job(job.id, JobStatus.SUBMITTED, JobStatus.RUNNING)


@BOTH
async def test_simultaneous_requests_of_one_member_pass_a_queue_length_of_one_once(bed: Bed) -> None:
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_member=1, max_queued_per_member=1)
    await running_job(bed)

    outcomes = await burst(bed, [bed.d.alice] * BURST)
    accepted = [o for o in outcomes if o.startswith("job ")]
    refused = [o for o in outcomes if not o.startswith("job ")]
    assert len(accepted) == 1, outcomes
    assert all("waiting in the queue" in r for r in refused), refused
    assert await bed.services.jobs.count_queued(bed.guild_id, bed.d.alice.id) == 1
    assert len(await bed.services.jobs.list_for_member(bed.guild_id, bed.d.alice.id, 100)) == 2
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())
    assert budget.spent + budget.reserved == 2 * COST  # the refused ones hold nothing
    bed.hub.set_hold(False)
    for job in await bed.services.jobs.list_for_member(bed.guild_id, bed.d.alice.id, 100):
        await bed.wait_job(job.id, JobStatus.POSTED)
    await assert_nothing_held(bed)


@BOTH
async def test_simultaneous_requests_of_many_members_pass_a_server_queue_length_of_one_once(bed: Bed) -> None:
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_guild=1, max_queued_per_guild=1)
    await running_job(bed)
    members = [bed.d.guild.add_member(f"member{i}") for i in range(BURST)]

    outcomes = await burst(bed, members)
    accepted = [o for o in outcomes if o.startswith("job ")]
    refused = [o for o in outcomes if not o.startswith("job ")]
    assert len(accepted) == 1, outcomes
    assert all("queue is full" in r for r in refused), refused
    assert await bed.services.jobs.count_queued(bed.guild_id) == 1
    for member in members:
        budget = await bed.services.quotas.ledger.budget(bed.guild_id, member.id, ())
        jobs = await bed.services.jobs.list_for_member(bed.guild_id, member.id)
        assert budget.spent + budget.reserved == COST * len(jobs)
