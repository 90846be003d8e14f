"""At a concurrency limit /imagine queues instead of refusing; fair order; restarts."""

from __future__ import annotations

import dataclasses

import pytest

from bot.jobs import JobStatus
from bot.quotas import LedgerKind
from tests.bed import Bed, hub_settings, start_bot, stop_bot
from tests.e2e.queue_support import (
    FAST_POLLS,
    QUICK,
    custom_ids,
    embed_field,
    status_message,
    text,
    wait_position,
)

pytestmark = QUICK
BOTH = pytest.mark.parametrize("bed_backend", ["sqlite", "postgres"], indirect=True)


@BOTH
@FAST_POLLS
async def test_members_take_turns_and_positions_move(bed: Bed) -> None:
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_guild=1)
    bed.hub.set_hold(True)
    a1 = await bed.job_of(await bed.imagine(prompt="alice one"))
    g1 = await bed.hub.wait_generation_created(1)
    assert g1.prompt == "alice one"

    # Alice queues two more before Bob's one: the queue is not first come, first served by volume.
    a2_it = await bed.imagine(prompt="alice two")
    assert not (await a2_it.callback()).ephemeral
    a2 = await bed.job_of(a2_it)
    assert a2.status == JobStatus.QUEUED
    message = await wait_position(bed, a2, 1)
    assert "<t:" in (embed_field(message, "Should start") or "")
    assert custom_ids(message) == [f"imagine:cancel:{a2.id}"]
    a3 = await bed.job_of(await bed.imagine(prompt="alice three"))
    await wait_position(bed, a3, 2)
    b1 = await bed.job_of(await bed.imagine(bed.d.bob, prompt="bob one"))
    await wait_position(bed, b1, 1)  # Bob hasn't had a turn yet: he goes first
    await wait_position(bed, a2, 2)  # and the others move down
    await wait_position(bed, a3, 3)

    bed.hub.complete(g1.id)
    g2 = await bed.hub.wait_generation_created(2)
    assert g2.prompt == "bob one"
    bob_status = status_message(bed, b1)
    await bed.fake.wait_for(
        lambda: (
            "Waiting in this server's queue" not in text(bob_status) and "Position" not in text(bob_status)
        ),
        what="Bob's status message no longer saying it waits",
    )
    await wait_position(bed, a2, 1)
    await wait_position(bed, a3, 2)

    bed.hub.complete(g2.id)
    g3 = await bed.hub.wait_generation_created(3)
    assert g3.prompt == "alice two"
    await wait_position(bed, a3, 1)
    bed.hub.complete(g3.id)
    g4 = await bed.hub.wait_generation_created(4)
    assert g4.prompt == "alice three"
    bed.hub.complete(g4.id)
    for job in (a1, a2, a3, b1):
        done = await bed.wait_job(job.id, JobStatus.POSTED)
        assert len(done.posted_message_ids) == 1
    assert len(bed.hub.requests_to("/api/v1/images/generations", "POST")) == 4


@FAST_POLLS
async def test_member_limit_queues_only_that_member(bed: Bed) -> None:
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_member=1)
    bed.hub.set_hold(True)
    await bed.job_of(await bed.imagine(prompt="alice one"))
    g1 = await bed.hub.wait_generation_created(1)
    a2 = await bed.job_of(await bed.imagine(prompt="alice two"))
    assert a2.status == JobStatus.QUEUED
    # Bob is under his own limit and the server has room: he doesn't wait behind Alice.
    b1 = await bed.job_of(await bed.imagine(bed.d.bob, prompt="bob one"))
    assert b1.status != JobStatus.QUEUED
    g2 = await bed.hub.wait_generation_created(2)
    assert g2.prompt == "bob one"
    bed.hub.complete(g1.id)
    g3 = await bed.hub.wait_generation_created(3)
    assert g3.prompt == "alice two"
    bed.hub.set_hold(False)
    for job in (a2, b1):
        await bed.wait_job(job.id, JobStatus.POSTED)


async def test_a_full_queue_refuses_and_reserves_nothing(bed: Bed) -> None:
    await bed.services.guilds.update(
        bed.guild_id, max_concurrent_per_guild=1, max_queued_per_member=1, max_queued_per_guild=2
    )
    bed.hub.set_hold(True)
    await bed.job_of(await bed.imagine(prompt="running"))
    await bed.hub.wait_generation_created(1)
    await bed.job_of(await bed.imagine(prompt="waiting"))
    before = await bed.services.quotas.reports.recent(bed.guild_id, limit=100)

    refused = await (await bed.imagine(prompt="one too many")).callback()
    assert refused.ephemeral and "waiting in the queue" in text(refused)
    await bed.job_of(await bed.imagine(bed.d.bob, prompt="bob waits too"))
    after_bob = await bed.services.quotas.reports.recent(bed.guild_id, limit=100)
    full = await (await bed.imagine(bed.d.moderator, prompt="no room")).callback()
    assert full.ephemeral and "queue is full" in text(full)

    ledger = await bed.services.quotas.reports.recent(bed.guild_id, limit=100)
    assert len(after_bob) == len(before) + 1 and ledger == after_bob
    assert all(entry.kind == LedgerKind.RESERVE for entry in ledger)
    assert await bed.services.jobs.count_queued(bed.guild_id) == 2


async def test_config_limits_sets_queue_lengths(bed: Bed) -> None:
    it = await bed.fake.slash(
        bed.d.guild,
        bed.d.general,
        bed.d.admin,
        ["config", "limits"],
        {"queue_per_member": 3, "queue_per_server": 7},
    )
    cb = await it.callback()
    assert cb.ephemeral and "at most 3 per member, 7 per server" in text(cb)
    config = await bed.services.guilds.get(bed.guild_id)
    assert (config.max_queued_per_member, config.max_queued_per_guild) == (3, 7)


@BOTH
@FAST_POLLS
async def test_a_queued_backlog_survives_a_restart_and_drains(bed: Bed) -> None:
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_guild=1)
    bed.hub.set_hold(True)
    first = await bed.job_of(await bed.imagine(prompt="alice one"))
    g1 = await bed.hub.wait_generation_created(1)
    backlog = [
        await bed.job_of(await bed.imagine(prompt="alice two")),
        await bed.job_of(await bed.imagine(prompt="alice three")),
        await bed.job_of(await bed.imagine(bed.d.bob, prompt="bob one")),
    ]
    assert all(job.status == JobStatus.QUEUED for job in backlog)

    await stop_bot(bed.bot)
    bed.hub.complete(g1.id)  # finishes while no bot runs
    bed.hub.set_hold(False)
    settings = {
        "DISCORD_TOKEN": bed.fake.token,
        "ENCRYPTION_KEY": bed.encryption_key,
        "DATABASE_URL": bed.database_url,
        **hub_settings(bed.hub_url),
    }
    bot, services = await start_bot(bed.fake, settings, bed.timings)
    try:
        ids = [job.id for job in (first, *backlog)]
        await bed.fake.wait_for(
            lambda: all(_posted(bed, job_id) for job_id in ids), 20, what="every job posted after the restart"
        )
        prompts = [g.prompt for g in bed.hub.generations.values()]
        assert prompts == ["alice one", "bob one", "alice two", "alice three"]
        restarted = dataclasses.replace(bed, bot=bot, services=services)
        for job in [first, *backlog]:
            # The message is out just before its job is marked posted: wait for the row too.
            done = await restarted.wait_job(job.id, JobStatus.POSTED)
            assert len(done.posted_message_ids) == 1
            assert status_message(bed, job).attachments  # the status message became the result
    finally:
        await stop_bot(bot)


def _posted(bed: Bed, job_id: int) -> bool:
    return any(m.attachments and f"job #{job_id}" in str(m.embeds) for m in bed.fake.messages(bed.d.images))
