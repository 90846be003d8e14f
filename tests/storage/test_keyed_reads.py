"""Keyed reads: a burst of cache misses costs a few statements, and each caller still gets its own
row, its own error, and a value no older than its call."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest
from cryptography.fernet import Fernet, MultiFernet

from bot.db import Database
from bot.db.keyed_reads import KeyedReads
from bot.guild_settings import GuildSettingsStore
from bot.keys import KeyVault, PersonalKeyUnreadable
from bot.member_settings import MemberDefaults, MemberSettingsStore
from tests.databases import statements_to

GUILDS = (11, 22)
MEMBERS = range(1000, 1150)


async def test_a_burst_of_new_members_reads_their_settings_in_a_few_statements(db: Database) -> None:
    writer = MemberSettingsStore(db)
    for user_id in MEMBERS[::10]:
        await writer.update(GUILDS[0], user_id, aspect="16:9", count=user_id % 4 + 1)
    await writer.update(GUILDS[1], MEMBERS[0], visibility="private")

    store = MemberSettingsStore(db)  # another process: nothing cached
    asked = [(guild, user) for guild in GUILDS for user in MEMBERS]
    with statements_to(db, "SELECT", "member_settings") as statements:
        got = await asyncio.gather(*(store.get(guild, user) for guild, user in asked))

    expected = {
        **{(GUILDS[0], u): MemberDefaults(aspect="16:9", count=u % 4 + 1) for u in MEMBERS[::10]},
        (GUILDS[1], MEMBERS[0]): MemberDefaults(visibility="private"),
    }
    assert dict(zip(asked, got, strict=True)) == {key: expected.get(key, MemberDefaults()) for key in asked}
    assert 1 <= len(statements) <= 2, len(statements)  # 300 keys: at most 200 per statement
    with statements_to(db, "SELECT", "member_settings") as again:
        await asyncio.gather(*(store.get(guild, user) for guild, user in asked))
    assert again == []  # cached


async def test_a_burst_of_new_members_reads_their_keys_in_one_statement(db: Database) -> None:
    fernet = MultiFernet([Fernet(Fernet.generate_key())])
    writer = KeyVault(db, fernet)
    for user_id in MEMBERS[::3]:
        await writer.set_personal_key(user_id, f"gih_live_member_{user_id}_key")
    stranger = KeyVault(db, MultiFernet([Fernet(Fernet.generate_key())]))  # another encryption key
    await stranger.set_personal_key(MEMBERS[1], "gih_live_unreadable_here")

    vault = KeyVault(db, fernet)
    with statements_to(db, "SELECT", "member_keys") as statements:
        got = await asyncio.gather(
            *(vault.get_personal_key(user) for user in MEMBERS), return_exceptions=True
        )

    assert len(statements) == 1
    for user_id, key in zip(MEMBERS, got, strict=True):
        if user_id == MEMBERS[1]:  # its own error, to its own caller
            assert isinstance(key, PersonalKeyUnreadable)
        else:
            assert key == (f"gih_live_member_{user_id}_key" if user_id in MEMBERS[::3] else None)


async def test_a_server_whose_settings_expire_mid_burst_is_read_once(db: Database) -> None:
    await GuildSettingsStore(db).update(GUILDS[0], max_concurrent_per_member=3)
    store = GuildSettingsStore(db)
    with statements_to(db, "SELECT", "guild_settings") as statements:
        configs = await asyncio.gather(*(store.get(guild) for guild in GUILDS for _ in range(50)))
    assert len(statements) == 1
    assert [c.max_concurrent_per_member for c in configs[:50]] == [3] * 50
    assert {c.guild_id for c in configs[50:]} == {GUILDS[1]}


class _Rows:
    """A fetch whose reads are let through one at a time, recording the keys of each."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.reads: list[list[str]] = []
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.fail: Exception | None = None

    async def fetch(self, keys: Sequence[str]) -> Mapping[str, int]:
        self.reads.append(list(keys))
        snapshot = dict(self.values)
        self.started.set()
        await self.gate.wait()
        self.gate.clear()
        if self.fail is not None:
            raise self.fail
        return {k: snapshot[k] for k in keys if k in snapshot}


async def test_a_key_asked_during_a_read_is_read_again_after_it() -> None:
    rows = _Rows()
    rows.values["a"] = 1
    reads = KeyedReads(rows.fetch, missing=0)
    first = asyncio.create_task(reads.get("a"))
    await rows.started.wait()
    rows.started.clear()
    rows.values["a"] = 2  # written after the first read began
    second = [asyncio.create_task(reads.get("a")) for _ in range(3)]
    other = asyncio.create_task(reads.get("b"))
    rows.gate.set()
    assert await first == 1
    await rows.started.wait()
    rows.gate.set()
    assert await asyncio.gather(*second) == [2, 2, 2]  # never older than the call
    assert await other == 0  # not found: `missing`
    assert rows.reads == [["a"], ["a", "b"]]  # one read for the three that asked "a" meanwhile


async def test_a_failed_read_reaches_its_callers_and_the_next_read_works() -> None:
    rows = _Rows()
    rows.values.update(a=1, b=2)
    reads = KeyedReads(rows.fetch, missing=0)
    rows.fail = ConnectionError("database gone")
    failing = [asyncio.create_task(reads.get(k)) for k in "ab"]
    await rows.started.wait()
    rows.started.clear()
    rows.gate.set()
    for task in failing:
        with pytest.raises(ConnectionError):
            await task
    rows.fail = None
    later = asyncio.create_task(reads.get("b"))
    await rows.started.wait()
    rows.gate.set()
    assert await later == 2


async def test_a_caller_giving_up_leaves_the_others_their_value() -> None:
    rows = _Rows()
    rows.values["a"] = 7
    reads = KeyedReads(rows.fetch, missing=0)
    leaving, staying = (asyncio.create_task(reads.get("a")) for _ in range(2))
    await rows.started.wait()
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    rows.gate.set()
    assert await staying == 7
    assert len(rows.reads) == 1
