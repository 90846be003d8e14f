"""The local queue on both backends: promotion under contention, positions, ETA."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from bot.clock import ManualClock
from bot.db import Database
from bot.guild_settings import GuildSettingsStore
from bot.job_store import JobStore
from bot.jobs import ACTIVE, JobParams, JobStatus
from bot.queue import DEFAULT_GENERATION_SECONDS, JobQueue
from tests.databases import statements_to

G = 7_000_000_000_000_000_002
PARAMS = JobParams(model="m", prompt="p", aspect="auto", tier="1K", quality="auto")


async def _active(jobs: JobStore, users: list[int]) -> Counter[int]:
    counts: Counter[int] = Counter()
    for user in users:
        for job in await jobs.list_for_member(G, user, 100):
            if job.status in ACTIVE:
                counts[user] += 1
    return counts


async def test_racing_promotions_from_several_engines_keep_the_limits(
    database_url: str, clock: ManualClock
) -> None:
    """40 promotions at once from 4 engines (as from 4 bot processes): exactly the limits."""
    engines = [await Database.open(database_url, migrate=False, pool_size=5) for _ in range(4)]
    try:
        settings = GuildSettingsStore(engines[0], clock=clock)
        await settings.update(G, max_concurrent_per_member=2, max_concurrent_per_guild=5)
        jobs = JobStore(engines[0], clock=clock)
        users = [101, 102, 103, 104, 105]
        for i in range(30):
            await jobs.create(
                guild_id=G,
                channel_id=1,
                user_id=users[i % 5] if i >= 10 else 101,
                params=PARAMS,
                cost=1,
                status=JobStatus.QUEUED,
            )
            clock.advance(seconds=1)
        queues = [
            JobQueue(db, JobStore(db, clock=clock), GuildSettingsStore(db, clock=clock), clock=clock)
            for db in engines
        ]
        promoted = await asyncio.gather(*(queues[i % 4].promote(G) for i in range(40)))
        flat = [job_id for batch in promoted for job_id in batch]
        assert len(flat) == len(set(flat)) == 5
        active = await _active(jobs, users)
        assert sum(active.values()) == 5 and max(active.values()) <= 2
        # Alice queued the first ten, yet the five slots went round the members: not FIFO by volume.
        assert len(active) >= 3

        # Two finish; racing promotions fill exactly those two slots again.
        finished = [job_id for job_id in flat[:2]]
        for job_id in finished:
            assert await jobs.update_if(job_id, ACTIVE, status=JobStatus.POSTED) is not None
        promoted = await asyncio.gather(*(queues[i % 4].promote(G) for i in range(20)))
        assert sum(len(batch) for batch in promoted) == 2
        active = await _active(jobs, users)
        assert sum(active.values()) == 5 and max(active.values()) <= 2
        assert await jobs.count_queued(G) == 30 - 7
    finally:
        for db in engines:
            await db.close()


async def test_positions_follow_turns_and_eta_uses_recent_times(db: Database, clock: ManualClock) -> None:
    settings = GuildSettingsStore(db, clock=clock)
    await settings.update(G, max_concurrent_per_member=1, max_concurrent_per_guild=1)
    jobs = JobStore(db, clock=clock)
    queue = JobQueue(db, jobs, settings, clock=clock)
    assert (await queue.view(G)).jobs == []
    assert await queue.average_seconds(G) == DEFAULT_GENERATION_SECONDS

    # Alice's earlier job took 40 s and is done; Bob never generated here.
    done = await jobs.create(guild_id=G, channel_id=1, user_id=101, params=PARAMS, cost=1)
    await jobs.update(done.id, None, status=JobStatus.SUBMITTED)
    clock.advance(seconds=40)
    await jobs.update(done.id, None, status=JobStatus.POSTED)
    assert await queue.average_seconds(G) == 40.0

    a1 = await jobs.create(
        guild_id=G, channel_id=1, user_id=101, params=PARAMS, cost=1, status=JobStatus.QUEUED
    )
    clock.advance(seconds=1)
    a2 = await jobs.create(
        guild_id=G, channel_id=1, user_id=101, params=PARAMS, cost=1, status=JobStatus.QUEUED
    )
    clock.advance(seconds=1)
    b1 = await jobs.create(
        guild_id=G, channel_id=1, user_id=102, params=PARAMS, cost=1, status=JobStatus.QUEUED
    )
    view = await queue.view(G)
    assert [job.id for job in view.jobs] == [b1.id, a1.id, a2.id]
    now = clock()
    assert [(view.places[j].position, view.places[j].waiting) for j in (b1.id, a1.id, a2.id)] == [
        (1, 3),
        (2, 3),
        (3, 3),
    ]
    assert view.places[a2.id].starts_at == now + timedelta(seconds=3 * 40)
    assert (await queue.place(a1)) == view.places[a1.id]

    assert await queue.promote(G) == [b1.id]
    assert await queue.promote(G) == []  # one slot, taken
    place = await queue.place(a1)
    assert place is not None and place.position == 1
    # Cancelled before being sent is not a turn: it doesn't push the member back.
    assert await jobs.update_if(b1.id, {JobStatus.PENDING_SUBMIT}, status=JobStatus.CANCELLED)
    assert await queue.promote(G) == [a1.id]


async def test_places_asked_at_once_read_the_queue_once(db: Database, clock: ManualClock) -> None:
    """A burst of queued launches each shows its place: the server's queue is read for all of them
    together, not once per launch (each read orders every queued job)."""
    settings = GuildSettingsStore(db, clock=clock)
    await settings.update(G, max_concurrent_per_member=1, max_concurrent_per_guild=1)
    jobs = JobStore(db, clock=clock)
    queue = JobQueue(db, jobs, settings, clock=clock)
    queued = []
    for i in range(120):
        queued.append(
            await jobs.create(
                guild_id=G, channel_id=1, user_id=200 + i % 40, params=PARAMS, cost=1, status=JobStatus.QUEUED
            )
        )
        clock.advance(seconds=1)
    view = await queue.view(G)
    with statements_to(db, "SELECT", "jobs") as statements:
        places = await asyncio.gather(*(queue.place(job) for job in queued))
    assert places == [view.places[job.id] for job in queued]
    assert sorted(p.position for p in places) == list(range(1, 121))
    assert 1 <= len(statements) <= 2 * 3, len(statements)  # one read (three statements), at most twice
