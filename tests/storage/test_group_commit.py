"""Group commit's window: a trickle of writes waits for company, a launch's write does not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import Database
from bot.db.models import GuildKey

WINDOW = 600.0  # far longer than any test: a write that waited it out would time the test out


@pytest.fixture
async def windowed(database_url: str) -> AsyncIterator[Database]:
    database = await Database.open(database_url, migrate=False, group_window=WINDOW)
    try:
        yield database
    finally:
        await database.close()


def _key(guild_id: int) -> Callable[[AsyncSession], Awaitable[int]]:
    async def work(s: AsyncSession) -> int:
        s.add(GuildKey(guild_id=guild_id, ciphertext=b"x", masked="…", set_by=1, set_at=datetime.now(UTC)))
        await s.flush()
        return guild_id

    return work


async def _stored(db: Database) -> list[int]:
    async with db.session() as s:
        return sorted((await s.execute(select(GuildKey.guild_id))).scalars())


async def test_an_urgent_write_starts_the_next_transaction_at_once(windowed: Database) -> None:
    assert await windowed.run(_key(1)) == 1  # nothing before it: no window
    commits = windowed.commits
    trickle = asyncio.create_task(windowed.run(_key(2)))  # a lone write after a small commit: waits
    done, _ = await asyncio.wait({trickle}, timeout=0.3)
    assert not done
    assert await _stored(windowed) == [1]

    # A member waits for this one: it goes now, and takes the waiting write with it.
    assert await asyncio.wait_for(windowed.run(_key(3), urgent=True), timeout=30) == 3
    assert await asyncio.wait_for(trickle, timeout=30) == 2
    assert windowed.commits == commits + 1
    assert await _stored(windowed) == [1, 2, 3]

    # The window is back for the next trickle (the urgent one was written).
    later = asyncio.create_task(windowed.run(_key(4)))
    done, _ = await asyncio.wait({later}, timeout=0.3)
    assert not done
    assert await asyncio.wait_for(windowed.run(_key(5), urgent=True), timeout=30) == 5
    assert await asyncio.wait_for(later, timeout=30) == 4
    assert windowed.commits == commits + 2


async def test_a_refused_urgent_write_changes_nothing_and_the_others_commit(windowed: Database) -> None:
    await windowed.run(_key(1))
    trickle = asyncio.create_task(windowed.run(_key(2)))

    async def refused(s: AsyncSession) -> None:
        await _key(9)(s)
        raise LookupError("over budget")

    with pytest.raises(LookupError):
        await asyncio.wait_for(windowed.run(refused, urgent=True), timeout=30)
    assert await asyncio.wait_for(trickle, timeout=30) == 2
    assert await _stored(windowed) == [1, 2]
