"""A separate OS process racing for quota: `python -m tests.storage.reserve_worker URL GUILD USER N COST`.

Prints `ready`, waits for a line on stdin (so every process starts racing at once), makes N
concurrent reservations and prints `granted <count>`.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from bot.db import Database
from bot.quotas import QuotaExceeded, QuotaService

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


async def main(url: str, guild_id: int, user_id: int, attempts: int, cost: int) -> int:
    db = await Database.open(url, migrate=False, pool_size=10, max_overflow=10)
    try:
        quotas = QuotaService(db, clock=lambda: NOW)
        await quotas.policies.policy(guild_id)  # connect before the race
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def one() -> bool:
            try:
                await quotas.ledger.reserve(guild_id, user_id, [], cost)
            except QuotaExceeded:
                return False
            return True

        results = await asyncio.gather(*(one() for _ in range(attempts)))
        print(f"granted {sum(results)}", flush=True)
        return 0
    finally:
        await db.close()


if __name__ == "__main__":
    url, guild, user, n, cost = sys.argv[1:6]
    sys.exit(asyncio.run(main(url, int(guild), int(user), int(n), int(cost))))
