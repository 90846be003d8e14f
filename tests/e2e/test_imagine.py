"""/imagine end to end — references, context menu, buttons, refusals, quota, failures."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from bot.jobs import JobStatus
from bot.quotas import Period
from tests.bed import Bed
from tests.fakediscord.models import FakeAttachment, FakeMessage


def png(seed: int, size: tuple[int, int] = (24, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (seed % 256, (seed * 7) % 256, 99)).save(out, format="PNG")
    return out.getvalue()


def jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (seed % 256, 10, 200)).save(out, format="JPEG")
    return out.getvalue()


def embed_text(message: FakeMessage) -> str:
    return str(message.embeds)


async def posted_result(bed: Bed, job_id: int) -> tuple[FakeMessage, list[bytes]]:
    job = await bed.wait_job(job_id, JobStatus.POSTED)
    message = await bed.result_message(job)
    generation = bed.hub.generations[job.hub_generation_id or ""]
    return message, [bed.hub.image_bytes(image.id) for image in generation.images]


async def test_result_carries_images_prompt_settings_and_cost(bed: Bed) -> None:
    it = await bed.imagine(prompt="a lighthouse @everyone <@&123>", count=3, resolution="4K", aspect="3:2")
    job = await bed.job_of(it)
    message, expected = await posted_result(bed, job.id)
    assert [a.data for a in message.attachments] == expected and len(expected) == 3
    text = embed_text(message)
    for fragment in (
        "a lighthouse @everyone <@&123>",
        f"<@{bed.d.alice.id}>",
        "gpt-image-2",
        "3:2",
        "4K",
        "36 credits",
    ):
        assert fragment in text, fragment
    assert message.allowed_mentions is not None and message.allowed_mentions.get("parse") == []
    assert {c["custom_id"].rsplit(":", 1)[0] for c in message.walk_components() if "custom_id" in c} >= {
        "imagine:reroll",
        "imagine:reference",
        "imagine:delete",
    }
    # The status message moved before it became the result: it was edited more than once.
    assert message.id == job.status_message_id and len(message.edits) >= 2
    assert bed.hub.balance(bed.key) == 10_000 - 36


async def test_references_reach_the_hub_byte_for_byte(bed: Bed) -> None:
    first, second = png(1), jpeg(2)
    refs = (
        FakeAttachment("sketch.png", first, content_type="image/png"),
        FakeAttachment("photo.jpg", second, content_type="image/jpeg"),
    )
    job = await bed.job_of(await bed.imagine(attachments=refs))
    await bed.wait_job(job.id, JobStatus.POSTED)
    (request,) = bed.hub.requests_to("/api/v1/images/generations", "POST")
    assert request.content_type and request.content_type.startswith("multipart/form-data")
    received = [(r.filename, r.content_type, r.data) for r in request.references]
    assert received == [("sketch.png", "image/png", first), ("photo.jpg", "image/jpeg", second)]


async def test_a_png_declared_as_text_is_accepted_by_its_bytes(bed: Bed) -> None:
    data = png(3)
    refs = (FakeAttachment("scan.txt", data, content_type="text/plain"),)
    job = await bed.job_of(await bed.imagine(attachments=refs))
    await bed.wait_job(job.id, JobStatus.POSTED)
    (request,) = bed.hub.requests_to("/api/v1/images/generations", "POST")
    assert request.references[0].data == data and request.references[0].content_type == "image/png"


async def test_bad_references_are_refused_and_nothing_is_spent(bed: Bed) -> None:
    cases = [
        (FakeAttachment("fake.png", b"just some text", content_type="image/png"), "not a PNG, JPEG or WebP"),
        (FakeAttachment("cut.png", png(4)[:-20], content_type="image/png"), "truncated"),
        (
            FakeAttachment("huge.png", png(5), content_type="image/png", size=60 * 1024 * 1024),
            "at most 50 MB",
        ),
    ]
    for attachment, reason in cases:
        it = await bed.imagine(attachments=(attachment,))
        cb = await it.callback()
        if cb.ephemeral:
            text = str(cb.embeds)
        else:  # refused after the public answer: that answer is edited into the refusal
            shown = await it.original(predicate=lambda m: "⚠️" in str(m.embeds))
            assert not it.followups and not it.original_deleted
            text = str(shown.embeds)
        assert reason in text, (attachment.filename, text)
    huge = cases[2][0]
    assert not [r for r in bed.fake.requests if huge.url and str(huge.id) in r.path]  # never downloaded
    assert bed.hub.requests_to("/api/v1/images/generations", "POST") == []
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())
    assert budget.spent == budget.reserved == 0
    # Reserved before downloading (two bad images), then returned; the oversize one never reserved.
    kinds = [
        (e.kind.value, e.credits) for e in reversed(await bed.services.quotas.reports.recent(bed.guild_id))
    ]
    assert kinds == [("reserve", -8), ("release", 8)] * 2


async def test_too_many_references_for_the_model(bed: Bed) -> None:
    bed.hub.add_model({"id": "tiny-model", "reference_image_limit": 1})
    bed.services.catalog.invalidate()  # the hub's list changed
    refs = tuple(FakeAttachment(f"r{i}.png", png(i), content_type="image/png") for i in range(2))
    cb = await (await bed.imagine(model="tiny-model", attachments=refs)).callback()
    assert cb.ephemeral and "at most 1 reference" in str(cb.embeds)


async def test_context_menu_turns_a_messages_images_into_references(bed: Bed) -> None:
    images = [png(10), png(11)]
    source = await bed.fake.user_message(
        bed.d.images,
        bed.d.bob,
        "look at these",
        attachments=[
            FakeAttachment(f"p{i}.png", data, content_type="image/png") for i, data in enumerate(images)
        ],
    )
    it = await bed.fake.message_command(
        bed.d.guild, bed.d.images, bed.d.alice, "Imagine with these images", source
    )
    cb = await it.callback()
    assert cb.type == 9
    inputs = cb.text_inputs
    submit = await bed.fake.submit_modal(
        it, {inputs[0]: "in the same style", inputs[1]: "16:9", inputs[3]: "2"}
    )
    job = await bed.job_of(submit)
    assert job.params.aspect == "16:9" and job.params.n == 2 and len(job.params.references) == 2
    await bed.wait_job(job.id, JobStatus.POSTED)
    (request,) = bed.hub.requests_to("/api/v1/images/generations", "POST")
    assert [r.data for r in request.references] == images


async def test_context_menu_on_a_message_without_images(bed: Bed) -> None:
    source = await bed.fake.user_message(bed.d.images, bed.d.bob, "no pictures here")
    it = await bed.fake.message_command(
        bed.d.guild, bed.d.images, bed.d.alice, "Imagine with these images", source
    )
    cb = await it.callback()
    assert cb.ephemeral and "no PNG, JPEG or WebP images" in str(cb.embeds)


async def test_reroll_reference_and_delete_buttons(bed: Bed) -> None:
    first = await bed.job_of(await bed.imagine(prompt="a cat in a hat", aspect="1:1"))
    message, expected = await posted_result(bed, first.id)

    reroll = await bed.fake.press_button(message, f"imagine:reroll:{first.id}", bed.d.bob)
    again = await bed.job_of(reroll)
    assert again.id != first.id and again.user_id == bed.d.bob.id
    assert (again.params.prompt, again.params.aspect, again.params.n) == ("a cat in a hat", "1:1", 1)
    await bed.wait_job(again.id, JobStatus.POSTED)

    use = await bed.fake.press_button(message, f"imagine:reference:{first.id}", bed.d.alice)
    modal = await use.callback()
    assert modal.type == 9
    prompt_field = modal.text_inputs[0]
    derived = await bed.job_of(await bed.fake.submit_modal(use, {prompt_field: "now in winter"}))
    await bed.wait_job(derived.id, JobStatus.POSTED)
    request = bed.hub.requests_to("/api/v1/images/generations", "POST")[-1]
    assert [r.data for r in request.references] == expected

    refused = await bed.fake.press_button(message, f"imagine:delete:{first.id}", bed.d.bob)
    assert (await refused.callback()).ephemeral and not message.deleted
    await (await bed.fake.press_button(message, f"imagine:delete:{first.id}", bed.d.moderator)).callback()
    await bed.fake.wait_for(lambda: message.deleted, what="the result deleted by a moderator")


async def test_author_can_delete_their_result(bed: Bed) -> None:
    job = await bed.job_of(await bed.imagine())
    message, _ = await posted_result(bed, job.id)
    await (await bed.fake.press_button(message, f"imagine:delete:{job.id}", bed.d.alice)).callback()
    await bed.fake.wait_for(lambda: message.deleted, what="the result deleted by its author")


async def test_quota_exhaustion_refuses_before_anything_is_sent(bed: Bed) -> None:
    await bed.services.quotas.policies.set_default(bed.guild_id, 10, Period.DAY)
    await bed.wait_job((await bed.job_of(await bed.imagine())).id, JobStatus.POSTED)
    cb = await (await bed.imagine()).callback()
    assert cb.ephemeral and "needs 8 credits but you have 2 left" in str(cb.embeds)
    assert len(bed.hub.requests_to("/api/v1/images/generations", "POST")) == 1


async def test_ten_concurrent_requests_against_a_budget_for_two(bed: Bed) -> None:
    await bed.services.quotas.policies.set_default(bed.guild_id, 16, Period.DAY)
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_member=10)
    bed.hub.set_hold(True)
    its = await asyncio.gather(*(bed.imagine(prompt=f"try {i}") for i in range(10)))
    callbacks = await asyncio.gather(*(it.callback() for it in its))
    await bed.hub.wait_generation_created(2)
    accepted = [it for it, cb in zip(its, callbacks, strict=True) if not cb.ephemeral]
    settled = [
        await it.original(predicate=lambda m: "job #" in str(m.embeds) or "⚠️" in str(m.embeds))
        for it in accepted
    ]
    jobs = [await bed.job_of(it) for it, m in zip(accepted, settled, strict=True) if "job #" in str(m.embeds)]
    assert len(jobs) == 2
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())
    assert budget.reserved + budget.spent == 16 and budget.remaining == 0
    bed.hub.set_hold(False)
    for job in jobs:
        await bed.wait_job(job.id, JobStatus.POSTED)
    assert len(bed.hub.requests_to("/api/v1/images/generations", "POST")) == 2


async def test_hub_failure_returns_the_credits(bed: Bed) -> None:
    await bed.services.quotas.policies.set_default(bed.guild_id, 100, Period.DAY)
    bed.hub.fail_next(1)
    job = await bed.job_of(await bed.imagine(count=2))
    job = await bed.wait_job(job.id, JobStatus.FAILED)
    status = bed.fake.message(job.status_message_id or 0)
    await bed.fake.wait_for(lambda: "not completed" in embed_text(status), what="the failure notice")
    assert "16 credits were returned" in embed_text(status)
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())
    assert (budget.spent, budget.reserved, budget.remaining) == (0, 0, 100)
    assert bed.hub.balance(bed.key) == 10_000


async def test_fewer_images_return_the_difference(bed: Bed) -> None:
    bed.hub.fewer_images_next(1, deliver=1)
    job = await bed.job_of(await bed.imagine(count=3))
    message, expected = await posted_result(bed, job.id)
    assert len(message.attachments) == 1 and [a.data for a in message.attachments] == expected
    assert "delivered 1 of 3" in embed_text(message) and "16 returned" in embed_text(message)
    assert (await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())).spent == 8
    assert bed.hub.balance(bed.key) == 10_000 - 8


async def test_expired_interaction_token_posts_through_the_channel(bed: Bed) -> None:
    bed.hub.set_hold(True)
    it = await bed.imagine()
    job = await bed.job_of(it)
    generation = await bed.hub.wait_generation_created(1)
    bed.fake.expire_interaction(it)
    bed.hub.complete(generation.id)
    job = await bed.wait_job(job.id, JobStatus.POSTED)
    (posted,) = [m for m in bed.fake.messages(job.channel_id, source="channel") if m.attachments]
    assert posted.message_reference and int(posted.message_reference["message_id"]) == job.status_message_id
    assert [a.data for a in posted.attachments] == [bed.hub.image_bytes(i.id) for i in generation.images]


async def test_images_over_the_upload_limit_are_posted_as_links(bed: Bed) -> None:
    bed.d.guild.upload_limit_override = 100  # Discord tells the bot this limit with each interaction
    job = await bed.job_of(await bed.imagine(count=2))
    job = await bed.wait_job(job.id, JobStatus.POSTED)
    message = bed.fake.message(job.posted_message_ids[0])
    assert message.attachments == []
    text = embed_text(message)
    assert "Too large to upload here" in text
    for url in job.result_urls:
        assert url in text


async def test_model_and_aspect_autocomplete_from_the_hubs_list(bed: Bed) -> None:
    bed.hub.add_model({"id": "wide-model", "aspect_ratios": ["21:9", "16:9"]})
    bed.services.catalog.invalidate()
    fake, d = bed.fake, bed.d
    models = await fake.autocomplete(
        d.guild, d.images, d.alice, "imagine", {"prompt": "x", "model": ""}, "model"
    )
    assert [c["value"] for c in models] == ["gpt-image-2", "wide-model"]
    narrowed = await fake.autocomplete(
        d.guild, d.images, d.alice, "imagine", {"prompt": "x", "model": "wi"}, "model"
    )
    assert [c["value"] for c in narrowed] == ["wide-model"]
    ratios = await fake.autocomplete(
        d.guild, d.images, d.alice, "imagine", {"prompt": "x", "model": "wide-model", "aspect": ""}, "aspect"
    )
    assert [c["value"] for c in ratios] == ["21:9", "16:9"]
    default = await fake.autocomplete(
        d.guild, d.images, d.alice, "imagine", {"prompt": "x", "aspect": "9"}, "aspect"
    )
    assert [c["value"] for c in default] == ["16:9", "9:16", "21:9", "9:21"]


async def test_unusual_option_values_get_a_short_clear_refusal(bed: Bed) -> None:
    cb = await (await bed.imagine(model="m" * 3000)).callback()
    assert cb.ephemeral and "There is no model called" in str(cb.embeds) and len(str(cb.embeds)) < 1000
    cb = await (await bed.imagine(aspect="`7:5`" * 500)).callback()
    assert cb.ephemeral and "doesn't support the aspect" in str(cb.embeds) and len(str(cb.embeds)) < 1000
    bed.hub.add_model({"id": "odd-model", "aspect_ratios": ["square"], "credits": {"4K": 20}})
    bed.services.catalog.invalidate()
    cb = await (await bed.imagine(model="odd-model", aspect="square", resolution="4K")).callback()
    assert cb.ephemeral and "isn't supported yet" in str(cb.embeds)
    assert bed.hub.requests_to("/api/v1/images/generations", "POST") == []
