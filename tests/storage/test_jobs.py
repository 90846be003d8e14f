"""Durable jobs: creation, reads, leases, updates, posting, recovery, pruning."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from bot.clock import ManualClock
from bot.db import Database
from bot.job_store import JobStore
from bot.jobs import ACTIVE, TERMINAL, Job, JobParams, JobStatus, LeaseLost, ReferenceSpec, UnknownJob

G = 1_000_000_000_000_000_001
U = 2_000_000_000_000_000_001
CH = 3_000_000_000_000_000_001
TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXQtdG9rZW4"

PARAMS = JobParams(
    model="gpt-image-2",
    prompt="a lighthouse at dusk",
    aspect="16:9",
    tier="2K",
    quality="high",
    n=2,
    size="2048x1152",
    references=(
        ReferenceSpec(url="https://cdn.example/a.png", filename="a.png", content_type="image/png", size=1234),
    ),
)


async def _create(store: JobStore, **kwargs: object) -> Job:
    values: dict[str, object] = {"guild_id": G, "channel_id": CH, "user_id": U, "params": PARAMS, "cost": 8}
    values.update(kwargs)
    return await store.create(**values)  # type: ignore[arg-type]


def test_status_sets() -> None:
    assert {s.value for s in ACTIVE} == {"pending_submit", "submitting", "submitted", "running", "succeeded"}
    assert {s.value for s in TERMINAL} == {"posted", "failed", "cancelled", "unknown"}
    assert set(JobStatus) == ACTIVE | TERMINAL | {JobStatus.QUEUED}


def test_params_json_round_trip() -> None:
    assert JobParams.from_json(PARAMS.to_json()) == PARAMS
    minimal = JobParams(model="m", prompt="p", aspect="auto", tier="1K", quality="auto")
    assert JobParams.from_json(minimal.to_json()) == minimal


async def test_create_and_get(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    job = await _create(
        store,
        application_id=4_000_000_000_000_000_001,
        interaction_token=TOKEN,
        token_expires_at=clock() + timedelta(minutes=15),
        reservation_id=9,
        reply_to_message_id=5_000_000_000_000_000_001,
        status_message_id=6_000_000_000_000_000_001,
    )
    assert job.id > 0
    assert job.status is JobStatus.PENDING_SUBMIT and job.is_active and not job.is_terminal
    assert job.params == PARAMS
    assert job.next_poll_at == clock() and job.created_at == clock()
    assert (job.poll_attempts, job.error_attempts, job.delivered_images) == (0, 0, 0)
    assert job.result_urls == [] and job.posted_message_ids == []
    assert job.lease_owner is None and job.lease_until is None
    assert job.token_expires_at is not None
    assert clock() < job.token_expires_at < clock() + timedelta(minutes=16)
    assert await store.get(job.id) == job
    assert await store.get(job.id, guild_id=G) == job
    assert await store.get(job.id, guild_id=G + 1) is None  # scoped to the server
    assert await store.get(job.id + 1000) is None
    assert TOKEN not in repr(job)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = JobStatus.FAILED  # type: ignore[misc]

    queued = await _create(store, status=JobStatus.QUEUED)
    assert queued.status is JobStatus.QUEUED and queued.next_poll_at is None
    with pytest.raises(ValueError):
        await _create(store, status=JobStatus.RUNNING)


async def test_lists_and_counts(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    a = await _create(store)
    clock.advance(seconds=1)
    b = await _create(store)
    clock.advance(seconds=1)
    c = await _create(store, status=JobStatus.QUEUED)
    clock.advance(seconds=1)
    d = await _create(store, status=JobStatus.QUEUED)
    await _create(store, user_id=U + 1)
    await _create(store, guild_id=G + 1)
    await store.update(b.id, None, status=JobStatus.FAILED)

    assert [j.id for j in await store.list_for_member(G, U, 10)] == [d.id, c.id, b.id, a.id]
    assert [j.id for j in await store.list_for_member(G, U, 2)] == [d.id, c.id]
    assert await store.count_active(G, U) == 1
    assert await store.count_active(G) == 2
    assert await store.count_active(G + 2) == 0
    assert await store.count_queued(G, U) == 2
    assert [j.id for j in await store.queued_jobs(G)] == [c.id, d.id]
    assert [j.id for j in await store.list_by_status([JobStatus.FAILED])] == [b.id]

    def promote() -> dict[str, object]:
        return {"status": JobStatus.PENDING_SUBMIT, "next_poll_at": clock()}

    promoted = await store.update_if(c.id, {JobStatus.QUEUED}, **promote())
    assert promoted is not None and promoted.status is JobStatus.PENDING_SUBMIT
    assert promoted.next_poll_at == clock()
    assert await store.update_if(c.id, {JobStatus.QUEUED}, **promote()) is None  # no longer queued
    assert [j.id for j in await store.queued_jobs(G)] == [d.id]


async def test_update_fields_and_automatic_timestamps(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    job = await _create(store, interaction_token=TOKEN)
    clock.advance(seconds=3)
    job = await store.update(
        job.id, None, status=JobStatus.SUBMITTED, hub_generation_id="gen_1", hub_status="queued"
    )
    assert job.submitted_at == clock() and job.hub_generation_id == "gen_1" and job.hub_status == "queued"
    clock.advance(seconds=3)
    job = await store.update(
        job.id,
        None,
        status=JobStatus.SUCCEEDED,
        result_urls=["https://hub/1.png", "https://hub/2.png"],
        delivered_images=2,
        charged_credits=8,
        poll_attempts=4,
        last_error="transient",
    )
    assert job.submitted_at == clock() - timedelta(seconds=3)  # kept
    assert job.result_urls == ["https://hub/1.png", "https://hub/2.png"]
    assert (job.delivered_images, job.charged_credits, job.poll_attempts) == (2, 8, 4)
    assert job.interaction_token == TOKEN
    job = await store.update(job.id, None, status="failed")
    assert job.status is JobStatus.FAILED and job.is_terminal
    assert job.finished_at == clock() and job.interaction_token is None and job.next_poll_at is None
    assert await store.get(job.id) == job

    for bad in ({"id": 5}, {"guild_id": 5}, {"lease_owner": "x"}, {"nope": 1}):
        with pytest.raises(ValueError):
            await store.update(job.id, None, **bad)
    with pytest.raises(UnknownJob):
        await store.update(job.id + 1000, None, hub_status="x")


async def test_update_if(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    job = await _create(store)
    cancelled = await store.update_if(
        job.id, {JobStatus.PENDING_SUBMIT, JobStatus.QUEUED}, status="cancelled"
    )
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    assert await store.update_if(job.id, {JobStatus.PENDING_SUBMIT}, status="cancelled") is None
    with pytest.raises(UnknownJob):
        await store.update_if(job.id + 1000, {JobStatus.PENDING_SUBMIT}, status="cancelled")


async def test_finishing_from_outside_takes_the_job_from_its_worker(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    job = await _create(store)
    await store.claim_due("w1", 1, 60)
    cancelled = await store.update_if(job.id, {JobStatus.PENDING_SUBMIT}, status=JobStatus.CANCELLED)
    assert cancelled is not None and cancelled.lease_owner is None
    with pytest.raises(LeaseLost):
        await store.update(job.id, "w1", status=JobStatus.SUBMITTING)
    assert (await store.get(job.id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]


async def test_claim_due_and_release(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    assert await store.next_due_at() is None
    a = await _create(store)
    clock.advance(seconds=1)
    b = await _create(store)
    later = await _create(store, next_poll_at=clock() + timedelta(seconds=30))
    await _create(store, status=JobStatus.QUEUED)  # not active: never claimed
    done = await _create(store)
    await store.update(done.id, None, status=JobStatus.CANCELLED)

    assert await store.next_due_at() == a.next_poll_at
    claimed = await store.claim_due("w1", 10, 60)
    assert [j.id for j in claimed] == [a.id, b.id]  # oldest due first
    assert all(j.lease_owner == "w1" and j.lease_until == clock() + timedelta(seconds=60) for j in claimed)
    assert await store.claim_due("w2", 10, 60) == []  # leased
    assert await store.claim_due("w1", 10, 60) == []  # also for the holder
    # Leased jobs are due again when their lease expires; `later` is due before that.
    assert await store.next_due_at() == later.next_poll_at

    assert await store.release(a.id, "w1", clock() + timedelta(seconds=5)) is True
    assert await store.release(a.id, "w1") is False  # not held any more
    assert await store.next_due_at() == clock() + timedelta(seconds=5)
    clock.advance(seconds=5)
    again = await store.claim_due("w2", 1, 60)
    assert [j.id for j in again] == [a.id]
    assert await store.claim_due("w2", 0, 60) == []

    clock.advance(seconds=30)
    assert [j.id for j in await store.claim_due("w2", 10, 60)] == [later.id]


async def test_release_keeps_next_poll_when_not_given(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    job = await _create(store)
    await store.claim_due("w1", 1, 60)
    await store.release(job.id, "w1")
    fresh = await store.get(job.id)
    assert fresh is not None and fresh.next_poll_at == job.next_poll_at and fresh.lease_owner is None


async def test_expired_lease_moves_to_another_worker(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    job = await _create(store)
    [mine] = await store.claim_due("w1", 5, 30)
    await store.update(mine.id, "w1", status=JobStatus.SUBMITTED)  # holder may write
    clock.advance(seconds=29)
    assert await store.claim_due("w2", 5, 30) == []
    clock.advance(seconds=1)  # expired
    [theirs] = await store.claim_due("w2", 5, 30)
    assert theirs.id == job.id and theirs.lease_owner == "w2" and theirs.status is JobStatus.SUBMITTED

    with pytest.raises(LeaseLost):
        await store.update(job.id, "w1", status=JobStatus.RUNNING)
    assert await store.release(job.id, "w1") is False
    assert (await store.get(job.id)).lease_owner == "w2"  # type: ignore[union-attr]
    updated = await store.update(job.id, "w2", status=JobStatus.RUNNING)
    assert updated.status is JobStatus.RUNNING


async def test_lease_lost_after_release(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    job = await _create(store)
    await store.claim_due("w1", 1, 30)
    await store.release(job.id, "w1")
    with pytest.raises(LeaseLost):
        await store.update(job.id, "w1", hub_status="x")


async def test_mark_posted_only_once(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    job = await _create(store, interaction_token=TOKEN)
    assert await store.mark_posted(job.id, None, [1]) is False  # not succeeded yet
    [job] = await store.claim_due("w1", 1, 60)
    await store.update(job.id, "w1", status=JobStatus.SUCCEEDED, result_urls=["u"])
    with pytest.raises(LeaseLost):
        await store.mark_posted(job.id, "w2", [1])
    big = 1_300_000_000_000_000_123
    assert await store.mark_posted(job.id, "w1", [big, big + 1]) is True
    assert await store.mark_posted(job.id, "w1", [9]) is False
    assert await store.mark_posted(job.id, None, [9]) is False
    posted = await store.get(job.id)
    assert posted is not None
    assert posted.status is JobStatus.POSTED and posted.posted_message_ids == [big, big + 1]
    assert posted.posted_at == clock() and posted.finished_at == clock()
    assert posted.interaction_token is None and posted.lease_owner is None
    with pytest.raises(UnknownJob):
        await store.mark_posted(job.id + 1000, None, [])


async def test_recover_turns_submitting_into_unknown(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    crashed = await _create(store, interaction_token=TOKEN)  # ours, lease still held
    expired = await _create(store)  # another worker's, lease expired
    polling = await _create(store)  # ours, submitted: must stay active
    live = await _create(store)  # another worker's, lease live
    unleased = await _create(store)  # submitting without a lease
    for job, owner in ((crashed, "old"), (expired, "other"), (polling, "old")):
        [claimed] = await store.claim_due(owner, 1, 60 if owner == "old" else 10)
        assert claimed.id == job.id
        status = JobStatus.SUBMITTED if job is polling else JobStatus.SUBMITTING
        await store.update(job.id, owner, status=status)
    [claimed] = await store.claim_due("alive", 1, 600)
    assert claimed.id == live.id
    await store.update(live.id, "alive", status=JobStatus.SUBMITTING)
    await store.update(unleased.id, None, status=JobStatus.SUBMITTING)
    clock.advance(seconds=20)  # "other"'s 10 s lease on `expired` is over

    recovered = await store.recover("old")
    assert [j.id for j in recovered] == [crashed.id, expired.id, unleased.id]
    for job in recovered:
        assert job.status is JobStatus.UNKNOWN and job.is_terminal
        assert job.finished_at == clock() and job.interaction_token is None and job.lease_owner is None
        assert job.last_error
    assert (await store.get(live.id)).status is JobStatus.SUBMITTING  # type: ignore[union-attr]
    after = await store.get(polling.id)
    assert after is not None and after.status is JobStatus.SUBMITTED and after.lease_owner is None
    assert await store.recover("old") == []
    # Never resubmitted: unknown jobs are not claimable.
    assert all(j.status is not JobStatus.UNKNOWN for j in await store.claim_due("new", 10, 60))


async def test_prune(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    old_done = await _create(store)
    old_active = await _create(store)
    await store.update(old_done.id, None, status=JobStatus.FAILED)
    clock.advance(days=10)
    new_done = await _create(store)
    await store.update(new_done.id, None, status=JobStatus.CANCELLED)

    assert await store.prune(timedelta(days=30)) == 0
    assert await store.prune(timedelta(days=5)) == 1
    assert await store.get(old_done.id) is None
    assert await store.get(old_active.id) is not None  # active jobs are never pruned
    assert await store.get(new_done.id) is not None
    assert await store.prune(clock() + timedelta(seconds=1)) == 1  # a cutoff time works too


def test_job_snapshot_has_every_column() -> None:
    from bot.db.models import JobRow

    assert [f.name for f in dataclasses.fields(Job)] == [c.name for c in JobRow.__table__.columns]


async def test_recent_durations_are_what_the_expected_finish_learns_from_at_start(
    db: Database, clock: ManualClock
) -> None:
    store = JobStore(db, clock=clock)
    for seconds in (12, 20):
        job = await _create(store)
        await store.update(job.id, None, status=JobStatus.SUBMITTED, submitted_at=clock())
        clock.advance(seconds=seconds)
        await store.update(job.id, None, status=JobStatus.POSTED)
    failed = await _create(store)
    await store.update(failed.id, None, status=JobStatus.SUBMITTED, submitted_at=clock())
    clock.advance(seconds=99)
    await store.update(failed.id, None, status=JobStatus.FAILED)  # not a finished generation
    assert await store.recent_durations() == [
        (PARAMS.model, PARAMS.tier, 12.0),
        (PARAMS.model, PARAMS.tier, 20.0),
    ]
    assert await store.recent_durations(limit=1) == [(PARAMS.model, PARAMS.tier, 20.0)]
