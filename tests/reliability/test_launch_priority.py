"""Members waiting for a first answer go first: in a burst of launches the engine starts no new
steps (a burst of /imagine is answered before submissions and status edits), for a bounded time;
a trickle of launches does not hold it back."""

from __future__ import annotations

import asyncio

import pytest

from bot.jobs import JobStatus
from tests.bed import Bed


@pytest.mark.timings(launch_priority=600.0, burst_launches=1)
async def test_no_submission_starts_while_a_launch_is_under_way(rbed: Bed) -> None:
    engine = rbed.services.engine
    with engine.launching():  # another member's launch, still under way
        it = await rbed.imagine()  # this one is stored and answered meanwhile
        assert (await it.callback()).type == 4
        [job] = await rbed.services.jobs.list_by_status([JobStatus.PENDING_SUBMIT])
        assert f"#{job.id}" in (await it.original()).embeds[0]["footer"]["text"]
        created = asyncio.create_task(rbed.hub.wait_generation_created())
        done, _ = await asyncio.wait({created}, timeout=0.5)
        assert not done  # not submitted
        assert rbed.hub.generations == {}
        assert (await rbed.services.jobs.get(job.id)).status is JobStatus.PENDING_SUBMIT  # type: ignore[union-attr]
    # The last launch ended: the engine goes on at once.
    gen = await asyncio.wait_for(created, timeout=30)
    posted = await rbed.wait_job(job.id, JobStatus.POSTED)
    assert posted.hub_generation_id == gen.id
    assert posted.status_message_id is not None  # written with the submission
    assert len((await rbed.result_message(posted)).attachments) == 1


@pytest.mark.timings(launch_priority=0.05, burst_launches=1)
async def test_launches_hold_the_engine_back_only_briefly(rbed: Bed) -> None:
    with rbed.services.engine.launching():  # a launch that never ends (a stuck request)
        job = await rbed.job_of(await rbed.imagine())
        posted = await rbed.wait_job(job.id, JobStatus.POSTED)  # stepped all the same
    assert len((await rbed.result_message(posted)).attachments) == 1


@pytest.mark.timings(launch_priority=600.0, burst_launches=2)
async def test_fewer_launches_than_a_burst_do_not_hold_the_engine_back(rbed: Bed) -> None:
    with rbed.services.engine.launching():  # one other launch under way: not a burst
        job = await rbed.job_of(await rbed.imagine())
        posted = await rbed.wait_job(job.id, JobStatus.POSTED)
    assert len((await rbed.result_message(posted)).attachments) == 1
