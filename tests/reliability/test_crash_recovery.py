"""The bot SIGKILLed at each stage of a generation, then restarted (`python -m bot` as a child).

Each kill is made deterministic by doing it from inside the fake Discord or the emulator at the
exact request that marks the stage. After the restart: no job is lost, none is posted twice
(result messages and image downloads counted), nothing is submitted twice, and no credit stays
reserved (the ledger's reservations are all closed, or are orphans that the scheduler's
maintenance releases).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import select

from bot.db import Database
from bot.db.models import QuotaReservation
from bot.guild_settings import GuildSettingsStore
from bot.hub.emulator import EmulatorState
from bot.job_store import JobStore
from bot.jobs import Job, JobStatus
from bot.keys import KeyVault
from tests.bed import BotProcess, hub_settings
from tests.fakediscord import FakeInteraction, FakeMember, RecordedRequest
from tests.fakediscord.models import DefaultSetup
from tests.fakediscord.server import FakeDiscord
from tests.reliability.conftest import GENERATIONS, POLLS

COST = 8


@dataclass
class Crash:
    fake: FakeDiscord
    d: DefaultSetup
    hub: EmulatorState
    key: str
    db: Database
    bot: BotProcess

    async def imagine(self, member: FakeMember | None = None, prompt: str = "a harbour") -> FakeInteraction:
        return await self.fake.slash(
            self.d.guild, self.d.images, member or self.d.alice, "imagine", {"prompt": prompt}
        )

    async def jobs(self) -> list[Job]:
        store = JobStore(self.db)
        found = [
            j for m in (self.d.alice, self.d.bob) for j in await store.list_for_member(self.d.guild.id, m.id)
        ]
        return sorted(found, key=lambda j: j.id)

    async def reservations(self) -> list[QuotaReservation]:
        async with self.db.session() as s:
            return list((await s.execute(select(QuotaReservation).order_by(QuotaReservation.id))).scalars())

    def kill_now(self) -> None:
        """SIGKILL from synchronous code (inside a fake's request handler); reaped by `restart`."""
        assert self.bot.process is not None
        self.bot.process.send_signal(signal.SIGKILL)

    async def restart(self) -> None:
        assert self.bot.process is not None
        await self.bot.process.wait()
        await self.bot.start()

    async def wait_jobs(self, *statuses: JobStatus, count: int = 1, timeout: float = 20.0) -> list[Job]:
        """Wait until `count` jobs are in `statuses`. The child's database writes raise no event here,
        so the rows are read again after every Discord or hub request, and at least every 0.2 s (a
        job's last write, after its last request, has nothing else to wait for)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            latest = await self.jobs()
            if sum(j.status in statuses for j in latest) >= count:
                return latest
            if loop.time() > deadline:
                raise AssertionError(f"jobs never reached {statuses}: {latest}\n{self.bot.log()}")
            await self._next_request(0.2)

    async def _next_request(self, within: float) -> None:
        seen = len(self.fake.requests), len(self.hub.requests)
        with contextlib.suppress(TimeoutError):
            await self.fake.wait_for(
                lambda: (len(self.fake.requests), len(self.hub.requests)) != seen, within
            )

    def results(self) -> list[Any]:
        return [m for m in self.fake.messages(self.d.images) if m.attachments]

    def downloads(self) -> int:
        return sum(1 for r in self.hub.requests if r.path.startswith("/files/"))

    def posts(self) -> int:
        return len(self.hub.requests_to(GENERATIONS, "POST"))

    def on_discord_request(
        self, match: Callable[[RecordedRequest], bool], *, before: bool
    ) -> Callable[[], bool]:
        """Kill the bot at the first Discord request matching `match`: `before` the fake handles it (the
        bot dies with the request unprocessed), or after (processed, the answer never arrives)."""
        original = self.fake._route
        fired = False

        async def route(request: web.Request, rec: RecordedRequest, api: bool) -> web.StreamResponse:
            nonlocal fired
            if fired or not match(rec):
                return await original(request, rec, api)
            fired = True
            if before:
                self.kill_now()
                return web.Response(status=503)
            response = await original(request, rec, api)
            self.kill_now()
            return response

        self.fake._route = route  # type: ignore[method-assign]
        return lambda: fired


@pytest.fixture
async def crash(
    fake_discord: FakeDiscord, hub: tuple[str, EmulatorState], bed_database_url: str, tmp_path: Path
) -> AsyncIterator[Crash]:
    hub_url, state = hub
    d = fake_discord.default
    assert d is not None
    key = state.add_key(credits=1000)
    fernet_key = Fernet.generate_key().decode()
    db = await Database.open(bed_database_url)
    await KeyVault(db, MultiFernet([Fernet(fernet_key.encode())])).set_key(d.guild.id, key, d.admin.id)
    await GuildSettingsStore(db).update(d.guild.id, mod_log_channel_id=d.mod_log)
    settings = {
        "DISCORD_TOKEN": fake_discord.token,
        "ENCRYPTION_KEY": fernet_key,
        "DATABASE_URL": bed_database_url,
        **hub_settings(hub_url),
        "JOB_LEASE_SECONDS": "1",
    }
    bot = BotProcess(fake_discord, settings, tmp_path / "bot.log")
    try:
        yield Crash(fake_discord, d, state, key, db, bot)
        await bot.stop()
        # Whatever happened, the real process's log never shows a secret.
        log = bot.log_path.read_text(errors="replace")
        for secret in (key, key[9:], fernet_key, fake_discord.token):
            assert secret not in log
    finally:
        await bot.stop()
        await db.close()


def is_callback(rec: RecordedRequest) -> bool:
    return rec.path.startswith("/interactions/") and rec.path.endswith("/callback")


def is_result_upload(rec: RecordedRequest) -> bool:
    return rec.method in ("PATCH", "POST") and bool(rec.files)


async def assert_all_closed(c: Crash) -> None:
    held = [r.id for r in await c.reservations() if r.state == "held"]
    assert not held, f"reservations still held: {held}"


async def test_killed_after_the_first_response(crash: Crash) -> None:
    """The first answer names the job: its reservation and its row were stored together, in one
    transaction, before it. Killed right after that answer, the restarted bot runs the job (its
    lease was this dead process's) and posts its result once; nothing is left held."""
    c = crash
    await c.bot.start()
    killed = c.on_discord_request(is_callback, before=False)
    it = await c.imagine()
    callback = await it.callback()
    assert not callback.ephemeral and "job #" in str(callback.embeds)  # the member saw the job
    assert killed()
    await c.restart()

    (job,) = await c.wait_jobs(JobStatus.POSTED)
    assert len(c.results()) == 1 and c.posts() == 1
    (reservation,) = await c.reservations()
    assert reservation.job_id == job.id and reservation.state == "settled"
    await assert_all_closed(c)


async def test_killed_after_reservation_and_after_submission(crash: Crash) -> None:
    """With one scheduler slot and A's poll hanging at the hub, B waits in `pending_submit` with its
    credits reserved: kill. A was submitted (the hub holds it), B never was."""
    c = crash
    c.bot.settings["MAX_CONCURRENT_POLLS"] = "1"
    c.hub.set_hold(True)
    await c.bot.start()
    await c.imagine(c.d.alice, "A")
    gen_a = await c.hub.wait_generation_created(1)
    c.hub.hang_next(1, seconds=60, paths=[POLLS])
    # A's first poll is in flight and hangs (in the emulator's middleware): the slot is taken.
    await c.hub.wait_requests(1, f"{POLLS}/{gen_a.id}")
    it_b = await c.imagine(c.d.bob, "B")
    await c.fake.wait_request(None, it_b.token, lambda r: "job #" in str(r.json))  # B's row exists
    c.kill_now()

    a, b = await c.jobs()
    assert a.status in (JobStatus.SUBMITTED, JobStatus.RUNNING) and a.hub_generation_id == gen_a.id
    assert b.status == JobStatus.PENDING_SUBMIT and b.hub_generation_id is None
    assert [r.state for r in await c.reservations()] == ["held", "held"]

    await c.restart()
    c.hub.set_hold(False)
    a, b = await c.wait_jobs(JobStatus.POSTED, count=2)
    assert c.posts() == 2  # A was not submitted again, B was submitted once
    assert len(c.results()) == 2
    assert {a.posted_message_ids[0], b.posted_message_ids[0]} == {m.id for m in c.results()}
    assert c.hub.balance(c.key) == 1000 - 2 * COST
    await assert_all_closed(c)


async def test_killed_during_submission_is_unknown_told_and_never_resent(crash: Crash) -> None:
    c = crash
    await c.bot.start()
    c.hub.hang_next(1, seconds=60, paths=[GENERATIONS])
    await c.imagine()
    await c.hub.wait_requests(1, GENERATIONS)  # the POST is at the hub, unanswered
    c.kill_now()
    (job,) = await c.jobs()
    assert job.status == JobStatus.SUBMITTING

    await c.restart()
    (job,) = await c.wait_jobs(JobStatus.UNKNOWN)
    # Told on the status message (or, without a usable token, in the channel).
    told = await c.fake.wait_message(
        c.d.images, lambda m: "won't send it again" in str(m.embeds), 10, source=None
    )
    assert f"job #{job.id}" in str(told.embeds)
    await c.fake.wait_message(c.d.mod_log, lambda m: f"job #{job.id}" in str(m.embeds), 10)
    assert c.posts() == 1
    (reservation,) = await c.reservations()
    assert reservation.state == "settled" and reservation.actual == COST  # counted: it may have been charged


@pytest.mark.parametrize("stage", ["after_download", "during_posting"])
async def test_killed_around_posting_posts_exactly_once(crash: Crash, stage: str) -> None:
    c = crash
    await c.bot.start()
    killed = c.on_discord_request(is_result_upload, before=stage == "after_download")
    await c.imagine()
    (job,) = await c.wait_jobs(JobStatus.SUCCEEDED, JobStatus.POSTED)
    await c.fake.wait_for(killed, 10, what="the result upload")
    assert c.downloads() == 1
    if stage == "during_posting":
        assert len(c.results()) == 1  # Discord has it; the bot never heard back

    await c.restart()
    (job,) = await c.wait_jobs(JobStatus.POSTED)
    (message,) = c.results()
    assert job.posted_message_ids == [message.id]
    assert c.downloads() == 2  # fetched again after the restart, posted once
    assert c.posts() == 1
    await assert_all_closed(c)


async def test_killed_during_a_channel_post_posts_exactly_once(crash: Crash) -> None:
    """The interaction token is dead, so the result goes to the channel; Discord stores the post but
    the bot dies before hearing back. After the restart it must not post a second copy."""
    c = crash
    c.hub.set_hold(True)
    await c.bot.start()
    channel_post = f"/channels/{c.d.images}/messages"
    killed = c.on_discord_request(lambda r: r.path == channel_post and bool(r.files), before=False)
    it = await c.imagine()
    gen = await c.hub.wait_generation_created(1)
    await c.hub.wait_polls(gen.id, 1)
    c.fake.expire_interaction(it)
    c.hub.complete(gen.id)
    await c.fake.wait_for(killed, 10, what="the result post")
    assert len(c.results()) == 1

    await c.restart()
    (job,) = await c.wait_jobs(JobStatus.POSTED, JobStatus.FAILED)
    (message,) = c.results()
    assert job.status == JobStatus.POSTED and job.posted_message_ids == [message.id]
