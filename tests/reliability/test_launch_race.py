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
from tests.databases import statements_to
from tests.reliability.conftest import ledger, reservations

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


@BOTH
@pytest.mark.timeout(240)
async def test_concurrent_launches_are_stored_together_each_with_its_own_credits(bed: Bed) -> None:
    """200 launches at once, all within the limits: a group's launches go to the database in a
    few statements (not one INSERT each), and each job still holds exactly its own reservation."""
    services = bed.services
    await services.quotas.policies.set_default(bed.guild_id, 10 * COST)
    await services.guilds.update(bed.guild_id, max_concurrent_per_guild=200, max_concurrent_per_member=10)
    bed.hub.set_hold(True)
    members = [bed.d.guild.add_member(f"together{i}") for i in range(100)]
    with statements_to(services.db, "INSERT", "jobs") as job_inserts:
        plans = [
            await services.imagine.plan(
                ImagineRequest(
                    guild_id=bed.guild_id, channel_id=bed.d.images, user_id=m.id, role_ids=(), prompt=f"t{i}"
                )
            )
            for i in range(2)
            for m in members
        ]
        jobs = await asyncio.gather(
            *(services.imagine.start(p, [], application_id=None, interaction_token=None) for p in plans)
        )

    assert sorted(j.user_id for j in jobs) == sorted(p.request.user_id for p in plans)
    assert all(j.status is JobStatus.PENDING_SUBMIT for j in jobs)  # within the limits: started at once
    assert 1 <= len(job_inserts) <= len(jobs) // 4, len(job_inserts)
    rows = await reservations(bed)
    expected = sorted((j.id, j.user_id, COST) for j in jobs)
    assert sorted((r.job_id, r.user_id, r.credits) for r in rows) == expected
    assert sorted(await ledger(bed)) == [("reserve", -COST)] * len(jobs)
    for member in members:
        budget = await services.quotas.ledger.budget(bed.guild_id, member.id, ())
        assert budget.reserved == 2 * COST
    bed.hub.set_hold(False)
