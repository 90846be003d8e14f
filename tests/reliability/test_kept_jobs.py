"""Jobs the engine keeps between steps: polled with no claim and, when nothing changed, no write;
taken back only while still ours and unfinished; let go on a clean stop; and a success written
together with its charge."""

from __future__ import annotations

import pytest

from bot.hub.emulator import EmulatorState
from bot.jobs import JobParams, JobStatus
from tests.bed import Bed, open_bed, timings_for
from tests.fakediscord import FakeDiscord
from tests.reliability.conftest import FAST, failing_write, spent

PARAMS = JobParams(
    model="gpt-image-2", prompt="p", aspect="1:1", tier="1K", quality="auto", n=1, size="1024x1024"
)


async def test_polls_of_a_kept_job_claim_nothing_and_write_nothing(rbed: Bed) -> None:
    rbed.hub.set_hold(True)  # the generation stays running until completed
    job = await rbed.job_of(await rbed.imagine())
    gen = await rbed.hub.wait_generation_created()
    await rbed.wait_job(job.id, JobStatus.RUNNING)  # the hub's status moved: written once
    polls = await rbed.hub.wait_polls(gen.id, rbed.hub.polls(gen.id) + 1)
    db = rbed.services.db
    writes, commits = db.writes, db.commits
    await rbed.hub.wait_polls(gen.id, polls + 4)
    assert (db.writes, db.commits) == (writes, commits)  # four polls, no claim, no hand-back
    row = await rbed.services.jobs.get(job.id)
    assert row is not None and row.lease_owner == rbed.services.engine.owner  # kept, still leased
    assert row.status is JobStatus.RUNNING and row.status_message_id is not None

    rbed.hub.complete(gen.id)
    posted = await rbed.wait_job(job.id, JobStatus.POSTED)
    assert posted.lease_owner is None
    assert len((await rbed.result_message(posted)).attachments) == 1


async def test_a_kept_job_finished_from_outside_is_not_polled_again(rbed: Bed) -> None:
    rbed.hub.set_hold(True)
    job = await rbed.job_of(await rbed.imagine())
    gen = await rbed.hub.wait_generation_created()
    await rbed.hub.wait_polls(gen.id, 2)
    # Taken away while kept (as `update_if` to a final status does: the lease goes with it).
    taken = await rbed.services.jobs.update_if(
        job.id, [JobStatus.RUNNING, JobStatus.SUBMITTED], status=JobStatus.CANCELLED
    )
    assert taken is not None
    polls = rbed.hub.polls(gen.id)
    # Another job, polled on the same schedule, goes all the way while the first is not stepped.
    rbed.hub.set_hold(False)
    other = await rbed.job_of(await rbed.imagine())
    other = await rbed.wait_job(other.id, JobStatus.POSTED)
    other_gen = rbed.hub.generations[other.hub_generation_id or ""]
    assert other_gen.polls >= 1
    assert rbed.hub.polls(gen.id) == polls
    assert (await rbed.services.jobs.get(job.id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]


async def test_a_clean_stop_lets_go_of_kept_jobs(rbed: Bed) -> None:
    rbed.hub.set_hold(True)
    job = await rbed.job_of(await rbed.imagine())
    gen = await rbed.hub.wait_generation_created()
    await rbed.hub.wait_polls(gen.id, 2)
    await rbed.services.engine.stop()
    row = await rbed.services.jobs.get(job.id)
    assert row is not None and row.status is JobStatus.RUNNING
    assert row.lease_owner is None and row.lease_until is None  # due at once for whoever runs next


async def test_a_success_and_its_charge_are_one_write(rbed: Bed) -> None:
    rbed.hub.set_hold(True)
    job = await rbed.job_of(await rbed.imagine())
    gen = await rbed.hub.wait_generation_created()
    await rbed.hub.wait_polls(gen.id, 2)
    held = await spent(rbed)
    # The ledger row of the charge can't be written: the success is not written either.
    async with failing_write(rbed, "INSERT", "1 = 1", table="quota_ledger"):
        rbed.hub.complete(gen.id)
        await rbed.hub.wait_polls(gen.id, rbed.hub.polls(gen.id) + 1)
        await rbed.services.engine.wait_step()
        row = await rbed.services.jobs.get(job.id)
        assert row is not None and row.status is JobStatus.RUNNING and row.charged_credits is None
        assert await spent(rbed) == held
    posted = await rbed.wait_job(job.id, JobStatus.POSTED, timeout=20)
    assert posted.charged_credits is not None and await spent(rbed) == posted.charged_credits


async def test_a_job_nobody_stepped_yet_is_not_starved_by_kept_ones(
    fake_discord: FakeDiscord,
    hub: tuple[str, EmulatorState],
    bed_database_url: str,
    request: pytest.FixtureRequest,
) -> None:
    """One engine place; five kept jobs due again every 0.1 s while each poll takes 0.05 s, so some
    kept job is always due. A job stored meanwhile (as after a restart, or released by another
    process) is still claimed and submitted at the next pass."""
    settings = {"MAX_CONCURRENT_POLLS": "1"}
    async with open_bed(fake_discord, hub, bed_database_url, timings_for(request, FAST), settings) as bed:
        bed.hub.set_hold(True)
        bed.hub.slow(0.05)
        d = bed.d

        async def store() -> int:
            job = await bed.services.jobs.create(
                guild_id=d.guild.id, channel_id=d.images, user_id=d.alice.id, params=PARAMS, cost=0
            )
            bed.services.engine.wake()
            return job.id

        for _ in range(5):
            await store()
        await bed.hub.wait_generation_created(5)
        for gen in list(bed.hub.generations.values()):
            await bed.hub.wait_polls(gen.id, 2)  # all five kept, and polled in turn
        late = await store()
        created = await bed.hub.wait_generation_created(6, within=5.0)
        row = await bed.wait_job(late, JobStatus.SUBMITTED, JobStatus.RUNNING)
        assert row.hub_generation_id == created.id
