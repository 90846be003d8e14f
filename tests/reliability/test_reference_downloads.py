"""Reference-image downloads are bounded by the member's budget and per member and per server.

The attachments live on a server of the test's own that counts the downloads and can hold them
(Discord's CDN, slow), so the test sees how many the bot makes and how many at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from PIL import Image

from bot import references
from bot.engine import Engine, Tools
from bot.jobs import JobStatus
from bot.references import ReferenceCache
from cogs.publisher import publisher_of
from tests.bed import Bed
from tests.fakediscord import FakeAttachment, FakeInteraction
from tests.reliability.conftest import assert_nothing_held
from tests.reliability.test_limits_race import decision, outcome


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (seed % 256, 9, 9)).save(out, format="PNG")
    return out.getvalue()


@dataclass
class SlowCdn:
    """Serves PNGs at /<n>.png; while `hold` is set, each download waits for `release`."""

    url: str = ""
    downloads: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_at_once: int = 0
    hold: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        self.downloads.append(request.path)
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        async with self.arrived:
            self.arrived.notify_all()
        try:
            if self.hold:
                await self.release.wait()
            seed = int(request.match_info["n"])
            return web.Response(body=png(seed), content_type="image/png")
        finally:
            self.in_flight -= 1

    async def wait_in_flight(self, n: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: self.in_flight >= n), 10)

    def attachments(self, start: int, count: int) -> tuple[FakeAttachment, ...]:
        return tuple(
            FakeAttachment(f"ref{n}.png", png(n), content_type="image/png", url=f"{self.url}/{n}.png")
            for n in range(start, start + count)
        )


@pytest.fixture
async def cdn() -> AsyncIterator[SlowCdn]:
    server = SlowCdn()
    app = web.Application()
    app.router.add_get("/{n:\\d+}.png", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


COST = 8
REFS = 4


async def test_a_member_with_budget_for_one_generation_cannot_make_the_bot_download_more(
    rbed: Bed, cdn: SlowCdn
) -> None:
    await rbed.services.quotas.policies.set_default(rbed.guild_id, COST)  # one generation a day
    dispatched = await asyncio.gather(
        *(rbed.imagine(prompt=f"try {i}", attachments=cdn.attachments(i * REFS, REFS)) for i in range(6))
    )
    outcomes = [await outcome(it) for it in dispatched]
    accepted = [o for o in outcomes if o.startswith("job ")]
    assert len(accepted) == 1, outcomes
    assert len(cdn.downloads) <= REFS, cdn.downloads  # one request's references, not six
    for refused in (o for o in outcomes if not o.startswith("job ")):
        assert "credits" in refused or "still downloading" in refused, refused
    job = await rbed.services.jobs.get(int(accepted[0].split()[1]))
    assert job is not None
    await rbed.wait_job(job.id, JobStatus.POSTED)
    await assert_nothing_held(rbed)


async def test_concurrent_reference_downloads_are_capped_per_member_and_per_server(
    rbed: Bed, cdn: SlowCdn
) -> None:
    cdn.hold = True
    first = await rbed.imagine(prompt="first", attachments=cdn.attachments(0, 2))
    await cdn.wait_in_flight(1)
    # The same member again while the first request's images are downloading: refused at once.
    again = await rbed.imagine(prompt="again", attachments=cdn.attachments(10, 2))
    assert "still downloading" in await outcome(again)

    # Other members: up to the server's cap download at once, the others are refused.
    members = [rbed.d.guild.add_member(f"m{i}") for i in range(references.MAX_GUILD_REFERENCE_DOWNLOADS + 2)]
    others = [
        await rbed.imagine(member=m, prompt=f"member {i}", attachments=cdn.attachments(20 + 2 * i, 2))
        for i, m in enumerate(members)
    ]
    await cdn.wait_in_flight(references.MAX_GUILD_REFERENCE_DOWNLOADS)
    for it in others:
        await it.callback()
    # Refused at once, or (on a loaded machine) after the early "thinking…" answer: by the text.
    over_cap = len(others) - (references.MAX_GUILD_REFERENCE_DOWNLOADS - 1)

    def refused() -> list[FakeInteraction] | None:
        found = [it for it in others if (d := decision(it)) is not None and not d.startswith("job ")]
        return found if len(found) >= over_cap else None

    busy = await rbed.fake.wait_for(refused, 10, what="the refusals of the members over the server's cap")
    assert len(busy) == over_cap
    for it in busy:
        assert "try again" in (decision(it) or "").lower()
    assert cdn.in_flight == references.MAX_GUILD_REFERENCE_DOWNLOADS

    cdn.release.set()
    started = [first] + [it for it in others if it not in busy]
    for it in started:
        job = await rbed.job_of(it)
        await rbed.wait_job(job.id, JobStatus.POSTED)
    assert cdn.most_at_once == references.MAX_GUILD_REFERENCE_DOWNLOADS
    # Nothing was reserved for the refused ones.
    for member in members:
        jobs = await rbed.services.jobs.list_for_member(rbed.guild_id, member.id)
        budget = await rbed.services.quotas.ledger.budget(rbed.guild_id, member.id, ())
        assert budget.spent + budget.reserved == COST * len(jobs)
    await assert_nothing_held(rbed)


# -- the reference cache with several processes ----------------------------------------------------------


@dataclass
class OtherProcess:
    """Another bot process's engine on the same database: it claims and submits jobs this
    process stored (and downloads their references again from Discord, its cache being empty)."""

    engine: Engine

    @classmethod
    def start(cls, bed: Bed, owner: str, references: ReferenceCache) -> OtherProcess:
        services = bed.services
        tools = Tools(
            jobs=services.jobs,
            ledger=services.quotas.ledger,
            hubs=services.hubs,
            references=references,
            balance=services.balance,
            owner=owner,
            timings=bed.timings,
        )
        engine = Engine(tools, queue=services.queue_runner)
        engine.start(publisher_of(bed.bot))
        return cls(engine)

    async def stop(self) -> None:
        await asyncio.wait_for(self.engine.stop(), 10)

    async def wait_posted(self, bed: Bed, job_id: int) -> None:
        self.engine.wake()  # the stored job is due (the bot woke its own, stopped, engine)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            step = asyncio.ensure_future(self.engine.wait_step())
            try:
                job = await bed.services.jobs.get(job_id)
                assert job is not None
                if job.status is JobStatus.POSTED:
                    return
                assert not job.is_terminal, job
                assert loop.time() < deadline, job
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(step, deadline - loop.time())
            finally:
                step.cancel()


async def test_the_reference_cache_keeps_caching_when_other_processes_submit_its_jobs(
    rbed: Bed, cdn: SlowCdn
) -> None:
    """This process checks a request's references and keeps them for the submission; when another
    process submits the job, the entry is never used. Such entries must not fill the cache for
    good: a later job submitted here still finds its references without downloading them again."""
    await rbed.services.engine.stop()  # this process's engine: stopped while "the other" works
    size = len(png(0))
    cache = ReferenceCache(rbed.services.fetch_attachment, max_bytes=3 * size)
    rbed.services.imagine.reference_cache = cache  # what /imagine fills in this process

    other = OtherProcess.start(rbed, "other-host:1:aaaa", ReferenceCache(rbed.services.fetch_attachment))
    for i in range(5):
        it = await rbed.imagine(prompt=f"elsewhere {i}", attachments=cdn.attachments(i, 1))
        await other.wait_posted(rbed, (await rbed.job_of(it)).id)
    await other.stop()
    assert len(cdn.downloads) == 10  # checked here, downloaded again by the other process

    here = OtherProcess.start(rbed, rbed.services.owner, cache)  # this process's engine again
    it = await rbed.imagine(prompt="submitted here", attachments=cdn.attachments(100, 1))
    await here.wait_posted(rbed, (await rbed.job_of(it)).id)
    await here.stop()
    assert cdn.downloads.count("/100.png") == 1  # kept from the check to the submission
    assert cache.size_bytes() <= 3 * size
