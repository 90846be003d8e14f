"""A bot process killed while the hub holds its job: after a restart the result is posted once."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet

from bot.db import Database
from bot.hub.emulator import EmulatorState
from bot.job_store import JobStore
from bot.jobs import JobStatus
from bot.keys import KeyVault
from tests.bed import BotProcess, hub_settings
from tests.fakediscord.server import FakeDiscord


async def test_killed_while_the_hub_holds_the_job_then_posted_exactly_once(
    fake_discord: FakeDiscord, hub: tuple[str, EmulatorState], bed_database_url: str, tmp_path: Path
) -> None:
    hub_url, state = hub
    d = fake_discord.default
    key = state.add_key(credits=1000)
    fernet_key = Fernet.generate_key().decode()
    db = await Database.open(bed_database_url)
    try:
        from cryptography.fernet import MultiFernet

        await KeyVault(db, MultiFernet([Fernet(fernet_key.encode())])).set_key(d.guild.id, key, d.admin.id)
        settings = {
            "DISCORD_TOKEN": fake_discord.token,
            "ENCRYPTION_KEY": fernet_key,
            "DATABASE_URL": bed_database_url,
            **hub_settings(hub_url),
            "JOB_LEASE_SECONDS": "3",
        }
        bot = BotProcess(fake_discord, settings, tmp_path / "bot.log")
        state.set_hold(True)
        await bot.start()
        try:
            it = await fake_discord.slash(
                d.guild, d.images, d.alice, "imagine", {"prompt": "a quiet harbour"}
            )
            assert not (await it.callback()).ephemeral
            generation = await state.wait_generation_created(1)
            await state.wait_polls(generation.id, 1)
            await bot.kill()

            state.complete(generation.id)
            await bot.start()

            def posted() -> list[object]:
                return [m for m in fake_discord.messages(d.images) if m.attachments]

            (message,) = await fake_discord.wait_for(posted, 20, what="the result after the restart")
            assert [a.data for a in message.attachments] == [
                state.image_bytes(i.id) for i in generation.images
            ]
            # A clean stop lets the scheduler finish its writes; then nothing more is posted.
            await bot.stop()
            (job,) = await JobStore(db).list_for_member(d.guild.id, d.alice.id, 10)
            assert job.status == JobStatus.POSTED and job.posted_message_ids == [message.id]
            assert len(posted()) == 1
            assert len(state.requests_to("/api/v1/images/generations", "POST")) == 1
            assert state.balance(key) == 1000 - 8
        finally:
            await bot.stop()
    finally:
        await db.close()
