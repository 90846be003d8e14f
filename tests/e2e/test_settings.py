"""/settings: a member's own defaults, the chain /imagine takes each value from, and where each comes from."""

from __future__ import annotations

from typing import Any

import pytest

from bot.hub.sizes import size_for
from bot.jobs import JobStatus
from bot.member_settings import MemberDefaults
from tests.bed import Bed
from tests.e2e.queue_support import FAST_POLLS, text
from tests.fakediscord.interactions import FakeInteraction

BOTH = pytest.mark.parametrize("bed_backend", ["sqlite", "postgres"], indirect=True)


async def _settings(bed: Bed, **options: Any) -> FakeInteraction:
    return await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "settings", options)


def _sent(bed: Bed) -> dict[str, Any]:
    return dict(bed.hub.requests_to("/api/v1/images/generations", "POST")[-1].fields)


async def test_no_options_shows_the_effective_values_and_where_each_comes_from(bed: Bed) -> None:
    cb = await (await _settings(bed)).callback()
    assert cb.ephemeral
    (embed,) = cb.embeds
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Model"] == "`gpt-image-2` · server default"
    assert fields["Aspect"] == "auto · server default"
    assert fields["Images"] == "1 · model default"
    assert fields["Results"] == "in the channel · server default"
    assert await bed.services.members.get(bed.guild_id, bed.d.alice.id) == MemberDefaults()  # nothing stored


@BOTH
async def test_the_members_settings_are_used_unless_an_option_is_typed(bed: Bed) -> None:
    cb = await (await _settings(bed, aspect="16:9", resolution="2K", count=2, quality="high")).callback()
    assert cb.ephemeral and "Saved" in text(cb)
    (embed,) = cb.embeds
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Aspect"] == "16:9 · your setting" and fields["Resolution"] == "2K · your setting"
    assert fields["Images"] == "2 · your setting" and fields["Model"] == "`gpt-image-2` · server default"
    stored = await bed.services.members.get(bed.guild_id, bed.d.alice.id)
    assert stored == MemberDefaults(aspect="16:9", resolution="2K", quality="high", count=2)
    # Another server's settings and another member's are their own.
    assert await bed.services.members.get(bed.guild_id, bed.d.bob.id) == MemberDefaults()

    job = await bed.wait_job((await bed.job_of(await bed.imagine(prompt="a quiet bay"))).id, JobStatus.POSTED)
    sent = _sent(bed)
    assert sent["size"] == size_for("16:9", "2K") and sent["n"] == 2 and sent["quality"] == "high"
    assert job.cost == 2 * 10

    typed = await bed.job_of(await bed.imagine(prompt="a quiet bay", count=1, aspect="1:1"))
    await bed.wait_job(typed.id, JobStatus.POSTED)
    sent = _sent(bed)
    assert sent["size"] == size_for("1:1", "2K") and sent["n"] == 1  # the typed options win

    # Bob has no settings: the server's defaults.
    await bed.wait_job((await bed.job_of(await bed.imagine(bed.d.bob))).id, JobStatus.POSTED)
    assert _sent(bed)["size"] == size_for("auto", "1K") and _sent(bed)["n"] == 1

    # Reset one, then all: the row goes.
    cb = await (await _settings(bed, reset="count")).callback()
    assert (
        "Images" in text(cb) and (await bed.services.members.get(bed.guild_id, bed.d.alice.id)).count is None
    )
    cb = await (await _settings(bed, reset="all")).callback()
    assert cb.ephemeral and "forgotten" in text(cb)
    assert await bed.services.members.get(bed.guild_id, bed.d.alice.id) == MemberDefaults()


async def test_a_model_that_left_the_hub_falls_back_and_the_member_is_told(bed: Bed) -> None:
    bed.hub.add_model({"id": "tiny-model", "aspect_ratios": ["1:1"], "credits": {"1K": 3}})
    bed.services.catalog.invalidate()
    await (await _settings(bed, model="tiny-model", aspect="1:1")).callback()
    assert (await bed.services.members.get(bed.guild_id, bed.d.alice.id)).model == "tiny-model"
    job = await bed.job_of(await bed.imagine(prompt="small"))
    assert job.params.model == "tiny-model" and job.cost == 3
    await bed.wait_job(job.id, JobStatus.POSTED)

    bed.hub.models = [m for m in bed.hub.models if m.id != "tiny-model"]
    bed.services.catalog.invalidate()
    it = await bed.imagine(prompt="small again")
    job = await bed.job_of(it)
    assert job.params.model == "gpt-image-2" and job.params.aspect == "1:1"  # the aspect still fits
    note = await it.followup(0)
    assert note.ephemeral and "Your model `tiny-model` isn't available now" in str(note.embeds)
    await bed.wait_job(job.id, JobStatus.POSTED)

    shown = await (await _settings(bed)).callback()
    assert "Your model `tiny-model` isn't available now" in text(shown)
    assert embed_field_of(shown, "Model") == "`gpt-image-2` · server default"


async def test_bad_values_are_refused_and_nothing_is_stored(bed: Bed) -> None:
    for options in ({"model": "no-such-model"}, {"aspect": "99:1"}, {"model": "x" * 100}):
        cb = await (await _settings(bed, **options)).callback()
        assert cb.ephemeral and "can't be your" in text(cb), options
    assert await bed.services.members.get(bed.guild_id, bed.d.alice.id) == MemberDefaults()
    # Mentions in an echoed value are not pinged.
    cb = await (await _settings(bed, model="@everyone")).callback()
    assert cb.ephemeral and cb.data.get("allowed_mentions", {}).get("parse") == []


def embed_field_of(cb: Any, name: str) -> str | None:
    for embed in cb.embeds:
        for field in embed.get("fields") or []:
            if field.get("name") == name:
                return str(field.get("value"))
    return None


@FAST_POLLS
async def test_private_results_go_to_the_member_only(bed: Bed) -> None:
    await (await _settings(bed, visibility="private")).callback()

    # While the token lives: the status message and the result are ephemeral, nothing in the channel.
    it = await bed.imagine(prompt="a secret garden")
    cb = await it.callback()
    assert cb.ephemeral
    job = await bed.wait_job((await bed.job_of(it)).id, JobStatus.POSTED)
    assert job.private
    (posted,) = [m for m in bed.fake.messages(bed.d.images, include_ephemeral=True) if m.attachments]
    assert (
        posted.ephemeral
        and posted.id == job.posted_message_ids[0]
        and "a secret garden" in str(posted.embeds)
    )
    assert not [m for m in bed.fake.messages(bed.d.images) if "a secret garden" in str(m.embeds)]

    # Once the token is dead: a direct message to the member, still nothing in the channel.
    bed.hub.set_hold(True)
    late = await bed.imagine(prompt="a hidden door")
    late_job = await bed.job_of(late)
    generation = await bed.hub.wait_generation_created(2)
    bed.fake.expire_interaction(late)
    bed.hub.complete(generation.id)
    late_job = await bed.wait_job(late_job.id, JobStatus.POSTED)
    channel = bed.fake.dm_channel(bed.d.alice.id)
    assert channel is not None and bed.fake.dm_channel(bed.d.bob.id) is None
    (dm,) = bed.fake.messages(channel.id)
    assert dm.attachments and "a hidden door" in str(dm.embeds) and dm.id == late_job.posted_message_ids[0]
    assert not [m for m in bed.fake.messages(bed.d.images) if "a hidden door" in str(m.embeds)]

    # /history lists it without a link (an ephemeral message has none).
    history = await (await bed.fake.slash(bed.d.guild, bed.d.images, bed.d.alice, "history", {})).callback()
    assert f"#{job.id}" in text(history) and "/channels/" not in text(history)

    # Nobody else can bring it out with /show; its author sees it again only privately.
    cb = await (
        await bed.fake.slash(bed.d.guild, bed.d.images, bed.d.bob, "show", {"job_id": job.id})
    ).callback()
    assert cb.ephemeral and "private to the member" in text(cb)
    cb = await (
        await bed.fake.slash(bed.d.guild, bed.d.images, bed.d.alice, "show", {"job_id": job.id})
    ).callback()
    assert cb.ephemeral

    # Bob's results stay public.
    bed.hub.set_hold(False)
    bob = await bed.wait_job((await bed.job_of(await bed.imagine(bed.d.bob))).id, JobStatus.POSTED)
    assert not bob.private and not bed.fake.message(bob.posted_message_ids[0]).ephemeral
