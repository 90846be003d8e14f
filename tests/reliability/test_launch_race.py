"""Launches under a large race: 1,000 at once, each one transaction shared with its neighbours.

Group commit puts concurrent launches (reservation, queue admission, job, promotion) into one
transaction, each in its own savepoint: a refusal must roll back that launch alone, and the
budgets and the queue lengths must still hold exactly, as they do one transaction at a time.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from bot.imagine import ImagineRequest
from bot.jobs import ACTIVE, JobStatus
from bot.refusals import Refusal, RefusalCode
from tests.bed import Bed
from tests.reliability.conftest import reservations

BOTH = pytest.mark.parametrize("bed_backend", ["sqlite", "postgres"], indirect=True)
COST = 8
MEMBERS = 20
ATTEMPTS = 50  # per member: 1,000 launches at once
BUDGET_JOBS = 2  # each member's budget fits two generations: 40 in all
PER_GUILD = 5
QUEUE = 30  # the server takes 5 running + 30 waiting: 35, fewer than the budgets allow


@BOTH
@pytest.mark.timeout(240)
async def test_1000_concurrent_launches_keep_budgets_and_queue_lengths_exact(bed: Bed) -> None:
    services = bed.services
    await services.quotas.policies.set_default(bed.guild_id, BUDGET_JOBS * COST)
    await services.guilds.update(
        bed.guild_id, max_concurrent_per_guild=PER_GUILD, max_queued_per_guild=QUEUE, max_queued_per_member=5
    )
    bed.hub.set_hold(True)
    members = [bed.d.guild.add_member(f"racer{i}") for i in range(MEMBERS)]

    async def launch(member_id: int, i: int) -> str:
        request = ImagineRequest(
            guild_id=bed.guild_id, channel_id=bed.d.images, user_id=member_id, role_ids=(), prompt=f"r{i}"
        )
        try:
            plan = await services.imagine.plan(request)
            job = await services.imagine.start(plan, [], application_id=None, interaction_token=None)
        except Refusal as refusal:
            return refusal.code.value
        return f"job {job.id}"

    outcomes = await asyncio.gather(*(launch(m.id, i) for i in range(ATTEMPTS) for m in members))

    accepted = [o for o in outcomes if o.startswith("job ")]
    refusals = Counter(o for o in outcomes if not o.startswith("job "))
    assert len(accepted) == PER_GUILD + QUEUE, refusals
    assert set(refusals) <= {RefusalCode.QUOTA_EXCEEDED.value, RefusalCode.QUEUE_FULL_SERVER.value}, refusals
    jobs = await services.jobs.list_by_status(list(JobStatus), limit=2000)
    assert sorted(f"job {j.id}" for j in jobs) == sorted(accepted)
    assert sum(j.status is JobStatus.QUEUED for j in jobs) == QUEUE
    assert sum(j.status in ACTIVE and j.status is not JobStatus.QUEUED for j in jobs) == PER_GUILD
    per_member = Counter(j.user_id for j in jobs)
    assert max(per_member.values()) <= BUDGET_JOBS
    for member in members:
        budget = await services.quotas.ledger.budget(bed.guild_id, member.id, ())
        assert budget.spent + budget.reserved == COST * per_member[member.id]
    # Every reservation pays for exactly one stored job: refused launches left none behind.
    rows = await reservations(bed)
    assert sorted(r.job_id for r in rows if r.job_id is not None) == sorted(j.id for j in jobs)
    assert len(rows) == len(jobs)
    bed.hub.set_hold(False)
