"""The expected finish on the status message, while running and while queued."""

from __future__ import annotations

import re

from bot.jobs import JobStatus
from tests.bed import Bed
from tests.e2e.queue_support import FAST_POLLS, embed_field, status_message

pytestmark = FAST_POLLS


def _stamp(value: str | None) -> int:
    match = re.fullmatch(r"<t:(\d+):R>", value or "")
    assert match, value
    return int(match.group(1))


async def test_running_and_queued_jobs_show_when_they_should_be_done(bed: Bed) -> None:
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_guild=1)
    bed.hub.set_hold(True)
    first = await bed.job_of(await bed.imagine(prompt="first"))
    await bed.hub.wait_generation_created(1)
    first = await bed.wait_job(first.id, JobStatus.SUBMITTED, JobStatus.RUNNING)
    message = status_message(bed, first)
    await bed.fake.wait_for(lambda: embed_field(message, "Expected done"), what="the ETA on the status")
    assert first.submitted_at is not None
    expected = first.submitted_at.timestamp() + 30  # no history yet: the 1K default
    assert abs(_stamp(embed_field(message, "Expected done")) - expected) <= 2

    second = await bed.job_of(await bed.imagine(prompt="second"))
    assert second.status is JobStatus.QUEUED
    queued = status_message(bed, second)
    starts = _stamp(embed_field(queued, "Should start"))
    assert _stamp(embed_field(queued, "Expected done")) >= starts + 30 - 1  # the queue wait added
    bed.hub.set_hold(False)
