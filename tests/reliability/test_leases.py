"""A slow step keeps its job: no second copy of it runs, however short the lease; and
reservations a crash left held are settled from their job's final state."""

from __future__ import annotations

import pytest

from bot.jobs import JobParams, JobStatus
from tests.bed import Bed
from tests.reliability.conftest import assert_nothing_held, result_messages, spent

PARAMS = JobParams(
    model="gpt-image-2", prompt="p", aspect="1:1", tier="1K", quality="auto", n=1, size="1024x1024"
)


# A lease far shorter than the slow download below.
@pytest.mark.timings(download_timeout=5.0, lease_seconds=0.3)
async def test_a_step_slower_than_the_lease_is_not_run_twice(rbed: Bed) -> None:
    rbed.hub.image_hang_next(1, seconds=1.5)  # the download answers, but only after 1.5 s
    job = await rbed.job_of(await rbed.imagine())
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    assert len(result_messages(rbed, job)) == 1
    generation = rbed.hub.generations[job.hub_generation_id or ""]
    image_path = f"/files/{generation.images[0].id}.png"
    assert len([r for r in rbed.hub.requests if r.path == image_path]) == 1  # downloaded once
    assert len(rbed.hub.requests_to("/api/v1/images/generations", "POST")) == 1


async def _stranded(rbed: Bed, status: JobStatus, charged: int | None = None) -> int:
    """A job that reached `status` while its reservation stayed held (a crash in between)."""
    services = rbed.services
    reservation = await services.quotas.ledger.reserve(rbed.guild_id, rbed.d.alice.id, (), 8)
    job = await services.jobs.create(
        guild_id=rbed.guild_id,
        channel_id=rbed.d.images,
        user_id=rbed.d.alice.id,
        params=PARAMS,
        cost=8,
        reservation_id=reservation.id,
        status=JobStatus.QUEUED,
    )
    await services.quotas.ledger.attach(reservation.id, job.id)
    await services.jobs.update(job.id, None, status=status, charged_credits=charged)
    return job.id


async def test_reservations_left_held_by_a_crash_are_settled_from_the_job(rbed: Bed) -> None:
    await _stranded(rbed, JobStatus.FAILED)  # failed before the hub charged: all back
    await _stranded(rbed, JobStatus.CANCELLED)  # cancelled: all back
    await _stranded(rbed, JobStatus.POSTED, charged=8)  # delivered: counts what the hub charged
    await _stranded(rbed, JobStatus.UNKNOWN)  # outcome unknown: counted in full
    assert await spent(rbed) == 32  # all four still held
    assert await rbed.services.engine.reconcile() == 4
    await assert_nothing_held(rbed)
    assert await spent(rbed) == 16
    assert await rbed.services.engine.reconcile() == 0  # nothing left to do
