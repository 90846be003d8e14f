"""Members' settings as stored: cached reads (every /imagine reads them) that a change through the
store replaces at once, and that a change in the database reaches within the cache's time."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import Database
from bot.db.models import MemberSettings
from bot.member_settings import MemberDefaults, MemberSettingsStore


async def test_a_change_through_the_store_is_read_at_once(db: Database) -> None:
    store = MemberSettingsStore(db)
    assert await store.get(1, 2) == MemberDefaults()
    await store.update(1, 2, aspect="16:9", count=2)
    assert await store.get(1, 2) == MemberDefaults(aspect="16:9", count=2)
    await store.update(1, 2, count=None)
    assert await store.get(1, 2) == MemberDefaults(aspect="16:9")
    await store.reset(1, 2)
    assert await store.get(1, 2) == MemberDefaults()


async def test_reads_are_cached_for_a_few_seconds(db: Database) -> None:
    store = MemberSettingsStore(db)
    await store.update(1, 2, aspect="16:9")
    assert (await store.get(1, 2)).aspect == "16:9"

    async def elsewhere(s: AsyncSession) -> None:  # another process changes the row
        await s.execute(update(MemberSettings).values(aspect="1:1"))

    await db.run(elsewhere)
    assert (await store.get(1, 2)).aspect == "16:9"  # cached
    store.CACHE_SECONDS = 0.0
    assert (await store.get(1, 2)).aspect == "1:1"  # read again once the cache's time is up
