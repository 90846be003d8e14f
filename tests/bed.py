"""The end-to-end bed: the real bot (in this process) against the fake Discord and the hub emulator.

`bed` starts everything on 127.0.0.1: the emulator with a funded key set for the default
guild, a fresh database, and the real `ImageHubBot` logged into the fake Discord with its
commands synced. It runs on SQLite; mark a test `@pytest.mark.parametrize("bed_backend",
["sqlite", "postgres"], indirect=True)` to run it on PostgreSQL too. The bot runs with
production's `Timings` unless the test (or its module) is marked `@pytest.mark.timings(**changes)`,
e.g. `timings(poll_first=0.05)`: the same code with shorter clocks. Registered as a plugin by
the root conftest, so every suite can use `bed` and `hub`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet

from bot.config import load_settings
from bot.hub.emulator import EmulatorState, serving
from bot.jobs import TERMINAL, Job, JobStatus
from bot.scopes import personal_scope
from bot.services import Services
from bot.timings import Timings
from cogs.client import ImageHubBot
from tests.botprocess import BotProcess as BotProcess  # the bot as a child process, with the bed's fixtures
from tests.databases import PG_ENV, REQUIRE_ENV, fresh_database_url, pg_base_url, require_postgres
from tests.fakediscord.interactions import FakeInteraction
from tests.fakediscord.models import DefaultSetup, FakeAttachment, FakeMember, FakeMessage
from tests.fakediscord.server import FakeDiscord


@pytest.fixture
def bed_backend(request: pytest.FixtureRequest) -> str:
    """SQLite unless parametrized indirectly; PostgreSQL skips (or fails in CI) without a server."""
    name: str = getattr(request, "param", "sqlite")
    if name == "postgres" and pg_base_url() is None:
        if require_postgres():
            pytest.fail(f"{REQUIRE_ENV}=1 but {PG_ENV} is not set", pytrace=False)
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    return name


@pytest.fixture
def bed_database_url(bed_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh migrated database for the bed, on `bed_backend`."""
    server = request.getfixturevalue("_postgres_server") if bed_backend == "postgres" else None
    template = request.getfixturevalue("_sqlite_template") if bed_backend == "sqlite" else None
    yield from fresh_database_url(bed_backend, True, tmp_path, server, template)


@dataclass
class Bed:
    fake: FakeDiscord
    d: DefaultSetup
    hub: EmulatorState
    hub_url: str
    key: str
    bot: ImageHubBot
    services: Services
    database_url: str
    encryption_key: str
    timings: Timings

    @property
    def guild_id(self) -> int:
        return self.d.guild.id

    async def imagine(
        self,
        member: FakeMember | None = None,
        channel_id: int | None = None,
        attachments: tuple[FakeAttachment, ...] = (),
        **options: Any,
    ) -> FakeInteraction:
        opts: dict[str, Any] = {"prompt": "a lighthouse at dusk", **options}
        for i, attachment in enumerate(attachments, start=1):
            opts[f"reference{i}"] = attachment
        return await self.fake.slash(
            self.d.guild, channel_id or self.d.images, member or self.d.alice, "imagine", opts
        )

    async def wait_job(self, job_id: int, *statuses: JobStatus, timeout: float = 10.0) -> Job:
        """Wait until the job row reaches one of `statuses` (woken by every Discord request)."""
        return await self.wait_row(
            job_id, lambda job: job.status in statuses, timeout=timeout, what=f"reached {statuses}"
        )

    async def wait_row(
        self, job_id: int, ok: Callable[[Job], bool], *, timeout: float = 10.0, what: str = "matched"
    ) -> Job:
        """Wait until the job row satisfies `ok` (checked after every engine step)."""

        async def reached() -> Job | None:
            job = await self.services.jobs.get(job_id)
            return job if job is not None and ok(job) else None

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # Every change to a job is made by a scheduler step: wait for the next one. Armed before
            # the check, so a step that finishes during the check still wakes this wait.
            step = asyncio.ensure_future(self.services.engine.wait_step())
            try:
                if (job := await reached()) is not None:
                    return job
                remaining = deadline - loop.time()
                if remaining <= 0:
                    current = await self.services.jobs.get(job_id)
                    raise AssertionError(f"job {job_id} never {what}: {current}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(step, remaining)
            finally:
                step.cancel()

    async def job_of(self, it: FakeInteraction, timeout: float = 10.0) -> Job:
        """The job an /imagine interaction created (its id is in the status message's footer)."""

        def job_id() -> int | None:
            original = it.original_message
            if original is None:
                return None
            for embed in original.embeds:  # the footer ends with "job #<id>", in any language
                match = re.search(r"#(\d+)$", (embed.get("footer") or {}).get("text") or "")
                if match:
                    return int(match.group(1))
            return None

        found = await self.fake.wait_for(job_id, timeout, what="the job's status message")
        job = await self.services.jobs.get(found)
        # The server's job, or one in the member's own space (a DM, a server without the bot).
        assert job is not None and job.guild_id in (it.guild_id, personal_scope(it.member.id)), job
        if job.status_message_id is None and job.status not in TERMINAL:
            # The first answer named the job before the launch stored its message id (it holds
            # the job's lease until then, and the engine's next step comes after that write).
            job = await self.wait_row(
                found,
                lambda j: j.status_message_id is not None or j.status in TERMINAL,
                timeout=timeout,
                what="had its status message stored",
            )
        return job

    async def result_message(self, job: Job, timeout: float = 10.0) -> FakeMessage:
        """The message carrying the job's images (the edited status message or a channel post)."""

        def find() -> FakeMessage | None:
            for message in self.fake.messages(job.channel_id):
                footers = [(e.get("footer") or {}).get("text") or "" for e in message.embeds]
                if message.attachments and any(f.endswith(f"#{job.id}") for f in footers):
                    return message
            return None

        return await self.fake.wait_for(find, timeout, what=f"result of job {job.id}")


def hub_settings(hub_url: str) -> dict[str, str]:
    """The settings that point a bot at the emulator: its URL, and the one exception to "image
    URLs must be on public addresses" that a test on 127.0.0.1 needs: the emulator's own
    host:port (tests/reliability/test_ssrf.py takes it away again)."""
    parts = urlsplit(hub_url)
    return {"HUB_BASE_URL": hub_url, "ALLOW_PRIVATE_IMAGE_HOSTS": f"{parts.hostname}:{parts.port}"}


#: Production's timings, but for the early "thinking…" answer: at 150 ms a loaded CI machine
#: turned refusals the tests read from the first answer into "thinking…" and an edit. Tests of the
#: early answer itself set `early_answer` (or `early_answer_in_burst`) with a `timings` mark.
TEST_TIMINGS = Timings(early_answer=2.0)


def timings_for(request: pytest.FixtureRequest, base: Timings | None = None) -> Timings:
    """`base` (`TEST_TIMINGS` by default) changed by the test's `timings` marks; the nearest wins
    (a test's own over its module's)."""
    changes: dict[str, Any] = {}
    for mark in reversed(list(request.node.iter_markers("timings"))):
        changes.update(mark.kwargs)
    return dataclasses.replace(base or TEST_TIMINGS, **changes)


async def start_bot(
    fake: FakeDiscord, settings_kwargs: dict[str, Any], timings: Timings | None = None
) -> tuple[ImageHubBot, Services]:
    settings = load_settings(_env_file=None, **settings_kwargs)
    services = await Services.open(settings, timings=timings)
    # The fake sends every GUILD_CREATE at once: no need for discord.py's 2 s wait for stragglers.
    bot = ImageHubBot(services, guild_ready_timeout=0.05)
    task = asyncio.create_task(bot.start(fake.token))
    bot._test_task = task  # type: ignore[attr-defined]
    await fake.wait_ready()
    await fake.wait_commands_synced()
    await bot.wait_until_ready()
    return bot, services


async def stop_bot(bot: ImageHubBot) -> None:
    await bot.close()
    task: asyncio.Task[None] = bot._test_task  # type: ignore[attr-defined]
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def hub() -> AsyncIterator[tuple[str, EmulatorState]]:
    async with serving(EmulatorState(delay=0.2)) as (url, state):
        yield url, state


@contextlib.asynccontextmanager
async def open_bed(
    fake_discord: FakeDiscord,
    hub: tuple[str, EmulatorState],
    database_url: str,
    timings: Timings,
    extra_settings: dict[str, str] | None = None,
) -> AsyncIterator[Bed]:
    """The bot on `database_url` with `timings` (and `extra_settings`, environment names), logged into
    `fake_discord`, its key set at `hub`."""
    hub_url, state = hub
    key = state.add_key(credits=10_000)
    encryption_key = Fernet.generate_key().decode()
    settings = {
        "DISCORD_TOKEN": fake_discord.token,
        "ENCRYPTION_KEY": encryption_key,
        "DATABASE_URL": database_url,
        **hub_settings(hub_url),
        **(extra_settings or {}),
    }
    bot, services = await start_bot(fake_discord, settings, timings)
    d = fake_discord.default
    await services.keys.set_key(d.guild.id, key, d.admin.id)
    try:
        yield Bed(
            fake=fake_discord,
            d=d,
            hub=state,
            hub_url=hub_url,
            key=key,
            bot=bot,
            services=services,
            database_url=database_url,
            encryption_key=encryption_key,
            timings=timings,
        )
    finally:
        await stop_bot(bot)


@pytest.fixture
async def bed(
    fake_discord: FakeDiscord,
    hub: tuple[str, EmulatorState],
    bed_database_url: str,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Bed]:
    extra: dict[str, str] = {}
    for mark in reversed(list(request.node.iter_markers("settings"))):
        extra.update(mark.kwargs)
    async with open_bed(fake_discord, hub, bed_database_url, timings_for(request), extra) as bed:
        yield bed
