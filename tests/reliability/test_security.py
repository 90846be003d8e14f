"""Security promises: secrets stay out of logs and channels, permissions are the bot's own, and
servers can't reach each other's jobs, keys or budgets."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bot.hub.emulator.state import new_key
from bot.jobs import JobStatus
from bot.logs import setup_logging
from tests.bed import Bed
from tests.fakediscord import MANAGE_GUILD, FakeAttachment, FakeInteraction
from tests.reliability.conftest import failing_write, hub_posts, result_messages, text_of

PNG_3K = b"\x89PNG\r\n\x1a\n" + bytes(3000) + b"IEND\xaeB`\x82"

# -- logs ------------------------------------------------------------------------------------------


def test_logging_redacts_hub_keys_and_tokens_in_messages_args_and_tracebacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = new_key()
    # A bot token's shape: base64 of a 19-digit bot id, a timestamp, an HMAC.
    discord_token = "MTE3NTA2ODIxMzQ0NTY4OTM1NA.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO")
        log = logging.getLogger("bot.security_test")
        log.info(f"key in the message {key}")
        log.info("key in the args %s and %r", key, {"api_key": key})
        log.warning("header Authorization: Bearer %s", key)
        try:
            raise RuntimeError(f"the hub refused {key}")
        except RuntimeError:
            log.exception("a failure with the key in the traceback")
        logging.getLogger("discord.http").error("a third-party line with %s", discord_token)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    out = capsys.readouterr().err
    assert out.count("gih_live_***" + key[-4:]) >= 4  # masked, last four kept for support
    assert "Traceback" in out and "RuntimeError: the hub refused gih_live_***" in out
    assert "Bearer gih_live_***" in out
    assert key not in out and key[9:] not in out  # not even the secret part
    assert discord_token not in out and discord_token.split(".")[2] not in out


@pytest.mark.parametrize("bed_backend", ["sqlite", "postgres"], indirect=True)
async def test_a_database_error_while_storing_a_job_logs_neither_its_token_nor_its_prompt(bed: Bed) -> None:
    """SQLAlchemy puts a failed statement's parameters in its error (`[parameters: ...]`): for a
    job, the member's interaction token (it lets a log reader post as the bot for 15 minutes)
    and the prompt. The bot's log, as its own handler writes it, must hold neither."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("discord", "aiosqlite")}
    prompt = "my neighbour's house at 12 Elm Street, secretly"
    try:
        setup_logging("DEBUG")  # the most the operator can ask for
        root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
        async with failing_write(bed, "INSERT", "NEW.guild_id IS NOT NULL"):
            it = await bed.imagine(prompt=prompt)
            cb = await it.callback()  # the member is told (the public answer edited into the failure)
            answer = cb if cb.ephemeral else await it.original(predicate=lambda m: "⚠️" in text_of(m))
            assert "⚠️" in text_of(answer)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
    logged = stream.getvalue()
    assert "imagine.start_failed" in logged and "Traceback" in logged  # the failure itself is logged
    assert "injected" in logged
    assert it.token not in logged and it.token[16:40] not in logged
    assert prompt not in logged and "Elm Street" not in logged
    assert await bed.services.jobs.list_for_member(bed.guild_id, bed.d.alice.id) == []
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())
    assert budget.spent == budget.reserved == 0


def test_logging_redacts_interaction_tokens_and_webhook_urls(capsys: pytest.CaptureFixture[str]) -> None:
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OTpabcDEF_ghIJklMNopQRstuVWxyz0123456789-abcdefghij"
    other = "Zm9yZWlnbl90b2tlbl9zaGFwZV8xMjM0NTY3ODkwYWJjZGVm"  # any token in a webhook or callback URL
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("DEBUG")
        log = logging.getLogger("bot.security_test")
        log.info("token %s", token)
        log.info("POST https://discord.com/api/v10/webhooks/123456789012345678/%s/messages/@original", other)
        log.info("POST /api/v10/interactions/123456789012345678/%s/callback", other)
        try:
            raise RuntimeError(f"failed with {token}")
        except RuntimeError:
            log.exception("traceback")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    out = capsys.readouterr().err
    assert token not in out and token[16:40] not in out and other not in out
    assert out.count("***") >= 4


# -- keys never echoed ---------------------------------------------------------------------------------


def everything_sent(bed: Bed) -> str:
    """Every byte the bot sent to Discord (bodies, files, answers) and every message Discord holds."""
    parts: list[str] = []
    for r in bed.fake.requests:
        parts += [r.path, repr(r.query), repr(r.json), repr(r.response)]
        parts += [f.data.decode(errors="replace") for f in r.files]
    for it in bed.fake.interactions:
        for cb in it.callback_attempts:
            parts.append(repr(cb.data))
        parts += [text_of(m) for m in [it.original_message, *it.followups] if m is not None]
    for channel in bed.d.guild.channels:
        parts += [
            text_of(m) for m in bed.fake.messages(channel, include_ephemeral=True, include_deleted=True)
        ]
    return "\n".join(parts)


async def test_a_key_set_through_the_modal_is_never_echoed_logged_or_stored_in_clear(
    bed: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    key = bed.hub.add_key(credits=4321)
    with caplog.at_level(logging.DEBUG):
        it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", "key", "set"])
        cb = await it.callback()
        assert cb.type == 9  # a private form, never a slash option
        field = cb.text_inputs[0]
        reply = await (await bed.fake.submit_modal(it, {field: key})).original()
        assert "4,321 credits" in text_of(reply) and reply.ephemeral
        for command in (["config", "key", "show"], "credits"):
            shown = await (await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, command)).original()
            assert key[-4:] in text_of(shown)  # masked form only
        job = await bed.job_of(await bed.imagine())
        await bed.wait_job(job.id, JobStatus.POSTED)
    assert await bed.services.keys.get_key(bed.guild_id) == key
    assert hub_posts(bed) == 1 and bed.hub.balance(key) == 4321 - 8  # the new key is the one in use

    sent = everything_sent(bed)
    assert key not in sent and key[9:] not in sent
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert key not in logged and key[9:] not in logged  # not logged at all, redaction aside
    database = Path(make_url(bed.database_url).database or "")
    for path in database.parent.glob(database.name + "*"):
        assert key[9:].encode() not in path.read_bytes(), path


async def test_a_personal_key_is_never_echoed_logged_or_stored_in_clear(
    bed: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    key = bed.hub.add_key(credits=2468)
    with caplog.at_level(logging.DEBUG):
        it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.bob, ["mykey", "set"])
        cb = await it.callback()
        assert cb.type == 9  # a private form, never a slash option
        reply = await (await bed.fake.submit_modal(it, {cb.text_inputs[0]: key})).original()
        assert "2,468 credits" in text_of(reply) and reply.ephemeral
        for command in (["mykey", "show"], "credits"):
            shown = await (await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.bob, command)).original()
            assert key[-4:] in text_of(shown) and shown.ephemeral  # masked form only
        job = await bed.job_of(await bed.imagine(bed.d.bob))
        await bed.wait_job(job.id, JobStatus.POSTED)
    assert bed.hub.balance(key) == 2468 - 8  # the member's key is the one in use
    sent = everything_sent(bed)
    assert key not in sent and key[9:] not in sent
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert key not in logged and key[9:] not in logged
    database = Path(make_url(bed.database_url).database or "")
    for path in database.parent.glob(database.name + "*"):
        assert key[9:].encode() not in path.read_bytes(), path


# -- permissions are checked by the bot, not only by Discord's defaults -------------------------------


def subcommands(command: dict[str, Any]) -> list[list[str]]:
    paths = []
    for option in command.get("options", []):
        if option["type"] == 1:
            paths.append([command["name"], option["name"]])
        elif option["type"] == 2:
            paths += [[command["name"], option["name"], sub["name"]] for sub in option.get("options", [])]
    return paths


async def test_config_and_credits_refuse_members_without_manage_server(bed: Bed) -> None:
    # /credits is open to all (a member sees their own key's balance); the server's is checked below.
    cb = await (await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "credits")).callback()
    assert cb.ephemeral and "Manage Server" in text_of(cb)
    paths = subcommands(bed.fake.command("config"))
    assert len(paths) >= 10
    settings, key, policy = (
        await bed.services.guilds.get(bed.guild_id),
        await bed.services.keys.get_key(bed.guild_id),
        await bed.services.quotas.policies.policy(bed.guild_id),
    )
    for path in paths:
        with pytest.raises(PermissionError):  # Discord's default would hide the command...
            await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, path)
        # ...but a server's admins can change that default: the bot checks for itself.
        it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, path, force=True)
        cb = await it.callback()
        assert cb.ephemeral and "Manage Server" in text_of(cb), path
    assert await bed.services.guilds.get(bed.guild_id) == settings
    assert await bed.services.keys.get_key(bed.guild_id) == key
    assert await bed.services.quotas.policies.policy(bed.guild_id) == policy


async def test_only_the_author_or_a_moderator_can_delete_a_result(bed: Bed) -> None:
    job = await bed.wait_job((await bed.job_of(await bed.imagine())).id, JobStatus.POSTED)
    (message,) = result_messages(bed, job)
    refused = await (await bed.fake.press_button(message, f"imagine:delete:{job.id}", bed.d.bob)).callback()
    assert refused.ephemeral and "Only the member who made this" in text_of(refused)
    assert not message.deleted
    await (await bed.fake.press_button(message, f"imagine:delete:{job.id}", bed.d.moderator)).callback()
    await bed.fake.wait_for(lambda: message.deleted, what="the result deleted by a moderator")


# -- servers are isolated from each other ----------------------------------------------------------------


async def test_another_server_cannot_act_on_see_or_spend_this_servers_jobs_key_or_budget(bed: Bed) -> None:
    fake = bed.fake
    other = fake.add_guild("Other Server")
    channel = other.add_channel("art")
    admin_role = other.add_role("Admin", MANAGE_GUILD)
    carol = other.add_member("carol", roles=[admin_role])
    dave = other.add_member("dave")
    await fake.join_guild(other)

    posted = await bed.wait_job((await bed.job_of(await bed.imagine())).id, JobStatus.POSTED)
    (result,) = result_messages(bed, posted)
    bed.hub.set_hold(True)
    running = await bed.wait_job((await bed.job_of(await bed.imagine())).id, JobStatus.RUNNING)
    posts, balance = hub_posts(bed), bed.hub.balance(bed.key)

    # Without a key of its own, the other server can't generate (and never spends this server's key).
    cb = await (await fake.slash(other, channel, dave, "imagine", {"prompt": "free images?"})).callback()
    assert cb.ephemeral and "no image hub key" in text_of(cb)

    other_key = bed.hub.add_key(credits=500)
    await bed.services.keys.set_key(other.id, other_key, carol.id)
    # Forged buttons naming this server's jobs, on a message in the other server. (Discord only
    # routes buttons of the bot's own messages; this models a client that forges the payload.)
    bait = await fake.user_message(channel, dave, "look")
    for action in ("delete", "reroll", "reference", "info", "cancel"):
        for job in (posted, running):
            custom_id = f"imagine:{action}:{job.id}"
            bait.components = [{"type": 1, "components": [{"type": 2, "style": 1, "custom_id": custom_id}]}]
            for member in (dave, carol):
                it: FakeInteraction = await fake.press_button(bait, custom_id, member)
                cb = await it.callback()
                assert cb.ephemeral and "can't find that generation" in text_of(cb), (action, job.id)
    assert not result.deleted
    assert (await bed.services.jobs.get(running.id)).status == JobStatus.RUNNING  # type: ignore[union-attr]
    assert hub_posts(bed) == posts and bed.hub.balance(bed.key) == balance

    # Its moderators see their own key, balance and spend; nothing of this server's.
    shown = text_of(await (await fake.slash(other, channel, carol, ["config", "key", "show"])).callback())
    assert other_key[-4:] in shown and bed.key[-4:] not in shown
    credits = text_of(await (await fake.slash(other, channel, carol, "credits")).original())
    assert "500" in credits and f"{balance:,}" not in credits
    usage = text_of(await (await fake.slash(other, channel, carol, ["config", "usage"])).original())
    assert str(bed.d.alice.id) not in usage
    quota = text_of(await (await fake.slash(other, channel, dave, "quota")).callback())
    assert "Used this" not in quota or " 0 credits" in quota
    assert await bed.services.quotas.reports.top_members(other.id) == []
    jobs_there = await bed.services.jobs.list_for_member(other.id, dave.id) + (
        await bed.services.jobs.list_for_member(other.id, carol.id)
    )
    assert jobs_there == []


# -- downloads are capped ----------------------------------------------------------------------------------


@pytest.mark.timings(attachment_max_bytes=1000)
async def test_attachment_downloads_are_capped_whatever_size_discord_declared(bed: Bed) -> None:
    """The declared size is checked first, but the download itself stops at the cap too. (Hub image
    downloads: see test_hub_faults' oversize and hang cases.)"""
    data = PNG_3K
    attachment = FakeAttachment("liar.png", data, content_type="image/png", size=100)
    it = await bed.imagine(attachments=(attachment,))
    cb = await it.callback()
    # Refused after the public answer: that answer is edited into the refusal.
    shown = cb if cb.ephemeral else await it.original(predicate=lambda m: "⚠️" in text_of(m))
    assert "couldn't download" in text_of(shown) and not it.followups
    assert hub_posts(bed) == 0
    # Reserved before the download, returned when it failed.
    ledger = [
        (e.kind.value, e.credits) for e in reversed(await bed.services.quotas.reports.recent(bed.guild_id))
    ]
    assert ledger == [("reserve", -8), ("release", 8)]
