"""SQLite under a burst: 50 members press /imagine at once; nobody sees a database error."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.jobs import JobStatus
from tests.bed import Bed
from tests.reliability.conftest import assert_nothing_held, bot_writes, hub_posts

BURST = 50


async def test_fifty_concurrent_imagines_on_sqlite(rbed: Bed, caplog: pytest.LogCaptureFixture) -> None:
    await rbed.services.guilds.update(
        rbed.guild_id, max_concurrent_per_member=5, max_concurrent_per_guild=BURST
    )
    members = [rbed.d.guild.add_member(f"burst-{i}") for i in range(BURST)]
    await rbed.fake.join_guild(rbed.d.guild)  # the bot learns about the new members
    with caplog.at_level(logging.WARNING):
        its = await asyncio.gather(
            *(rbed.imagine(member=m, prompt=f"burst {i}") for i, m in enumerate(members))
        )
        callbacks = await asyncio.gather(*(it.callback(10) for it in its))
        jobs = await asyncio.gather(*(rbed.job_of(it, timeout=20) for it in its))
        done = await asyncio.gather(*(rbed.wait_job(j.id, JobStatus.POSTED, timeout=40) for j in jobs))

    assert all(cb.accepted and not cb.ephemeral for cb in callbacks)
    assert len({j.id for j in done}) == BURST
    assert hub_posts(rbed) == BURST
    seen = " ".join(str(r.json) for r in bot_writes(rbed)).lower()
    for words in ("database", "locked", "went wrong", "operationalerror"):
        assert words not in seen
    assert not [r for r in caplog.records if "locked" in r.getMessage().lower()]
    await assert_nothing_held(rbed)
