"""The hub misbehaving: every fault ends with the job settled, the member told, nothing lost or doubled."""

from __future__ import annotations

import logging
import re
import socket

import pytest

from bot.jobs import Job, JobStatus
from tests.bed import Bed
from tests.reliability.conftest import (
    POLLS,
    assert_nothing_held,
    hub_downloads,
    hub_polls,
    hub_posts,
    ledger,
    result_messages,
    spent,
    text_of,
)

COST = 8  # gpt-image-2, 1K, one image


# -- polls: retried with backoff, the job completes --------------------------------------------------


def poll_backoffs(caplog: pytest.LogCaptureFixture, job: Job) -> list[int]:
    """The job's polls that failed and were backed off (one `job.poll_error` line each): the
    number of errors in a row at each."""
    lines = [r.getMessage() for r in caplog.records]
    return [
        int(match[1])
        for line in lines
        if line.startswith("job.poll_error")
        and f" job={job.id} " in line
        and (match := re.search(r" attempt=(\d+)", line))
    ]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_poll_server_errors_are_retried_and_the_job_completes(
    rbed: Bed, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    # 6 failures: the hub client's 4 attempts of one poll, then 2 more on the scheduler's next try.
    rbed.hub.http_error_next(6, status=status, paths=[POLLS])
    before = rbed.hub.balance(rbed.key)
    it = await rbed.imagine()
    job = await rbed.job_of(it)
    job = await rbed.wait_job(job.id, JobStatus.POSTED)

    assert str(status) in (job.last_error or "")
    assert poll_backoffs(caplog, job) == [1]  # backed off once
    assert hub_polls(rbed) >= 7
    assert hub_posts(rbed) == 1
    assert len(result_messages(rbed, job)) == 1
    assert rbed.hub.balance(rbed.key) == before - COST
    assert await spent(rbed) == COST
    await assert_nothing_held(rbed)


@pytest.mark.parametrize("fault", ["timeout", "reset"])
@pytest.mark.timings(hub_timeout=0.2)
async def test_poll_timeouts_and_resets_are_retried_and_the_job_completes(
    rbed: Bed, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    # More faults than one poll's 4 attempts can use up (aiohttp itself retries a reset once on a
    # reused connection), so the scheduler must back off at least once.
    if fault == "timeout":
        rbed.hub.hang_next(5, seconds=5.0, paths=[POLLS])
    else:
        rbed.hub.reset_next(9, paths=[POLLS])
    it = await rbed.imagine()
    job = await rbed.job_of(it)
    job = await rbed.wait_job(job.id, JobStatus.POSTED, timeout=20)

    assert poll_backoffs(caplog, job)  # the scheduler backed off
    assert hub_polls(rbed) >= 6
    assert hub_posts(rbed) == 1
    assert len(result_messages(rbed, job)) == 1
    assert await spent(rbed) == COST
    await assert_nothing_held(rbed)


# -- submission: unreachable, ambiguous --------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_hub_unreachable_at_submission_releases_the_quota_and_tells_the_member(rbed: Bed) -> None:
    await rbed.services.catalog.models()  # the model list was fetched earlier; now the hub goes away
    rbed.services.hubs.base_url = closed_port_url()
    before = rbed.hub.balance(rbed.key)
    it = await rbed.imagine()
    job = await rbed.job_of(it)
    job = await rbed.wait_job(job.id, JobStatus.FAILED)

    status = await it.original(predicate=lambda m: "not completed" in text_of(m))
    assert "couldn't be reached" in text_of(status) and f"{COST} credits were returned" in text_of(status)
    assert hub_posts(rbed) == 0 and rbed.hub.balance(rbed.key) == before
    assert await spent(rbed) == 0
    assert await ledger(rbed) == [("reserve", -COST), ("settle_refund", COST)]


async def test_hub_model_list_unreachable_refuses_before_anything_is_reserved(rbed: Bed) -> None:
    warming = rbed.services.catalog.refreshing()
    if warming is not None:
        await warming  # the list fetched at start; the hub now becomes unreachable
    rbed.services.hubs.base_url = closed_port_url()
    rbed.services.catalog.invalidate()  # as if the bot had started with the hub down
    it = await rbed.imagine()
    cb = await it.callback()
    assert cb.ephemeral and "can't be reached" in text_of(cb)
    assert await ledger(rbed) == [] and hub_posts(rbed) == 0


async def test_connection_reset_at_submission_is_unknown_and_never_resent(rbed: Bed) -> None:
    """A reset after the request went out is indistinguishable from a hub that took it: unknown."""
    rbed.hub.reset_next(1, paths=["/api/v1/images/generations"])
    it = await rbed.imagine()
    job = await rbed.job_of(it)
    job = await rbed.wait_job(job.id, JobStatus.UNKNOWN)
    assert hub_posts(rbed) == 1
    status = await it.original(predicate=lambda m: "not completed" in text_of(m))
    assert "won't send it again" in text_of(status)
    await assert_nothing_held(rbed)


async def test_ambiguous_submission_is_unknown_told_to_member_and_moderators_never_resent(rbed: Bed) -> None:
    await rbed.services.guilds.update(rbed.guild_id, mod_log_channel_id=rbed.d.mod_log)
    rbed.hub.drop_after_processing_next()
    before = rbed.hub.balance(rbed.key)
    it = await rbed.imagine()
    job = await rbed.job_of(it)
    job = await rbed.wait_job(job.id, JobStatus.UNKNOWN)

    status = await it.original(predicate=lambda m: "not completed" in text_of(m))
    assert "can't tell whether it was taken" in text_of(status)
    modlog = await rbed.fake.wait_message(rbed.d.mod_log, lambda m: f"job #{job.id}" in text_of(m))
    assert "moderators have been told" in text_of(modlog)
    # The hub took and charged it; the bot never sent it again.
    assert hub_posts(rbed) == 1
    assert rbed.hub.balance(rbed.key) == before - COST
    assert await spent(rbed) == COST  # counted, since the hub may have charged
    await assert_nothing_held(rbed)
    # Later steps do not resubmit it either.
    await rbed.services.engine.maintain()
    assert hub_posts(rbed) == 1


# -- the generation itself ----------------------------------------------------------------------------


async def test_generation_failed_returns_the_quota_and_tells_the_member(rbed: Bed) -> None:
    rbed.hub.fail_next()
    before = rbed.hub.balance(rbed.key)
    it = await rbed.imagine()
    job = await rbed.job_of(it)
    job = await rbed.wait_job(job.id, JobStatus.FAILED)
    status = await it.original(predicate=lambda m: "not completed" in text_of(m))
    assert "couldn't generate" in text_of(status) and f"{COST} credits were returned" in text_of(status)
    assert rbed.hub.balance(rbed.key) == before  # the hub refunded a failed generation
    assert await spent(rbed) == 0
    assert await ledger(rbed) == [("reserve", -COST), ("settle_refund", COST)]


async def test_fewer_images_charge_only_what_was_delivered(rbed: Bed) -> None:
    rbed.hub.fewer_images_next(deliver=1)
    before = rbed.hub.balance(rbed.key)
    it = await rbed.imagine(count=3)
    job = await rbed.job_of(it)
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    (message,) = result_messages(rbed, job)
    assert len(message.attachments) == 1
    assert "delivered 1 of 3" in text_of(message)
    assert job.charged_credits == COST
    assert rbed.hub.balance(rbed.key) == before - COST
    assert await spent(rbed) == COST
    assert await ledger(rbed) == [("reserve", -3 * COST), ("settle_refund", 2 * COST)]


# -- downloading the images ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["404", "hang", "oversize", "oversize-undeclared"])
@pytest.mark.timings(max_image_bytes=200_000)
async def test_image_download_faults_end_the_job_with_a_clear_message(rbed: Bed, fault: str) -> None:
    if fault == "404":
        rbed.hub.image_404_next()
    elif fault == "hang":
        rbed.hub.image_hang_next(seconds=30)
    else:
        rbed.hub.image_oversize(5_000_000, declare_length=fault == "oversize")
    it = await rbed.imagine()
    job = await rbed.job_of(it)
    job = await rbed.wait_job(job.id, JobStatus.FAILED, JobStatus.POSTED, timeout=10)

    assert job.status == JobStatus.FAILED and "download" in (job.last_error or "")
    status = await it.original(predicate=lambda m: "not completed" in text_of(m))
    assert "could not be downloaded" in text_of(status)
    assert result_messages(rbed, job) == []
    assert hub_downloads(rbed) == 1  # not retried in a loop
    assert await spent(rbed) == COST  # the hub made (and charged) the images
    await assert_nothing_held(rbed)


async def test_one_image_of_two_missing_posts_the_other_with_a_note(rbed: Bed) -> None:
    rbed.hub.image_404_next()
    it = await rbed.imagine(count=2)
    job = await rbed.job_of(it)
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    (message,) = result_messages(rbed, job)
    assert len(message.attachments) == 1
    assert "could not be downloaded" in text_of(message)
