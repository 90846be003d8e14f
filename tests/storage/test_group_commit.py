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


class _Keys:
    """A kind of write stored together (`Database.run_together`): guild keys, refusing odd ids.
    `fail_together`: `many` raises for more than one item (then each is written alone)."""

    def __init__(self, *, fail_together: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail_together = fail_together

    async def many(self, s: AsyncSession, ids: list[int]) -> list[int | Exception]:
        self.calls.append(list(ids))
        outcomes: list[int | Exception] = []
        for guild_id in ids:
            if guild_id % 2:
                outcomes.append(LookupError(f"refused {guild_id}"))
                continue
            await _key(guild_id)(s)
            outcomes.append(guild_id)
        if self.fail_together and len(ids) > 1:
            raise RuntimeError("the group's statement failed")
        return outcomes


async def _together(db: Database, kind: _Keys, ids: list[int]) -> list[int | str]:
    """Queue the items behind the window, then an urgent write that takes them all along."""
    await db.run(_key(100))  # a commit just before: the next writes wait for company

    async def one(guild_id: int) -> int | str:
        try:
            return await db.run_together(kind.many, guild_id)
        except LookupError as exc:
            return str(exc)

    # `gather` starts them in this order: every item is queued before the urgent write.
    *outcomes, _ = await asyncio.wait_for(
        asyncio.gather(*(one(g) for g in ids), db.run(_key(200), urgent=True)), timeout=30
    )
    return outcomes


async def test_writes_of_one_kind_are_stored_together_and_refused_alone(windowed: Database) -> None:
    kind = _Keys()
    commits = windowed.commits
    outcomes = await _together(windowed, kind, [2, 3, 4, 6])
    assert outcomes == [2, "refused 3", 4, 6]
    assert kind.calls == [[2, 3, 4, 6]]  # one call for the group, in the callers' order
    assert windowed.commits == commits + 2  # the first write alone, then the group with the urgent one
    assert await _stored(windowed) == [2, 4, 6, 100, 200]


async def test_when_the_group_fails_each_write_is_stored_alone(windowed: Database) -> None:
    kind = _Keys(fail_together=True)
    outcomes = await _together(windowed, kind, [2, 3, 4])
    assert outcomes == [2, "refused 3", 4]
    assert kind.calls == [[2, 3, 4], [2], [3], [4]]  # the group's changes were rolled back first
    assert await _stored(windowed) == [2, 4, 100, 200]
