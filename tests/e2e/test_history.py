"""/history, /show (re-posted with working buttons) and the Info button."""

from __future__ import annotations

from bot.jobs import JobStatus
from tests.bed import Bed
from tests.e2e.queue_support import custom_ids, text


async def test_history_lists_status_cost_and_a_jump_link(bed: Bed) -> None:
    posted = await bed.wait_job(
        (await bed.job_of(await bed.imagine(prompt="a harbour at night"))).id, JobStatus.POSTED
    )
    bed.hub.fail_next(1)
    failed = await bed.wait_job(
        (await bed.job_of(await bed.imagine(prompt="a broken one"))).id, JobStatus.FAILED
    )

    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "history", {})
    cb = await it.callback()
    shown = text(cb)
    assert cb.ephemeral
    link = f"https://discord.com/channels/{bed.guild_id}/{posted.channel_id}/{posted.posted_message_ids[0]}"
    assert link in shown and f"#{posted.id}" in shown and f"{posted.charged_credits} credits" in shown
    assert f"#{failed.id}" in shown and "failed" in shown and "nothing charged" in shown
    assert "a harbour at night" in shown
    assert shown.index(f"#{failed.id}") < shown.index(f"#{posted.id}")  # newest first

    # Someone else's history needs Manage Server.
    refused = await (
        await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.bob, "history", {"member": bed.d.alice})
    ).callback()
    assert refused.ephemeral and "Manage Server" in text(refused)
    allowed = await (
        await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, "history", {"member": bed.d.alice})
    ).callback()
    assert allowed.ephemeral and link in text(allowed)
    empty = await (await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.bob, "history", {})).callback()
    assert "hasn't generated anything" in text(empty)


async def test_show_reposts_a_result_whose_buttons_work(bed: Bed) -> None:
    job = await bed.job_of(await bed.imagine(prompt="a fox in the snow", count=2))
    job = await bed.wait_job(job.id, JobStatus.POSTED)
    generation = bed.hub.generations[job.hub_generation_id or ""]
    expected = [bed.hub.image_bytes(image.id) for image in generation.images]
    downloads_before = len([r for r in bed.hub.requests if r.path.startswith("/files/")])

    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.bob, "show", {"job_id": job.id})
    cb = await it.callback()
    assert cb.type == 5 and not cb.ephemeral
    shown = await bed.fake.wait_message(
        bed.d.general, lambda m: bool(m.attachments), source=("followup", "interaction")
    )
    assert [a.data for a in shown.attachments] == expected
    assert len([r for r in bed.hub.requests if r.path.startswith("/files/")]) == downloads_before + 2
    assert "a fox in the snow" in str(shown.embeds) and f"job #{job.id}" in str(shown.embeds)
    assert set(custom_ids(shown)) == {
        f"imagine:{action}:{job.id}" for action in ("reroll", "reference", "info", "delete")
    } | {f"imagine:{action}:{job.id}:{n}" for action in ("upscale", "vary") for n in (1, 2)}

    # The buttons of the re-posted result work.
    info = await (await bed.fake.press_button(shown, f"imagine:info:{job.id}", bed.d.bob)).callback()
    assert info.ephemeral and "a fox in the snow" in text(info)
    assert "/imagine prompt:a fox in the snow model:gpt-image-2" in text(info) and "count:2" in text(info)
    reroll = await bed.fake.press_button(shown, f"imagine:reroll:{job.id}", bed.d.bob)
    again = await bed.job_of(reroll)
    assert (
        again.user_id == bed.d.bob.id and again.params.prompt == "a fox in the snow" and again.params.n == 2
    )
    await bed.wait_job(again.id, JobStatus.POSTED)
    await (await bed.fake.press_button(shown, f"imagine:delete:{job.id}", bed.d.alice)).callback()
    await bed.fake.wait_for(lambda: shown.deleted, what="the re-posted result deleted by its author")


async def test_show_only_finds_this_servers_posted_jobs(bed: Bed) -> None:
    other = bed.fake.add_guild("Other Server")
    channel = other.add_channel("art")
    carol = other.add_member("carol")
    await bed.fake.join_guild(other)
    other_key = bed.hub.add_key(credits=500)
    await bed.services.keys.set_key(other.id, other_key, other.owner.id)
    theirs = await bed.job_of(await bed.fake.slash(other, channel, carol, "imagine", {"prompt": "theirs"}))
    await bed.wait_job(theirs.id, JobStatus.POSTED)

    for job_id in (theirs.id, 987_654):
        cb = await (
            await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "show", {"job_id": job_id})
        ).callback()
        assert cb.ephemeral and "can't find that generation" in text(cb)

    bed.hub.fail_next(1)
    failed = await bed.wait_job((await bed.job_of(await bed.imagine())).id, JobStatus.FAILED)
    cb = await (
        await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "show", {"job_id": failed.id})
    ).callback()
    assert cb.ephemeral and "no posted result" in text(cb)


async def test_info_attaches_the_imagine_line_when_the_prompt_is_long(bed: Bed) -> None:
    prompt = "a very detailed scene " * 100  # about 2200 characters
    job = await bed.wait_job((await bed.job_of(await bed.imagine(prompt=prompt))).id, JobStatus.POSTED)
    message = await bed.result_message(job)
    press = await bed.fake.press_button(message, f"imagine:info:{job.id}", bed.d.bob)
    cb = await press.callback()
    assert cb.ephemeral and prompt.strip() in text(cb)
    (attached,) = cb.attachments
    assert attached.filename == f"imagine-{job.id}.txt"
    assert attached.data.decode().startswith("/imagine prompt:a very detailed scene")
