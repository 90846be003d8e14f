"""Jobs written for throughput: release with fields, batched hand-backs, dead workers' leases at start."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import timedelta

import pytest

from bot.clock import ManualClock
from bot.db import Database
from bot.job_store import JobStore, dead_local_owner
from bot.jobs import JobParams, JobStatus

G, U, CH = 11, 22, 33
RUNNING = {"status": JobStatus.RUNNING, "hub_status": "running"}
PARAMS = JobParams(model="gpt-image-2", prompt="p", aspect="1:1", tier="1K", quality="auto")


async def _claimed(store: JobStore, owner: str, count: int) -> list[int]:
    for _ in range(count):
        await store.create(guild_id=G, channel_id=CH, user_id=U, params=PARAMS, cost=8)
    return [j.id for j in await store.claim_due(owner, count, 60)]


async def test_release_writes_fields_in_the_same_statement(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    [job_id] = await _claimed(store, "w1", 1)
    due = clock() + timedelta(seconds=4)
    assert await store.release(job_id, "w1", due, poll_attempts=1, **RUNNING)
    job = await store.get(job_id)
    assert job is not None and job.status is JobStatus.RUNNING and job.hub_status == "running"
    assert job.poll_attempts == 1 and job.next_poll_at == due and job.lease_owner is None
    with pytest.raises(ValueError):
        await store.release(job_id, "w1", due, status=JobStatus.POSTED)


async def test_hand_backs_made_together_are_all_written(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    ids = await _claimed(store, "w1", 30)
    due = clock() + timedelta(seconds=7)
    await asyncio.gather(
        *(
            store.hand_back(job_id, "w1", due, poll_attempts=i, **RUNNING)
            if i % 2
            else store.hand_back(job_id, "w1", due)
            for i, job_id in enumerate(ids)
        )
    )
    for i, job_id in enumerate(ids):
        job = await store.get(job_id)
        assert job is not None and job.lease_owner is None and job.next_poll_at == due
        assert job.status is (JobStatus.RUNNING if i % 2 else JobStatus.PENDING_SUBMIT)
        assert job.poll_attempts == (i if i % 2 else 0)


async def test_a_hand_back_without_the_lease_changes_nothing(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    [job_id] = await _claimed(store, "w1", 1)
    await store.hand_back(job_id, "someone-else", clock() + timedelta(seconds=9), poll_attempts=5)
    job = await store.get(job_id)
    assert job is not None and job.lease_owner == "w1" and job.poll_attempts == 0


def test_dead_local_owner() -> None:
    host = socket.gethostname()
    me = f"{host}:{os.getpid()}:aaaa1111"
    assert dead_local_owner(f"{host}:{os.getpid()}:bbbb2222", me)  # our pid, another life
    assert not dead_local_owner(me, me)
    assert not dead_local_owner(f"{host}:1:cccc3333", me) or not os.path.exists("/proc/1")  # pid 1 lives
    assert not dead_local_owner(f"other-host:{os.getpid()}:dddd4444", me)
    assert not dead_local_owner("w1", me)  # not our naming: never assumed dead
    free = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000
    assert dead_local_owner(f"{host}:{free}:eeee5555", me)


async def test_recover_frees_leases_of_a_dead_worker_of_this_host(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    host = socket.gethostname()
    previous = f"{host}:{os.getpid()}:dead0000"  # this process's previous life (same pid)
    alive = "other-host:1:live0000"
    mine = await _claimed(store, previous, 2)
    await store.update(mine[0], previous, status=JobStatus.SUBMITTING)
    theirs = await _claimed(store, alive, 1)

    recovered = await store.recover(f"{host}:{os.getpid()}:new00000")
    assert [j.id for j in recovered] == [mine[0]]  # caught mid-submission: unknown
    freed = await store.get(mine[1])
    assert freed is not None and freed.lease_owner is None  # due again at once
    kept = await store.get(theirs[0])
    assert kept is not None and kept.lease_owner == alive
