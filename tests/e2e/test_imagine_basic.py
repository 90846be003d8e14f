"""/imagine from command to posted files."""

from __future__ import annotations

from bot.jobs import JobStatus
from tests.bed import Bed


async def test_models_lists_gpt_image_2(bed: Bed) -> None:
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "models")
    cb = await it.callback()
    assert cb.ephemeral
    assert "gpt-image-2" in str(cb.embeds)


async def test_imagine_posts_the_emulators_images(bed: Bed) -> None:
    it = await bed.imagine(count=2, resolution="2K", aspect="16:9")
    cb = await it.callback()
    assert cb.accepted and not cb.ephemeral
    job = await bed.job_of(it)
    job = await bed.wait_job(job.id, JobStatus.POSTED)
    message = await bed.result_message(job)
    generation = bed.hub.generations[job.hub_generation_id]
    expected = [bed.hub.image_bytes(image.id) for image in generation.images]
    assert [a.data for a in message.attachments] == expected
    assert job.charged_credits == 20
    assert (await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())).spent == 20
