"""Per-image Upscale and Vary: one button per image, charged to whoever presses, the image from the hub."""

from __future__ import annotations

import dataclasses

import pytest

from bot.hub.sizes import size_for
from bot.jobs import JobSource, JobStatus, SourceAction
from bot.quotas import LedgerKind
from tests.bed import Bed, hub_settings, start_bot, stop_bot
from tests.e2e.queue_support import FAST_POLLS, custom_ids, text
from tests.fakediscord.models import FakeMessage

BOTH = pytest.mark.parametrize("bed_backend", ["sqlite", "postgres"], indirect=True)
pytestmark = FAST_POLLS


def _forge(message: FakeMessage, custom_id: str) -> FakeMessage:
    """A button the bot never drew, as a tampered client would claim (discord.py only routes ids
    found on the message, so the forged one is put there)."""
    message.components = [
        *message.components[:4],
        {"type": 1, "components": [{"type": 2, "style": 2, "label": "x", "custom_id": custom_id}]},
    ]
    return message


async def _posted(bed: Bed, count: int = 2, prompt: str = "a lighthouse at dusk") -> tuple[int, FakeMessage]:
    job = await bed.job_of(await bed.imagine(prompt=prompt, count=count, aspect="16:9"))
    job = await bed.wait_job(job.id, JobStatus.POSTED)
    return job.id, bed.fake.message(job.posted_message_ids[0])


@BOTH
async def test_each_image_gets_upscale_and_vary_charged_to_the_presser(bed: Bed) -> None:
    source_id, result = await _posted(bed, count=2)
    source = await bed.services.jobs.get(source_id)
    assert source is not None
    generation = bed.hub.generations[source.hub_generation_id or ""]
    images = [bed.hub.image_bytes(image.id) for image in generation.images]
    ids = custom_ids(result)
    for action in ("upscale", "vary"):
        assert [i for i in ids if i.startswith(f"imagine:{action}:")] == [
            f"imagine:{action}:{source_id}:{n}" for n in (1, 2)
        ]
    rows = [row for row in result.components if row.get("type") == 1]
    assert len(rows) == 3 and all(len(row["components"]) <= 5 for row in rows)
    assert [c["label"] for c in rows[1]["components"]] == ["U1", "U2"]
    assert [c["label"] for c in rows[2]["components"]] == ["V1", "V2"]
    alice_spent = (await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())).spent

    # Bob upscales the second image: 4K, the same prompt and aspect, that image as the one reference.
    up = await bed.job_of(await bed.fake.press_button(result, f"imagine:upscale:{source_id}:2", bed.d.bob))
    up = await bed.wait_job(up.id, JobStatus.POSTED)
    sent = bed.hub.requests_to("/api/v1/images/generations", "POST")[-1]
    assert [r.data for r in sent.references] == [images[1]]
    assert sent.fields["prompt"] == "a lighthouse at dusk" and sent.fields["size"] == size_for("16:9", "4K")
    assert sent.fields.get("n") in (None, 1, "1")
    assert up.user_id == bed.d.bob.id and up.params.tier == "4K" and up.params.n == 1
    assert up.source == JobSource(source_id, SourceAction.UPSCALE, 2)
    assert up.cost == 12 and up.charged_credits == 12

    # And varies the first: the same tier (1K).
    vary = await bed.job_of(await bed.fake.press_button(result, f"imagine:vary:{source_id}:1", bed.d.bob))
    vary = await bed.wait_job(vary.id, JobStatus.POSTED)
    sent = bed.hub.requests_to("/api/v1/images/generations", "POST")[-1]
    assert [r.data for r in sent.references] == [images[0]]
    assert sent.fields["size"] == size_for("16:9", "1K") and vary.params.tier == "1K" and vary.cost == 8
    assert vary.source == JobSource(source_id, SourceAction.VARY, 1)

    # The presser paid, at the target tier's cost; the source's author nothing more.
    bob = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.bob.id, ())
    assert bob.spent == 12 + 8
    assert (await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())).spent == alice_spent
    ledger = await bed.services.quotas.reports.recent(bed.guild_id, bed.d.bob.id, 100)
    assert sorted(e.credits for e in ledger if e.kind == LedgerKind.RESERVE) == [-12, -8]
    assert [e for e in ledger if e.kind == LedgerKind.RELEASE] == [], ledger  # settled at cost

    # Info and /history name the source.
    up_result = bed.fake.message(up.posted_message_ids[0])
    info = await (await bed.fake.press_button(up_result, f"imagine:info:{up.id}", bed.d.alice)).callback()
    assert info.ephemeral and f"upscale of #{source_id} image 2" in text(info)
    history = await (await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.bob, "history", {})).callback()
    assert f"upscale of #{source_id} image 2" in text(history)
    assert f"variation of #{source_id} image 1" in text(history)
    # A one-image result offers U1 and V1 too.
    assert {f"imagine:upscale:{up.id}:1", f"imagine:vary:{up.id}:1"} <= set(custom_ids(up_result))


async def test_a_hub_failure_refunds_the_presser(bed: Bed) -> None:
    source_id, result = await _posted(bed, count=1)
    bed.hub.fail_next(1)
    job = await bed.job_of(await bed.fake.press_button(result, f"imagine:vary:{source_id}:1", bed.d.bob))
    failed = await bed.wait_job(job.id, JobStatus.FAILED)
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.bob.id, ())
    assert budget.spent == budget.reserved == 0
    kinds = [
        (e.kind, e.credits) for e in await bed.services.quotas.reports.recent(bed.guild_id, bed.d.bob.id)
    ]
    assert sorted(kinds) == sorted([(LedgerKind.RESERVE, -8), (LedgerKind.SETTLE_REFUND, 8)])
    assert failed.source == JobSource(source_id, SourceAction.VARY, 1)


@BOTH
async def test_the_buttons_work_after_a_restart_and_after_the_cdn_urls_expired(bed: Bed) -> None:
    bed.fake.cdn_url_lifetime = 2
    source_id, result = await _posted(bed, count=2)
    source = await bed.services.jobs.get(source_id)
    assert source is not None
    generation = bed.hub.generations[source.hub_generation_id or ""]
    images = [bed.hub.image_bytes(image.id) for image in generation.images]

    await stop_bot(bed.bot)
    bed.fake.expire_cdn_urls()  # every URL Discord gave for the posted images is dead now
    settings = {
        "DISCORD_TOKEN": bed.fake.token,
        "ENCRYPTION_KEY": bed.encryption_key,
        "DATABASE_URL": bed.database_url,
        **hub_settings(bed.hub_url),
    }
    bot, services = await start_bot(bed.fake, settings, bed.timings)
    restarted = dataclasses.replace(bed, bot=bot, services=services)
    try:
        cdn_before = [r for r in bed.fake.requests if "/attachments/" in r.path]
        press = await bed.fake.press_button(result, f"imagine:upscale:{source_id}:2", bed.d.moderator)
        up = await restarted.wait_job((await restarted.job_of(press)).id, JobStatus.POSTED)
        sent = bed.hub.requests_to("/api/v1/images/generations", "POST")[-1]
        assert [r.data for r in sent.references] == [images[1]]  # the bytes the hub made, from the hub
        assert up.user_id == bed.d.moderator.id
        # Nothing was asked of Discord for the image: no CDN download, no message fetched again.
        assert [r for r in bed.fake.requests if "/attachments/" in r.path] == cdn_before
        assert not [r for r in bed.fake.requests if r.method == "GET" and f"/messages/{result.id}" in r.path]
    finally:
        await stop_bot(bot)


async def test_a_source_from_another_server_unfinished_or_forged_is_refused(bed: Bed) -> None:
    source_id, result = await _posted(bed, count=1)

    # The same custom id pressed in another server finds nothing there.
    other = bed.fake.add_guild("Other Server")
    channel = other.add_channel("art")
    carol = other.add_member("carol")
    await bed.fake.join_guild(other)
    other_key = bed.hub.add_key(credits=500)
    await bed.services.keys.set_key(other.id, other_key, other.owner.id)
    theirs = await bed.job_of(await bed.fake.slash(other, channel, carol, "imagine", {"prompt": "theirs"}))
    theirs = await bed.wait_job(theirs.id, JobStatus.POSTED)
    foreign = bed.fake.message(theirs.posted_message_ids[0])
    # Carol's client sends a forged id naming this server's job from her own result.
    press = await bed.fake.press_button(
        _forge(foreign, f"imagine:upscale:{source_id}:1"), f"imagine:upscale:{source_id}:1", carol
    )
    cb = await press.callback()
    assert cb.ephemeral and "can't find that generation" in text(cb)

    # An image the result doesn't have, and a forged id without an image number.
    cb = await (
        await bed.fake.press_button(
            _forge(result, f"imagine:vary:{source_id}:7"), f"imagine:vary:{source_id}:7", bed.d.bob
        )
    ).callback()
    assert cb.ephemeral and "has no image 7" in text(cb)
    cb = await (
        await bed.fake.press_button(
            _forge(result, f"imagine:vary:{source_id}"), f"imagine:vary:{source_id}", bed.d.bob
        )
    ).callback()
    assert cb.ephemeral and "no longer supported" in text(cb)

    # A source still at work.
    bed.hub.set_hold(True)
    running = await bed.job_of(await bed.imagine(prompt="still going"))
    status = bed.fake.message(running.status_message_id or 0)
    cb = await (
        await bed.fake.press_button(
            _forge(status, f"imagine:upscale:{running.id}:1"), f"imagine:upscale:{running.id}:1", bed.d.bob
        )
    ).callback()
    assert cb.ephemeral and "once this generation's images are in" in text(cb)

    # Nothing was sent to the hub for any of them, and nobody was charged.
    assert not [r for r in bed.hub.requests_to("/api/v1/images/generations", "POST") if r.references]
    for member in (bed.d.bob.id, carol.id):
        budget = await bed.services.quotas.ledger.budget(bed.guild_id, member, ())
        assert budget.spent == budget.reserved == 0
    bed.hub.set_hold(False)


async def test_an_image_the_hub_no_longer_serves_is_refused_and_nothing_is_spent(bed: Bed) -> None:
    source_id, result = await _posted(bed, count=1)
    posts = len(bed.hub.requests_to("/api/v1/images/generations", "POST"))
    source = await bed.services.jobs.get(source_id)
    assert source is not None
    record = f"/api/v1/generations/{source.hub_generation_id}"
    asked = len([r for r in bed.hub.requests if r.path == record])
    bed.hub.image_404_next(2)  # the stored URL, then the one the hub gives again
    press = await bed.fake.press_button(result, f"imagine:upscale:{source_id}:1", bed.d.bob)
    shown = await press.original(predicate=lambda m: "⚠️" in str(m.embeds))
    assert f"image 1 of generation #{source_id} back from the image hub" in str(shown.embeds)
    assert len(bed.hub.requests_to("/api/v1/images/generations", "POST")) == posts
    assert len([r for r in bed.hub.requests if r.path == record]) == asked + 1  # asked the hub where it is
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.bob.id, ())
    assert budget.spent == budget.reserved == 0
