"""Quotas: reservations per second on SQLite and PostgreSQL under 100 concurrent members, no over-spend.

`bot.quotas.QuotaService` directly, as the bot uses it (its own `Database`, migrated, default pool).

* Throughput: 100 members reserve at once, each in a loop, for `--seconds`, on budgets that never run
  out: reservations per second and latency per reservation.
* Race: every member's budget fits exactly 12 reservations; 100 members x 30 attempts are fired at
  once, split over two `Database` instances (two connection pools, as two processes would have).
  Target: zero over-spends (no member holds more than the budget, every member gets exactly 12).

PostgreSQL comes from `TEST_DATABASE_URL` or `bash scripts/pg-start` (a throwaway server); a fresh
database is created and dropped. Without PostgreSQL that half is reported as skipped.

    .venv/bin/python -m benchmarks.quotas [--members 100] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from sqlalchemy import func, select

from benchmarks.common import Report, cli, dist, ms, ratio
from bot.db import Database
from bot.db.models import QuotaReservation
from bot.quotas import QuotaExceeded, QuotaService, ReservationState
from tests.databases import scratch_database

GUILD = 1
COST = 8
RACE_LIMIT = 100  # 12 reservations of 8 fit, the 13th does not
ATTEMPTS = 30


async def throughput(url: str, members: int, seconds: float) -> dict[str, float]:
    db = await Database.open(url)
    try:
        quotas = QuotaService(db)
        await quotas.policies.set_default(GUILD, 10**9, "day")
        await quotas.ledger.reserve(GUILD, 0, (), COST)  # warm the pool and caches
        latencies: list[float] = []
        count = 0
        deadline = time.monotonic() + seconds

        async def member(user_id: int) -> None:
            nonlocal count
            while time.monotonic() < deadline:
                started = time.perf_counter()
                await quotas.ledger.reserve(GUILD, user_id, (), COST)
                latencies.append(time.perf_counter() - started)
                count += 1

        started = time.monotonic()
        await asyncio.gather(*(member(1000 + i) for i in range(members)))
        elapsed = time.monotonic() - started
    finally:
        await db.close()
    d = dist(latencies)
    return {"per_second": count / elapsed, "count": count, "p50": d["p50"], "p99": d["p99"]}


async def race(url: str, members: int) -> dict[str, float]:
    """Members x ATTEMPTS reservations at once over two pools; over-spends counted from the rows."""
    dbs = [await Database.open(url), await Database.open(url, migrate=False)]
    try:
        services = [QuotaService(db) for db in dbs]
        await services[0].policies.set_default(GUILD, RACE_LIMIT, "day")
        attempts = [(5000 + m, i) for m in range(members) for i in range(ATTEMPTS)]
        random.Random(4).shuffle(attempts)
        granted = refused = 0

        async def attempt(user_id: int, i: int) -> None:
            nonlocal granted, refused
            try:
                await services[i % 2].ledger.reserve(GUILD, user_id, (), COST)
                granted += 1
            except QuotaExceeded:
                refused += 1

        started = time.monotonic()
        await asyncio.gather(*(attempt(u, i) for u, i in attempts))
        elapsed = time.monotonic() - started
        async with dbs[0].session() as s:
            rows = (
                await s.execute(
                    select(QuotaReservation.user_id, func.sum(QuotaReservation.credits), func.count())
                    .where(
                        QuotaReservation.guild_id == GUILD,
                        QuotaReservation.user_id >= 5000,
                        QuotaReservation.state == ReservationState.HELD.value,
                    )
                    .group_by(QuotaReservation.user_id)
                )
            ).all()
    finally:
        for db in dbs:
            await db.close()
    fits = RACE_LIMIT // COST
    over = sum(1 for _, credits, _ in rows if credits > RACE_LIMIT)
    short = members - sum(1 for _, _, n in rows if n == fits)
    return {
        "over": float(over),
        "short": float(short),
        "granted": float(granted),
        "refused": float(refused),
        "expected": float(fits * members),
        "seconds": elapsed,
    }


async def measure(args: argparse.Namespace) -> Report:
    report = Report("quotas", f"Quotas: reservations with {args.members} concurrent members")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for backend in ("sqlite", "postgres"):
        async with scratch_database(backend) as url:
            if url is None:
                report.add(f"{backend}: skipped", "PostgreSQL not available (apt-get install postgresql)")
                continue
            results[backend] = {
                "throughput": await throughput(url, args.members, args.seconds),
                "race": await race(url, args.members),
            }
    sqlite_rate = results.get("sqlite", {}).get("throughput", {}).get("per_second", 0.0)
    for backend, r in results.items():
        t, x = r["throughput"], r["race"]
        report.add(
            f"{backend}: reservations per second",
            f"{t['per_second']:.0f}/s",
            baseline="SQLite" if backend == "postgres" else "",
            ratio=ratio(t["per_second"], sqlite_rate) if backend == "postgres" else "",
        )
        report.add(f"{backend}: reserve latency p50 / p99", f"{ms(t['p50'])} / {ms(t['p99'])}")
        report.add(
            f"{backend}: over-spent members (race)",
            f"{int(x['over'])}/{args.members}",
            "0",
            x["over"] == 0,
        )
        report.add(
            f"{backend}: granted exactly what fits",
            f"{int(x['granted'])}/{int(x['expected'])} ({int(x['short'])} members short)",
            f"{int(x['expected'])}",
            x["granted"] == x["expected"] and x["short"] == 0,
        )
    report.details = results
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)


if __name__ == "__main__":
    cli("quotas", measure, configure)
