"""The bot under Discord's real rules (the fake holds every request to the official spec and the documented
limits): command registration, result packing, channel permissions, expiring CDN URLs, token lifetimes,
modals, refusals after a deferral, and no loop of invalid requests."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet
from PIL import Image

from bot.db import Database
from bot.hub.emulator import EmulatorState
from bot.imagine import INTERACTION_TOKEN_LIFETIME
from bot.jobs import Job, JobStatus
from bot.keys import KeyVault
from tests.bed import Bed, BotProcess, hub_settings
from tests.fakediscord import (
    ATTACH_FILES,
    EMBED_LINKS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    FakeAttachment,
    FakeInteraction,
    FakeMessage,
)
from tests.fakediscord.models import snowflake_time
from tests.fakediscord.server import FakeDiscord

MIB = 1024 * 1024


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 12), (seed * 37 % 256, seed * 91 % 256, 120)).save(out, "PNG")
    return out.getvalue()


def text(message: FakeMessage) -> str:
    return f"{message.content} {message.embeds}"


async def deny(bed: Bed, channel_id: int, permissions: int) -> None:
    """A moderator denies the bot `permissions` in a channel (0: removes the overwrite); returns once the
    bot's cache has seen the CHANNEL_UPDATE."""
    await bed.fake.set_bot_overwrite(channel_id, deny=permissions)
    expected = len(bed.fake.channel(channel_id).overwrites)
    await bed.fake.wait_for(
        lambda: (
            (c := bed.bot.get_channel(channel_id)) is not None
            and len(getattr(c, "overwrites", {})) == expected
        ),
        what="the bot's cache to see the new overwrites",
    )


async def held(
    bed: Bed, channel_id: int | None = None, **options: object
) -> tuple[FakeInteraction, Job, str]:
    """An /imagine the hub holds until `bed.hub.complete`; its status message already names the job."""
    bed.hub.set_hold(True)
    it = await bed.imagine(channel_id=channel_id, **options)
    job = await bed.wait_job((await bed.job_of(it)).id, JobStatus.RUNNING)
    assert job.hub_generation_id is not None
    return it, job, job.hub_generation_id


def mod_log_lines(bed: Bed) -> list[str]:
    return [text(m) for m in bed.fake.messages(bed.d.mod_log)]


# -- command registration --------------------------------------------------------------------------


async def test_commands_fit_the_spec_and_declare_guild_only_with_contexts(bed: Bed) -> None:
    show = bed.fake.command("show")
    (job_id,) = show["options"]
    assert job_id["max_value"] == 2**53 - 1  # Discord's INTEGER range; 2**53 refused the whole sync
    # Commands for a member's own space (DMs, user installs) declare every context; the rest are
    # guild only, the current way.
    everywhere = {"models", "imagine", "settings", "mykey", "credits"}
    for command in bed.fake.command_syncs[-1].payload:
        if command["name"] not in everywhere:
            assert command["contexts"] == [0], command["name"]
        elif command["name"] != "models":
            assert sorted(command["contexts"]) == [0, 1, 2] and sorted(command["integration_types"]) == [0, 1]
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "show", {"job_id": 2**53 - 1})
    assert (await it.callback()).ephemeral  # "no such job": the largest id is accepted


# -- result packing --------------------------------------------------------------------------------


async def test_results_are_packed_within_25_mib_and_the_rest_go_as_links(bed: Bed) -> None:
    bed.d.guild.premium_tier = 3  # 100 MiB per file: only the 25 MiB per request binds
    for _ in range(4):
        bed.hub.image_oversize(7 * MIB)  # four 7 MiB images: 28 MiB together
    job = await bed.wait_job((await bed.job_of(await bed.imagine(count=4))).id, JobStatus.POSTED)
    message = bed.fake.message(job.posted_message_ids[0])
    assert len(message.attachments) == 3 and sum(len(a.data) for a in message.attachments) == 21 * MIB
    assert "Too large to upload here" in text(message) and job.result_urls[3] in text(message)
    assert not [r for r in bed.fake.requests if r.status == 413]


async def test_a_413_repacks_and_posts_instead_of_failing(bed: Bed) -> None:
    it, job, generation = await held(bed)
    bed.d.guild.upload_limit_override = 100  # lower than the limit the interaction told the bot
    bed.hub.complete(generation)
    job = await bed.wait_job(job.id, JobStatus.POSTED, JobStatus.FAILED)
    assert job.status is JobStatus.POSTED, job.last_error
    message = bed.fake.message(job.posted_message_ids[0])
    assert message.attachments == [] and job.result_urls[0] in text(message)
    assert [r.status for r in bed.fake.requests if r.method == "PATCH" and it.token in r.path][-2:] == [
        413,
        200,
    ]


# -- channel permissions ---------------------------------------------------------------------------


async def test_missing_permissions_at_launch_are_told_to_the_member_and_the_moderators(bed: Bed) -> None:
    await bed.services.guilds.update(bed.guild_id, mod_log_channel_id=bed.d.mod_log)
    await deny(bed, bed.d.images, ATTACH_FILES)
    it = await bed.imagine()
    warning = await it.followup(0)
    assert warning.ephemeral and "**Attach Files**" in text(warning)
    (line,) = await bed.fake.wait_for(lambda: mod_log_lines(bed) or None, what="the moderator-log line")
    assert "**Attach Files**" in line and f"<#{bed.d.images}>" in line
    # The token lives: the result still comes whole, through the interaction.
    job = await bed.wait_job((await bed.job_of(it)).id, JobStatus.POSTED)
    assert len(bed.fake.message(job.posted_message_ids[0]).attachments) == 1
    second = await bed.imagine()
    await bed.wait_job((await bed.job_of(second)).id, JobStatus.POSTED)
    assert len(mod_log_lines(bed)) == 1  # one line, not one per generation
    assert not bed.fake.invalid_requests


async def test_without_attach_files_or_embed_links_a_late_result_is_posted_reduced(bed: Bed) -> None:
    await bed.services.guilds.update(bed.guild_id, mod_log_channel_id=bed.d.mod_log)
    it, job, generation = await held(bed)
    await deny(bed, bed.d.images, ATTACH_FILES | EMBED_LINKS | READ_MESSAGE_HISTORY)
    bed.fake.expire_interaction(it)  # 15 minutes went by: only the channel is left
    bed.hub.complete(generation)
    job = await bed.wait_job(job.id, JobStatus.POSTED)
    message = bed.fake.message(job.posted_message_ids[0])
    assert message.source == "channel" and message.attachments == [] and message.embeds == []
    assert f"job #{job.id}" in message.content and job.result_urls[0] in message.content
    assert message.message_reference is None  # no reply without Read Message History
    assert message.payload["nonce"] == f"job-{job.id}" and message.payload["enforce_nonce"] is True
    (line,) = mod_log_lines(bed)
    assert "**Attach Files**" in line and "**Embed Links**" in line and f"job #{job.id}" in line
    assert [r.status for r in bed.fake.invalid_requests] == [401]  # the expired token, once


async def test_without_send_messages_the_paid_result_is_kept_and_can_be_shown_later(bed: Bed) -> None:
    await bed.services.guilds.update(bed.guild_id, mod_log_channel_id=bed.d.mod_log)
    it, job, generation = await held(bed)
    await deny(bed, bed.d.images, SEND_MESSAGES)
    bed.fake.expire_interaction(it)
    bed.hub.complete(generation)
    job = await bed.wait_job(job.id, JobStatus.FAILED)
    assert job.charged_credits and job.result_urls and "Send Messages" in (job.last_error or "")
    lines = mod_log_lines(bed)
    assert len(lines) == 1 and "**Send Messages**" in lines[0] and f"/show {job.id}" in lines[0]
    assert not [
        r for r in bed.fake.invalid_requests if r.status != 401
    ]  # nothing Discord refused but the token
    # A moderator grants the permission; /show posts the paid result.
    await deny(bed, bed.d.images, 0)
    show = await bed.fake.slash(bed.d.guild, bed.d.images, bed.d.alice, "show", {"job_id": job.id})
    shown = await show.original()
    assert len(shown.attachments) == 1 and f"job #{job.id}" in text(shown)


# -- expiring CDN URLs -----------------------------------------------------------------------------


async def test_reroll_and_use_as_reference_work_after_the_cdn_urls_expired(bed: Bed) -> None:
    images = [png(1), png(2)]
    source = await bed.fake.user_message(
        bed.d.images,
        bed.d.bob,
        "these",
        attachments=[FakeAttachment(f"s{i}.png", d) for i, d in enumerate(images)],
    )
    menu = await bed.fake.message_command(
        bed.d.guild, bed.d.images, bed.d.alice, "Imagine with these images", source
    )
    first = await bed.job_of(await bed.fake.submit_modal(menu, {(await menu.callback()).text_inputs[0]: "a"}))
    first = await bed.wait_job(first.id, JobStatus.POSTED)
    result = bed.fake.message(first.posted_message_ids[0])

    # A day later every URL the bot was given has expired (the stored ones still look valid to it:
    # the reroll finds out by the failed download and renews then).
    bed.fake.expire_cdn_urls()
    bed.fake.cdn_url_lifetime = 300  # URLs given from now on are near their end: renewed before use
    again = await bed.wait_job(
        (await bed.job_of(await bed.fake.press_button(result, f"imagine:reroll:{first.id}", bed.d.bob))).id,
        JobStatus.POSTED,
    )
    assert [
        r.data for r in bed.hub.requests_to("/api/v1/images/generations", "POST")[-1].references
    ] == images
    assert again.status is JobStatus.POSTED

    use = await bed.fake.press_button(result, f"imagine:reference:{first.id}", bed.d.alice)
    modal = await use.callback()
    bed.fake.expire_cdn_urls()  # the form stayed open past the URLs' lifetime
    derived = await bed.job_of(await bed.fake.submit_modal(use, {modal.text_inputs[0]: "in winter"}))
    await bed.wait_job(derived.id, JobStatus.POSTED)
    expected = [a.data for a in result.attachments]
    assert [
        r.data for r in bed.hub.requests_to("/api/v1/images/generations", "POST")[-1].references
    ] == expected
    refetched = [r for r in bed.fake.requests if r.method == "GET" and "/messages/" in r.path]
    assert len(refetched) == 2 and all(r.status == 200 for r in refetched)


async def test_a_reference_whose_message_was_deleted_is_refused_clearly(bed: Bed) -> None:
    bed.fake.cdn_url_lifetime = 300
    source = await bed.fake.user_message(
        bed.d.images, bed.d.bob, "x", attachments=[FakeAttachment("a.png", png(3))]
    )
    menu = await bed.fake.message_command(
        bed.d.guild, bed.d.images, bed.d.alice, "Imagine with these images", source
    )
    modal = await menu.callback()
    source.deleted = True
    bed.fake.expire_cdn_urls()
    submit = await bed.fake.submit_modal(menu, {modal.text_inputs[0]: "p"})
    cb = await submit.callback()
    assert cb.ephemeral and "was deleted" in str(cb.embeds)
    assert bed.hub.requests_to("/api/v1/images/generations", "POST") == []


# -- tokens, autocomplete, modals, refusals --------------------------------------------------------


async def test_the_token_lifetime_counts_from_the_interaction_not_from_the_stored_job(bed: Bed) -> None:
    slow = FakeAttachment(
        "slow.png", png(4), serve_delay=1.5
    )  # the job is stored 1.5 s after the interaction
    it = await bed.imagine(attachments=(slow,))
    job = await bed.job_of(it)
    issued = snowflake_time(it.id)
    assert job.token_expires_at is not None
    assert abs(job.token_expires_at - (issued + INTERACTION_TOKEN_LIFETIME)) < timedelta(milliseconds=5)
    assert job.created_at - issued > timedelta(seconds=1)


async def test_autocomplete_choice_names_are_cut_to_100_characters(bed: Bed) -> None:
    bed.hub.add_model({"id": "m" + "x" * 90, "provider": "a-provider-with-a-long-name"})
    bed.hub.add_model({"id": "z" * 101})  # can't be a choice value at all
    bed.services.catalog.invalidate()
    await bed.services.catalog.models()
    choices = await bed.fake.autocomplete(
        bed.d.guild, bed.d.images, bed.d.alice, "imagine", {"prompt": "x", "model": ""}, "model"
    )
    long = next(c for c in choices if c["value"].startswith("mxx"))
    assert len(long["name"]) == 100 and long["name"].endswith("…")
    assert all(len(c["name"]) <= 100 and len(c["value"]) <= 100 for c in choices)


async def test_modals_are_built_with_label_components(bed: Bed) -> None:
    source = await bed.fake.user_message(
        bed.d.images, bed.d.bob, "x", attachments=[FakeAttachment("a.png", png(5))]
    )
    menu = await bed.fake.message_command(
        bed.d.guild, bed.d.images, bed.d.alice, "Imagine with these images", source
    )
    key = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", "key", "set"])
    for cb in (await menu.callback(), await key.callback()):
        assert cb.type == 9 and cb.components
        assert all(c["type"] == 18 and c["component"]["type"] == 4 for c in cb.components)
        assert all(c["label"] for c in cb.components)


@pytest.mark.timings(early_answer=0.15)
async def test_a_refusal_after_thinking_edits_the_deferred_answer(bed: Bed) -> None:
    bed.hub.slow(0.5)  # the model list takes longer than the early answer's 150 ms
    bed.services.catalog.invalidate()
    it = await bed.imagine(model="no-such-model")
    cb = await it.callback()
    assert cb.type == 5 and not cb.ephemeral  # "thinking…"
    shown = await it.original()
    assert "no model called" in text(shown) and not shown.loading
    assert not it.followups and not it.original_deleted
    assert [r.method for r in bed.fake.requests if it.token in r.path] == ["POST", "PATCH"]


@pytest.mark.timings(burst_launches=1, early_answer=0.15, early_answer_in_burst=5.0)
async def test_in_a_burst_a_slow_launch_answers_without_thinking_first(bed: Bed) -> None:
    bed.hub.slow(0.5)  # longer than the early answer's 150 ms, shorter than the burst's 5 s
    bed.services.catalog.invalidate()
    with bed.services.engine.launching():  # another launch under way: a burst (burst_launches=1)
        it = await bed.imagine()
        cb = await it.callback()
    assert cb.type == 4 and not cb.ephemeral  # the status itself, not "thinking…"
    job = await bed.job_of(it)
    assert f"#{job.id}" in text(await it.original())

    # Alone, the same slow launch says "thinking…" first, then edits it into the status.
    bed.services.catalog.invalidate()
    alone = await bed.imagine()
    assert (await alone.callback()).type == 5
    later = await bed.job_of(alone)
    assert f"#{later.id}" in text(await alone.original())


# -- no loop of invalid requests -------------------------------------------------------------------


async def test_no_loop_of_401_403_429_whatever_goes_wrong(bed: Bed) -> None:
    await bed.services.guilds.update(
        bed.guild_id, mod_log_channel_id=bed.d.mod_log, max_concurrent_per_member=5
    )
    bed.hub.set_hold(True)
    its = [await bed.imagine(prompt=f"p{i}") for i in range(3)]
    jobs = [await bed.wait_job((await bed.job_of(it)).id, JobStatus.RUNNING) for it in its]
    await deny(bed, bed.d.images, SEND_MESSAGES)
    await deny(bed, bed.d.mod_log, SEND_MESSAGES)
    for it in its[:2]:
        bed.fake.expire_interaction(it)
    (await its[2].original()).deleted = True
    bed.hub.set_hold(False)
    done = [await bed.wait_job(job.id, JobStatus.POSTED, JobStatus.FAILED) for job in jobs]
    assert [j.status for j in done] == [JobStatus.FAILED, JobStatus.FAILED, JobStatus.POSTED]
    # Nothing is retried afterwards: a bounded look at the quiet period (no event marks "nothing").
    await asyncio.sleep(0.5)
    statuses = [r.status for r in bed.fake.invalid_requests]
    assert statuses.count(401) == 2 and 403 not in statuses and 429 not in statuses
    assert bed.fake.invalid_request_count() == 2


# -- a refused command sync ------------------------------------------------------------------------


async def test_a_refused_command_sync_logs_one_line_and_exits_non_zero(
    fake_discord: FakeDiscord, hub: tuple[str, EmulatorState], bed_database_url: str, tmp_path: Path
) -> None:
    hub_url, state = hub
    fernet_key = Fernet.generate_key().decode()
    db = await Database.open(bed_database_url)
    try:
        d = fake_discord.default
        assert d is not None
        await KeyVault(db, MultiFernet([Fernet(fernet_key.encode())])).set_key(
            d.guild.id, state.add_key(), d.admin.id
        )
    finally:
        await db.close()
    # Discord names the refused command by its index in the sync body: /show's (after /imagine,
    # /models, /credits, /quota, /settings, /mykey, /config and /history).
    refusal = {
        "message": "Invalid Form Body",
        "code": 50035,
        "errors": {
            "8": {
                "options": {
                    "0": {
                        "max_value": {
                            "_errors": [
                                {
                                    "code": "NUMBER_TYPE_MAX",
                                    "message": "int value should be less than or equal to 9007199254740991.",
                                }
                            ]
                        }
                    }
                }
            }
        },
    }
    fake_discord.fail_next(1, 400, route_contains="/commands", method="PUT", body=refusal)
    settings = {
        "DISCORD_TOKEN": fake_discord.token,
        "ENCRYPTION_KEY": fernet_key,
        "DATABASE_URL": bed_database_url,
        **hub_settings(hub_url),
    }
    bot = BotProcess(fake_discord, settings, tmp_path / "bot.log")
    await bot.start(shards=None)
    assert bot.process is not None
    code = await asyncio.wait_for(bot.process.wait(), 30)
    log = (tmp_path / "bot.log").read_text()
    assert code != 0, log
    assert "Traceback" not in log, log
    lines = [line for line in log.splitlines() if "command sync" in line]
    assert len(lines) == 1, log
    assert "'show'" in lines[0] and "job_id" in lines[0] and "max_value" in lines[0]
    assert "9007199254740991" in lines[0]
