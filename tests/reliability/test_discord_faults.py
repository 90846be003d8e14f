"""Discord misbehaving while a result is posted: retried when it can help, abandoned (settled,
logged, no retry storm) when it cannot, and never posted twice."""

from __future__ import annotations

import logging

import pytest

from bot.jobs import Job, JobStatus
from tests.bed import Bed
from tests.fakediscord import FakeInteraction
from tests.reliability.conftest import (
    POLLS,
    assert_nothing_held,
    channel_requests,
    result_messages,
    spent,
)

COST = 8


async def held_job(bed: Bed, channel_id: int | None = None) -> tuple[FakeInteraction, Job, str]:
    """An /imagine whose generation the hub holds; returns once the status message is settled, so
    the next edit of the interaction's message is the result."""
    bed.hub.set_hold(True)
    it = await bed.imagine(channel_id=channel_id)
    job = await bed.job_of(it)
    job = await bed.wait_job(job.id, JobStatus.RUNNING)
    await bed.fake.wait_request(
        "PATCH", it.token, lambda r: f"job #{job.id}" in str(r.json) and r.status == 200
    )
    assert job.hub_generation_id is not None
    return it, job, job.hub_generation_id


def webhook_patches(bed: Bed, it: FakeInteraction) -> list[object]:
    return [r for r in bed.fake.requests if r.method == "PATCH" and it.token in r.path and r.files]


async def test_rate_limited_upload_is_retried_and_posted_once(rbed: Bed) -> None:
    it, job, gen = await held_job(rbed)
    rule = rbed.fake.fail_next(2, 429, route_contains=it.token, method="PATCH")
    rbed.hub.complete(gen)
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    assert rule.hits == 2
    assert len(webhook_patches(rbed, it)) == 3
    assert len(result_messages(rbed, job)) == 1
    assert job.error_attempts == 0


async def test_server_error_on_upload_is_retried_and_posted_once(rbed: Bed) -> None:
    it, job, gen = await held_job(rbed)
    rule = rbed.fake.fail_next(1, 500, route_contains=it.token, method="PATCH")
    rbed.hub.complete(gen)
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    assert rule.hits == 1
    assert len(result_messages(rbed, job)) == 1


async def test_unavailable_channel_post_is_retried_by_the_scheduler_and_posted_once(rbed: Bed) -> None:
    it, job, gen = await held_job(rbed)
    rbed.fake.expire_interaction(it)  # results go to the channel
    rule = rbed.fake.fail_next(2, 503, route_contains=f"/channels/{job.channel_id}/messages", method="POST")
    rbed.hub.complete(gen)
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    assert rule.hits == 2
    assert job.error_attempts == 2
    (message,) = result_messages(rbed, job)
    assert message.source == "channel"


async def test_expired_interaction_token_posts_through_the_channel(rbed: Bed) -> None:
    it, job, gen = await held_job(rbed)
    rbed.fake.expire_interaction(it)
    rbed.hub.complete(gen)
    job = await rbed.wait_job(job.id, JobStatus.POSTED, JobStatus.FAILED)
    assert job.status == JobStatus.POSTED, job.last_error
    (message,) = result_messages(rbed, job)
    assert message.source == "channel" and message.channel_id == job.channel_id
    assert message.message_reference is not None  # a reply to the status message
    assert message.message_reference["message_id"] == str(job.status_message_id)
    assert job.posted_message_ids == [message.id]


async def test_deleted_status_message_posts_through_the_interaction(rbed: Bed) -> None:
    it, job, gen = await held_job(rbed)
    status = await it.original()
    status.deleted = True  # a moderator deleted the status message
    rbed.hub.complete(gen)
    job = await rbed.wait_job(job.id, JobStatus.POSTED, JobStatus.FAILED)
    assert job.status == JobStatus.POSTED, job.last_error
    (message,) = result_messages(rbed, job)
    # The token still lives: a followup through the interaction (needs no channel permission).
    assert message.source == "followup" and message.interaction is it
    # The status message answered 404 once and is never edited again.
    edits = [r for r in rbed.fake.requests if r.method == "PATCH" and f"/messages/{status.id}" in r.path]
    assert [r.status for r in edits][-1] == 404 and [r.status for r in edits].count(404) == 1
    assert (await rbed.services.jobs.get(job.id)).status_message_id is None  # type: ignore[union-attr]


async def test_missing_send_permission_still_posts_through_the_interaction(rbed: Bed) -> None:
    _, job, gen = await held_job(rbed)
    await rbed.fake.deny_send(job.channel_id)
    rbed.hub.complete(gen)
    job = await rbed.wait_job(job.id, JobStatus.POSTED)
    assert len(result_messages(rbed, job)) == 1


@pytest.mark.parametrize("fault", ["channel_deleted", "no_permission"])
async def test_unpostable_result_finishes_the_job_with_a_logged_reason_and_no_retry_storm(
    rbed: Bed, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    it, job, gen = await held_job(rbed)
    rbed.fake.expire_interaction(it)
    if fault == "channel_deleted":
        await rbed.fake.delete_channel(job.channel_id)
    else:
        await rbed.fake.deny_send(job.channel_id)
    before = len(channel_requests(rbed, job.channel_id))
    with caplog.at_level(logging.WARNING, logger="bot.engine"):
        rbed.hub.complete(gen)
        job = await rbed.wait_job(job.id, JobStatus.FAILED)
    # A deleted channel answers 404; a missing permission is seen in the cache, never sent (no 403).
    expected = "404" if fault == "channel_deleted" else "missing Send Messages"
    assert expected in (job.last_error or "")
    assert any(
        "job.publish_abandoned" in r.getMessage() and f"job={job.id}" in r.getMessage()
        for r in caplog.records
    )
    assert job.charged_credits == COST and await spent(rbed) == COST  # the hub charged: settled
    await assert_nothing_held(rbed)

    # Another job completes end to end; the abandoned one is never tried again meanwhile.
    rbed.hub.set_hold(False)
    other = await rbed.job_of(await rbed.imagine(channel_id=rbed.d.general, member=rbed.d.bob))
    await rbed.wait_job(other.id, JobStatus.POSTED)
    tries = len(channel_requests(rbed, job.channel_id)) - before
    # history + post + the attempt to tell the member; then nothing more (none without permission)
    if fault == "channel_deleted":
        assert 1 <= tries <= 3, f"{tries} requests to the channel after the fault"
    else:
        assert tries == 0, f"{tries} requests to a channel the bot may not post in"
    assert (await rbed.services.jobs.get(job.id)).status == JobStatus.FAILED  # type: ignore[union-attr]


async def test_poll_errors_do_not_use_up_the_posting_retries(rbed: Bed) -> None:
    """A job that needed several polls to get through a flaky hub still gets its full share of
    posting retries: one 503 from Discord afterwards is retried, not the end of the job."""
    rbed.hub.http_error_next(4 * 5, status=503, paths=[POLLS])  # 5 failed polls of 4 attempts each
    rbed.hub.set_hold(True)
    it = await rbed.imagine()
    job = await rbed.job_of(it)
    gen = (await rbed.hub.wait_generation_created()).id
    await rbed.hub.wait_polls(gen, 1)  # the faults are used up: the next poll answers
    job = await rbed.wait_job(job.id, JobStatus.RUNNING)
    assert job.error_attempts == 5
    rbed.fake.expire_interaction(it)
    rule = rbed.fake.fail_next(1, 503, route_contains=f"/channels/{job.channel_id}/messages", method="POST")
    rbed.hub.complete(gen)
    job = await rbed.wait_job(job.id, JobStatus.POSTED, JobStatus.FAILED)
    assert rule.hits == 1
    assert job.status == JobStatus.POSTED, job.last_error
    assert len(result_messages(rbed, job)) == 1
