"""Two bot processes, each owning one shard, sharing one PostgreSQL database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet

from bot.db import Database
from bot.guild_settings import GuildSettingsStore
from bot.hub.emulator import EmulatorState
from bot.job_store import JobStore
from bot.jobs import JobStatus
from bot.keys import KeyVault
from tests.bed import BotProcess, hub_settings
from tests.fakediscord.server import FakeDiscord

PER_GUILD = 6


@pytest.mark.parametrize("bed_backend", ["postgres"], indirect=True)
async def test_two_processes_split_the_work_and_survive_one_being_killed(
    fake_discord: FakeDiscord, hub: tuple[str, EmulatorState], bed_database_url: str, tmp_path: Path
) -> None:
    hub_url, state = hub
    fake = fake_discord
    guilds = []
    for shard in (0, 1):
        guild = fake.add_guild(f"Shard {shard} server", shard=(shard, 2))
        guilds.append(
            (guild, guild.add_channel("images"), [guild.add_member(f"m{shard}-{i}") for i in range(3)])
        )
    key = state.add_key(credits=10_000)
    fernet_key = Fernet.generate_key().decode()
    db = await Database.open(bed_database_url)
    vault = KeyVault(db, MultiFernet([Fernet(fernet_key.encode())]))
    for guild, _, _ in guilds:
        await vault.set_key(guild.id, key, guild.owner.id)
        await GuildSettingsStore(db).update(
            guild.id, max_concurrent_per_member=10, max_concurrent_per_guild=50
        )
    base = {
        "DISCORD_TOKEN": fake.token,
        "ENCRYPTION_KEY": fernet_key,
        "DATABASE_URL": bed_database_url,
        **hub_settings(hub_url),
        "JOB_LEASE_SECONDS": "3",
        "SHARD_COUNT": "2",
    }
    processes = [
        BotProcess(fake, {**base, "SHARD_IDS": str(shard)}, tmp_path / f"bot-{shard}.log") for shard in (0, 1)
    ]
    state.set_hold(True)
    try:
        since = fake.identify_count
        for process in processes:
            await process.start(shards=None)
        await fake.wait_ready(shard_count=2, since=since, timeout=30)

        # One server at a time, so each process's own wake-up (not a lucky claim) picks up its jobs.
        interactions = []
        for guild, channel, members in guilds:
            batch = [
                await fake.slash(
                    guild, channel, members[i % len(members)], "imagine", {"prompt": f"scene {i}"}
                )
                for i in range(PER_GUILD)
            ]
            for it in batch:
                assert not (await it.callback()).ephemeral
            # The status says "queued at the hub" only after the process logged the submission.
            for it in batch:
                await it.original(
                    10, lambda m: "Queued at the image hub" in str(m.embeds) or "Generating" in str(m.embeds)
                )
            interactions += batch
        assert len(state.generations) == 2 * PER_GUILD

        submitted = [_submitted_jobs(p) for p in processes]
        assert all(submitted), f"each process should have submitted jobs: {submitted}"
        assert not set(submitted[0]) & set(submitted[1]), "a job was submitted by both processes"

        await processes[0].kill()
        for generation in list(state.generations.values()):
            state.complete(generation.id)

        def posted() -> list[object]:
            return [m for guild, channel, _ in guilds for m in fake.messages(channel) if m.attachments]

        await fake.wait_for(lambda: len(posted()) >= 2 * PER_GUILD or None, 30, what="every result posted")
        await processes[1].stop()
        assert len(posted()) == 2 * PER_GUILD
        jobs = JobStore(db)
        for guild, _, members in guilds:
            for member in members:
                for job in await jobs.list_for_member(guild.id, member.id, 50):
                    assert job.status == JobStatus.POSTED and len(job.posted_message_ids) == 1
        assert len(state.requests_to("/api/v1/images/generations", "POST")) == 2 * PER_GUILD
        # The survivor finished the killed process's jobs.
        finished_by_survivor = set(_posted_jobs(processes[1]))
        assert set(submitted[0]) & finished_by_survivor
    finally:
        for process in processes:
            await process.stop()
        await db.close()


def _submitted_jobs(process: BotProcess) -> list[int]:
    return [int(n) for n in re.findall(r"job\.submitted job=(\d+)", process.log_path.read_text())]


def _posted_jobs(process: BotProcess) -> list[int]:
    return [int(n) for n in re.findall(r"job\.posted job=(\d+)", process.log_path.read_text())]
