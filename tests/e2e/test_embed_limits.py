"""Every embed the bot builds stays inside Discord's limits, whatever the member or the hub sent, in
every language (the Vietnamese texts are longer than the English ones)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import discord
import pytest

from bot.engine import Result, ResultImage
from bot.hub import HubError, HubModel
from bot.jobs import Job, JobParams, JobStatus, ReferenceSpec
from bot.queue import Place
from cogs import embeds, i18n, messages
from cogs.messages import Words
from tests.bed import Bed
from tests.e2e.queue_support import text
from tests.fakediscord.validation import check_message

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
LONG_MODEL = "m" * 3000
SIGNED = "https://cdn.example.com/images/{i}.png?" + "X-Amz-Signature=" + "a" * 600


@pytest.fixture(params=i18n.LANGUAGES)
def w(request: pytest.FixtureRequest) -> Words:
    """The catalog in each language."""
    return messages.words(request.param)


def make_job(**params: Any) -> Job:
    values: dict[str, Any] = {
        "id": 12345,
        "guild_id": 1,
        "channel_id": 2,
        "user_id": 3,
        "params": JobParams(
            **{"model": "gpt-image-2", "prompt": "p" * 4000, "aspect": "1:1", "tier": "1K", "quality": "auto"}
            | params
        ),
        "cost": 8,
        "status": JobStatus.POSTED,
        "poll_attempts": 0,
        "error_attempts": 0,
        "result_urls": [],
        "delivered_images": 0,
        "posted_message_ids": [],
        "created_at": NOW,
    }
    for f in dataclasses.fields(Job):  # anything else: None
        values.setdefault(f.name, None)
    return Job(**values)


def assert_fits(embed: discord.Embed) -> None:
    """Discord's limits, as the fake checks them."""
    payload = {"embeds": [embed.to_dict()]}
    assert check_message(payload, 0, create=True) is None, check_message(payload, 0, create=True)
    assert len(embed) <= 6000 and len(embed.fields) <= 25
    for field in embed.fields:
        assert field.name and field.value and len(field.name) <= 256 and len(field.value) <= 1024


def result(n: int, data: bool) -> Result:
    images = [ResultImage(i, SIGNED.format(i=i), b"x" if data else None) for i in range(n)]
    return Result(images=images, requested=n, charged=8 * n, refunded=0, elapsed=12.0)


def test_too_large_links_fit_the_note_field(w: Words) -> None:
    job = make_job(n=4)
    links = [SIGNED.format(i=i) for i in range(4)]
    embed = embeds.result_embed(w, job, result(4, False), links)
    assert_fits(embed)
    note = next(f.value for f in embed.fields if f.name == w("field.note"))
    assert note is not None and w("result.too_large") in note
    assert w("result.too_large.link", number=1, url=links[0]) in note  # the links that fit are kept, numbered
    assert w("result.too_large.unlinked", number=4) in note  # the rest are still named


def test_a_url_too_long_for_a_field_is_left_out(w: Words) -> None:
    job = make_job(n=2)
    huge = "https://cdn.example.com/x?" + "s" * 2000
    embed = embeds.result_embed(w, job, result(2, False), [huge, SIGNED.format(i=1)])
    assert_fits(embed)
    note = next(f.value for f in embed.fields if f.name == w("field.note")) or ""
    assert huge not in note and w("result.too_large.unlinked", number=1) in note
    assert w("result.too_large.link", number=2, url=SIGNED.format(i=1)) in note


def test_hub_controlled_text_is_clamped_everywhere(w: Words) -> None:
    refs = tuple(
        ReferenceSpec(url="u", filename="f" * 500, content_type="image/png", size=1) for _ in range(16)
    )
    job = make_job(model=LONG_MODEL, aspect="a" * 300, quality="q" * 300, references=refs)
    res = Result(images=[ResultImage(0, "u", b"x")], requested=1, charged=8, refunded=0, elapsed=1.0)
    built = [
        embeds.status_embed(w, job),
        embeds.status_embed(w, dataclasses.replace(job, status=JobStatus.QUEUED), Place(3, 1, NOW)),
        embeds.result_embed(w, job, res),
        embeds.info_embed(w, job)[0],
        embeds.history_embed(w, 3, [job] * 10),
        embeds.cancelled_embed(w, job, 8, 3),
        embeds.blocked_log_embed(w, 3, 2, "p" * 6000),
        embeds.filters_embed(w, ["w" * 300] * 50, ["r" * 300] * 50),
    ]
    for embed in built:
        assert_fits(embed)


def test_models_embed_with_many_long_models(w: Words) -> None:
    models = [
        HubModel.model_validate(
            {
                "id": f"model-{i}-" + "x" * 300,
                "provider": "p" * 300,
                "aspect_ratios": [f"{j}:{j + 1}" for j in range(300)],
                "credits": {f"T{j}": j for j in range(100)},
            }
        )
        for i in range(40)
    ]
    embed = embeds.models_embed(w, models)
    assert_fits(embed)
    assert embed.footer.text == w("models.more", count=len(models) - len(embed.fields))


@pytest.mark.parametrize("length", [4090, 4096, 6000, 100_000])
def test_refusal_is_clamped(w: Words, length: int) -> None:
    embed = embeds.refusal(f"There is no model called `{'m' * length}`. Available: `gpt-image-2`.")
    assert_fits(embed)
    assert embed.description is not None and embed.description.endswith("`")  # the code span is closed
    assert_fits(embeds.refusal(messages.hub_error(w, HubError("x" * 10_000, status=400, code="bad"))))
    assert_fits(embeds.plain("y" * 5000, title="t" * 300))


def test_quota_lines_are_capped_with_a_count(w: Words) -> None:
    lines = [f"<@{10**17 + i}>: {i:,}" for i in range(1000)]
    text_ = embeds.capped_lines(w, lines, 4096)
    shown = text_.count("\n")
    assert len(text_) <= 4096 and text_.endswith("\n" + w("list.more", count=1000 - shown))


async def test_quota_show_with_many_overrides_answers(bed: Bed) -> None:
    for i in range(400):
        await bed.services.quotas.policies.set_member(bed.guild_id, 10**17 + i, 1000 + i)
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", "quota", "show"], {})
    cb = await it.callback()
    assert cb.ephemeral and cb.error is None, cb.error
    assert "more" in text(cb) and "**Default**" in text(cb)


async def test_an_overlong_option_echoed_in_a_refusal_still_answers(bed: Bed) -> None:
    it = await bed.fake.slash(
        bed.d.guild, bed.d.general, bed.d.admin, ["config", "defaults"], {"model": "z" * 5000}
    )
    cb = await it.callback()
    assert cb.ephemeral and cb.error is None, cb.error
    assert "There is no model called" in text(cb)


async def test_credits_with_an_overlong_account_type_from_the_hub_answers(bed: Bed) -> None:
    bed.hub.account_for(bed.key).account_type = "PRO" * 1000
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, "credits", {})
    await it.callback()
    shown = await it.original(predicate=lambda m: "balance" in str(m.embeds))
    assert "PROPRO" in str(shown.embeds) and "10,000" in str(shown.embeds)
    assert not [r for r in bed.fake.requests if r.status >= 400]


async def test_an_overlong_imagine_option_is_refused_not_dropped(bed: Bed) -> None:
    for options in ({"model": "q" * 6000}, {"aspect": "9" * 6000}):
        it = await bed.imagine(**options)
        cb = await it.callback()
        assert cb.ephemeral and cb.error is None, (options.keys(), cb.error)
        assert "There is no model" in text(cb) or "doesn't support the aspect" in text(cb)
