"""Atomicity under contention: quota reservations and job claims, across connections and processes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy import func, select

from bot.clock import ManualClock
from bot.db import Database
from bot.db.models import QuotaReservation
from bot.job_store import JobStore
from bot.jobs import JobParams, JobStatus
from bot.quotas import QuotaExceeded, QuotaService

G, U = 7_000_000_000_000_000_001, 8_000_000_000_000_000_001
COST = 10
ROOT = Path(__file__).resolve().parents[2]
PARAMS = JobParams(model="m", prompt="p", aspect="auto", tier="1K", quality="auto")


async def _held(db: Database) -> tuple[int, int]:
    async with db.session() as s:
        row = (
            await s.execute(
                select(func.count(), func.coalesce(func.sum(QuotaReservation.credits), 0)).where(
                    QuotaReservation.guild_id == G, QuotaReservation.user_id == U
                )
            )
        ).one()
    return int(row[0]), int(row[1])


async def test_200_racing_reservations_grant_exactly_what_fits(database_url: str, clock: ManualClock) -> None:
    """200 reservations from 4 engines (each with its own connection pool) for a budget of 10."""
    engines = [
        await Database.open(database_url, migrate=False, pool_size=10, max_overflow=10) for _ in range(4)
    ]
    try:
        await QuotaService(engines[0], clock=clock).policies.set_default(G, 10 * COST)
        services = [QuotaService(db, clock=clock) for db in engines]

        async def attempt(i: int) -> bool:
            try:
                await services[i % len(services)].ledger.reserve(G, U, [], COST)
            except QuotaExceeded as exc:
                assert exc.remaining < COST
                return False
            return True

        results = await asyncio.gather(*(attempt(i) for i in range(200)))
        assert sum(results) == 10
        assert await _held(engines[0]) == (10, 10 * COST)
        budget = await services[1].ledger.budget(G, U, [])
        assert (budget.reserved, budget.remaining) == (10 * COST, 0)
    finally:
        for db in engines:
            await db.close()


async def test_racing_settles_and_releases_return_credits_once(db: Database, clock: ManualClock) -> None:
    quotas = QuotaService(db, clock=clock)
    await quotas.policies.set_default(G, 10 * COST)
    reservation = await quotas.ledger.reserve(G, U, [], COST)
    results = await asyncio.gather(
        *(quotas.ledger.settle(reservation.id, 4) for _ in range(10)),
        *(quotas.ledger.release(reservation.id) for _ in range(10)),
    )
    assert sorted(r for r in results if r) in ([6], [COST])
    budget = await quotas.ledger.budget(G, U, [])
    assert budget.spent + budget.reserved in (0, 4)
    assert budget.reserved == 0


async def test_reservations_from_two_processes(database_url: str) -> None:
    """Two OS processes, 100 concurrent reservations each, budget for 10: exactly 10 granted."""
    db = await Database.open(database_url, migrate=False)
    try:
        await QuotaService(db).policies.set_default(G, 10 * COST)
    finally:
        await db.close()

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.storage.reserve_worker",
            database_url,
            str(G),
            str(U),
            "100",
            str(COST),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:  # both connected and waiting
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"ready":
                _, err = await proc.communicate()
                raise AssertionError(f"worker did not start: {line!r} {err.decode()[-2000:]}")
        for proc in procs:  # go
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        outputs = [await asyncio.wait_for(proc.communicate(), 60) for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    granted = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
        granted.append(int(out.decode().split()[-1]))
    assert sum(granted) == 10, granted

    db = await Database.open(database_url, migrate=False)
    try:
        assert await _held(db) == (10, 10 * COST)
    finally:
        await db.close()


async def test_two_workers_never_claim_the_same_job(database_url: str, clock: ManualClock) -> None:
    first = await Database.open(database_url, migrate=False)
    second = await Database.open(database_url, migrate=False)
    try:
        stores = [JobStore(first, clock=clock), JobStore(second, clock=clock)]
        created = {
            (await stores[0].create(guild_id=G, channel_id=1, user_id=U, params=PARAMS, cost=1)).id
            for _ in range(60)
        }
        names = [f"w{i}" for i in range(4)]  # four workers over two engines
        claims: dict[str, list[int]] = {name: [] for name in names}

        async def worker(name: str, store: JobStore) -> None:
            while True:
                batch = await store.claim_due(name, 3, 300)
                if not batch:
                    return
                assert all(job.lease_owner == name for job in batch)
                claims[name].extend(job.id for job in batch)
                await asyncio.sleep(0)  # let the others in

        await asyncio.gather(*(worker(name, stores[i % 2]) for i, name in enumerate(names)))
        all_claims = [job_id for name in names for job_id in claims[name]]
        assert len(all_claims) == len(set(all_claims)) == len(created)
        assert set(all_claims) == created
        for name in names:
            for job_id in claims[name]:
                job = await stores[0].get(job_id)
                assert job is not None and job.lease_owner == name
    finally:
        await first.close()
        await second.close()


async def test_racing_mark_posted_posts_once(db: Database, clock: ManualClock) -> None:
    store = JobStore(db, clock=clock)
    job = await store.create(guild_id=G, channel_id=1, user_id=U, params=PARAMS, cost=1)
    await store.update(job.id, None, status=JobStatus.SUCCEEDED)
    results = await asyncio.gather(*(store.mark_posted(job.id, None, [i]) for i in range(20)))
    assert sum(results) == 1
    posted = await store.get(job.id)
    assert posted is not None and posted.posted_message_ids == [results.index(True)]
