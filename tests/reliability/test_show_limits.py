"""/show downloads up to 4 x 60 MB each time: it is limited per member and per server.

The hub's image downloads are held (a slow CDN, the emulator's `hold_images`), so the test sees
which calls the bot takes on while others are still downloading.
"""

from __future__ import annotations

from bot import history
from bot.jobs import Job, JobStatus
from tests.bed import Bed
from tests.fakediscord import FakeInteraction
from tests.fakediscord.models import FakeMember
from tests.reliability.conftest import hub_downloads, text_of


async def posted_job(bed: Bed) -> Job:
    job = await bed.job_of(await bed.imagine(prompt="worth showing again", count=2))
    return await bed.wait_job(job.id, JobStatus.POSTED)


async def show(bed: Bed, member: FakeMember, job: Job) -> FakeInteraction:
    return await bed.fake.slash(bed.d.guild, bed.d.general, member, "show", {"job_id": job.id})


async def reposts(bed: Bed, job: Job, n: int) -> None:
    def count() -> bool:
        return len([m for m in bed.fake.messages(bed.d.general) if m.attachments]) >= n

    await bed.fake.wait_for(count, what=f"{n} re-posts of job {job.id}")


async def test_show_is_limited_to_one_at_a_time_per_member_and_a_few_per_server(bed: Bed) -> None:
    job = await posted_job(bed)
    downloads = hub_downloads(bed)
    bed.hub.hold_images(True)

    first = await show(bed, bed.d.alice, job)
    assert (await first.callback()).type == 5  # taken on: "thinking…", downloading
    again = await (await show(bed, bed.d.alice, job)).callback()
    assert again.ephemeral and "still being posted" in text_of(again), text_of(again)

    members = [bed.d.guild.add_member(f"viewer{i}") for i in range(history.MAX_GUILD_SHOWS + 1)]
    answers = [await (await show(bed, m, job)).callback() for m in members]
    taken = [cb for cb in answers if cb.type == 5]
    busy = [cb for cb in answers if cb.ephemeral]
    assert len(taken) == history.MAX_GUILD_SHOWS - 1 and len(busy) == len(members) - len(taken)
    for cb in busy:
        assert "try again" in text_of(cb).lower(), text_of(cb)

    bed.hub.hold_images(False)
    await reposts(bed, job, history.MAX_GUILD_SHOWS)
    assert hub_downloads(bed) - downloads == 2 * history.MAX_GUILD_SHOWS  # two images each


async def test_show_is_rate_limited_per_member(bed: Bed) -> None:
    job = await posted_job(bed)
    for n in range(1, history.MEMBER_SHOWS_PER_MINUTE + 1):
        cb = await (await show(bed, bed.d.alice, job)).callback()
        assert cb.type == 5
        await reposts(bed, job, n)
    downloads = hub_downloads(bed)
    cb = await (await show(bed, bed.d.alice, job)).callback()
    assert cb.ephemeral and "minute" in text_of(cb), text_of(cb)
    assert hub_downloads(bed) == downloads
    # Another member is not held back by alice's use.
    assert (await (await show(bed, bed.d.bob, job)).callback()).type == 5
