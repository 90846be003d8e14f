"""/config usage (a PNG chart beside the numbers) and the one low-balance alert."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from bot.jobs import JobStatus
from tests.bed import Bed
from tests.e2e.queue_support import text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def test_usage_attaches_a_chart_beside_the_numbers(bed: Bed) -> None:
    jobs = [
        await bed.job_of(await bed.imagine(prompt="one")),
        await bed.job_of(await bed.imagine(prompt="two", count=2)),
        await bed.job_of(await bed.imagine(bed.d.bob, prompt="three")),
    ]
    done = [await bed.wait_job(job.id, JobStatus.POSTED) for job in jobs]
    alice = sum(job.charged_credits or 0 for job in done[:2])
    bob = done[2].charged_credits or 0

    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", "usage"], {"days": 7})
    cb = await it.callback()
    assert cb.type == 5 and cb.ephemeral
    reply = await it.original()
    shown = str(reply.embeds)
    assert f"**{alice + bob:,}** credits over the last 7 days" in shown
    assert f"1. <@{bed.d.alice.id}> — {alice:,}" in shown and f"2. <@{bed.d.bob.id}> — {bob:,}" in shown
    assert "attachment://usage.png" in shown
    (chart,) = reply.attachments
    assert chart.filename == "usage.png" and chart.data.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(chart.data))
    image.load()
    assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 200


async def test_one_low_balance_alert_until_the_balance_recovers(bed: Bed) -> None:
    reply = await (
        await bed.fake.slash(
            bed.d.guild,
            bed.d.general,
            bed.d.admin,
            ["config", "modlog"],
            {"channel": bed.fake.channel(bed.d.mod_log)},
        )
    ).callback()
    assert reply.ephemeral
    reply = await (
        await bed.fake.slash(
            bed.d.guild, bed.d.general, bed.d.admin, ["config", "alerts"], {"low_balance": 20_000}
        )
    ).callback()
    assert "below 20,000 credits" in text(reply) and f"<#{bed.d.mod_log}>" in text(reply)

    def alerts() -> list[object]:
        return [m for m in bed.fake.messages(bed.d.mod_log) if "balance is low" in str(m.embeds)]

    # Three jobs finish with the balance below the threshold, at the same time: one alert.
    jobs = await asyncio.gather(*(bed.imagine(prompt=f"job {i}") for i in range(3)))
    done = [await bed.wait_job((await bed.job_of(it)).id, JobStatus.POSTED) for it in jobs]
    assert len(done) == 3
    await bed.fake.wait_for(lambda: len(alerts()) == 1, what="the low-balance alert")
    assert "threshold of 20,000" in str(alerts()[0].embeds)
    job = await bed.job_of(await bed.imagine(prompt="still low"))
    await bed.wait_job(job.id, JobStatus.POSTED)
    assert len(alerts()) == 1 and (await bed.services.guilds.get(bed.guild_id)).low_balance_alerted

    # Topped up: the alert re-arms; low again: a second alert.
    bed.hub.set_credits(bed.key, 50_000)
    job = await bed.job_of(await bed.imagine(prompt="topped up"))
    await bed.wait_job(job.id, JobStatus.POSTED)
    assert not (await bed.services.guilds.get(bed.guild_id)).low_balance_alerted
    bed.hub.set_credits(bed.key, 1_000)
    job = await bed.job_of(await bed.imagine(prompt="low again"))
    await bed.wait_job(job.id, JobStatus.POSTED)
    await bed.fake.wait_for(lambda: len(alerts()) == 2, what="a second alert after the recovery")
    assert len(alerts()) == 2

    off = await (
        await bed.fake.slash(
            bed.d.guild, bed.d.general, bed.d.admin, ["config", "alerts"], {"low_balance": 0}
        )
    ).callback()
    assert "off" in text(off)
    assert (await bed.services.guilds.get(bed.guild_id)).low_balance_threshold is None
