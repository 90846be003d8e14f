"""Posting keeps up: one slow upload never holds back polls or other results.

Results being posted have places of their own in the engine (beside the polls'), and each result
is its own step: with a single poll place, a result whose upload stalls must not stop the next
job from being polled and posted.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.jobs import JobStatus
from tests.bed import Bed


@pytest.mark.settings(MAX_CONCURRENT_POLLS="1")
async def test_a_stalled_upload_holds_back_no_other_job(bed: Bed) -> None:
    release = asyncio.Event()
    stalled = bed.fake.hold_next(1, "/webhooks/", method="PATCH", with_files=True, until=release)
    slow = await bed.job_of(await bed.imagine(prompt="a slow upload"))
    await bed.fake.wait_for(lambda: stalled.held == 1 or None, 15, what="the first result's upload held")

    other = await bed.job_of(await bed.imagine(prompt="the next one"))
    message = await bed.result_message(other, timeout=15)  # polled and posted while the upload waits
    assert message.attachments and stalled.held == 1
    assert (await bed.services.jobs.get(slow.id)).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]

    release.set()
    await bed.wait_job(slow.id, JobStatus.POSTED, timeout=15)
    assert (await bed.result_message(slow)).attachments
