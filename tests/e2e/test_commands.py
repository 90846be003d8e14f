"""Command registration, /models, /credits, /quota and every /config path, end to end."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bot.logs import make_handler
from bot.quotas import Period
from tests.bed import Bed

MANAGE_GUILD = 1 << 5


def _option(command: dict[str, Any], *path: str) -> dict[str, Any]:
    node = command
    for name in path:
        node = next(o for o in node.get("options", []) if o["name"] == name)
    return node


def _text(cb: Any) -> str:
    return " ".join(str(e) for e in cb.embeds) + (cb.content or "")


async def test_commands_are_registered_with_options_and_permissions(bed: Bed) -> None:
    names = {c["name"] for c in bed.fake.commands()}
    assert {"imagine", "models", "credits", "quota", "config", "Imagine with these images"} <= names
    imagine = bed.fake.command("imagine")
    options = {o["name"]: o for o in imagine["options"]}
    assert list(options)[:7] == ["prompt", "model", "aspect", "resolution", "quality", "count", "reference1"]
    assert options["prompt"]["required"] is True
    assert options["model"]["autocomplete"] and options["aspect"]["autocomplete"]
    assert [c["value"] for c in options["resolution"]["choices"]] == ["1K", "2K", "4K"]
    assert options["count"]["min_value"] == 1 and options["count"]["max_value"] == 4
    assert all(options[f"reference{i}"]["type"] == 11 for i in range(1, 5))
    assert int(bed.fake.command("config")["default_member_permissions"]) == MANAGE_GUILD
    # /credits shows a member their own key's balance: open to all (the server's balance is checked
    # by the bot itself, test_credits_and_config_refuse_members_without_manage_server).
    assert bed.fake.command("credits").get("default_member_permissions") is None
    config = bed.fake.command("config")
    assert {"set", "clear", "show"} == {o["name"] for o in _option(config, "key")["options"]}
    assert {"default", "role", "user", "exempt", "show"} <= {
        o["name"] for o in _option(config, "quota")["options"]
    }
    menu = bed.fake.command("Imagine with these images", type=3)
    assert menu["type"] == 3


async def test_models_shows_costs_ratios_and_reference_limit(bed: Bed) -> None:
    cb = await (await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.bob, "models")).callback()
    text = _text(cb)
    assert cb.ephemeral
    for fragment in ("gpt-image-2", "openai", "1K: 8", "2K: 10", "4K: 12", "21:9", "up to 16"):
        assert fragment in text


async def test_credits_shows_balance_and_period_spend(bed: Bed) -> None:
    await _generate(bed)
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, "credits")
    message = await it.original()
    text = str(message.embeds)
    assert f"{bed.hub.balance(bed.key):,}" in text
    assert "PRO" in text
    assert "8 credits" in text  # this period's spend by members


async def test_credits_and_config_refuse_members_without_manage_server(bed: Bed) -> None:
    for command in ("credits", ["config", "key", "show"], ["config", "quota", "show"]):
        # force=True: the member's client would hide the command, but a server can change that default.
        it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, command, force=True)
        cb = await it.callback()
        assert cb.ephemeral and "Manage Server" in _text(cb), command


async def test_credits_without_a_key_tells_moderators_how_to_set_one(bed: Bed) -> None:
    await bed.services.keys.clear_key(bed.guild_id)
    cb = await (await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, "credits")).callback()
    assert cb.ephemeral and "/config key set" in _text(cb)


async def test_quota_shows_remaining_budget_reset_and_recent_usage(bed: Bed) -> None:
    await bed.services.quotas.policies.set_default(bed.guild_id, 100, Period.WEEK)
    await _generate(bed)
    cb = await (await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "quota")).callback()
    text = _text(cb)
    assert cb.ephemeral
    assert "**92** of 100 credits left this week" in text
    assert "█" in text and "Resets <t:" in text
    assert "Recent" in text


async def test_quota_of_another_member_needs_manage_server(bed: Bed) -> None:
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.bob, "quota", {"member": bed.d.alice})
    assert "Manage Server" in _text(await it.callback())
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, "quota", {"member": bed.d.alice})
    cb = await it.callback()
    assert f"<@{bed.d.alice.id}>" in _text(cb) and "no credit limit" in _text(cb)


async def test_key_set_through_modal_is_verified_encrypted_and_never_logged(bed: Bed) -> None:
    log_output = io.StringIO()
    handler = make_handler(log_output)  # the bot's own handler, at DEBUG, discord's payloads included
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        new_key = await _set_key_through_modal(bed)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert "hub key set for guild" in log_output.getvalue()
    assert new_key not in log_output.getvalue()


async def _set_key_through_modal(bed: Bed) -> str:
    await bed.services.keys.clear_key(bed.guild_id)
    new_key = bed.hub.add_key(credits=777)

    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", "key", "set"])
    cb = await it.callback()
    assert cb.type == 9  # a modal: the key is never a slash option
    submit = await bed.fake.submit_modal(it, {cb.text_inputs[0]: new_key})
    reply = await submit.original()
    assert "777 credits" in str(reply.embeds) and new_key[-4:] in str(reply.embeds)
    assert new_key not in str(reply.embeds)
    assert await bed.services.keys.get_key(bed.guild_id) == new_key

    shown = await (
        await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", "key", "show"])
    ).callback()
    assert shown.ephemeral and new_key[-4:] in _text(shown) and new_key not in _text(shown)
    for request in bed.fake.requests:
        assert new_key not in repr(request.json), request.route
    database = Path(make_url(bed.database_url).database or "")
    for path in database.parent.glob(database.name + "*"):
        assert new_key.encode() not in path.read_bytes(), path
    return new_key


async def test_wrong_key_is_refused_and_nothing_saved(bed: Bed) -> None:
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", "key", "set"])
    cb = await it.callback()
    field = cb.text_inputs[0]
    submit = await bed.fake.submit_modal(it, {field: "gih_live_" + "x" * 32})
    reply = await submit.original()
    assert "doesn't recognise" in str(reply.embeds)
    assert await bed.services.keys.get_key(bed.guild_id) == bed.key


async def test_key_clear_and_show(bed: Bed) -> None:
    cb = await (
        await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", "key", "clear"])
    ).callback()
    assert "Key removed" in _text(cb)
    assert await bed.services.keys.get_key(bed.guild_id) is None
    cb = await (
        await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", "key", "show"])
    ).callback()
    assert "No key is set" in _text(cb)


async def test_quota_config_paths_change_the_policy(bed: Bed) -> None:
    guild = bed.d.guild
    vip_id = guild.add_role("VIP", 0)
    exempt_id = guild.add_role("Staff", 0)
    await _ok(bed, ["config", "quota", "default"], {"credits": 50, "period": "month"})
    await _ok(bed, ["config", "quota", "role"], {"role": guild.roles[vip_id], "credits": 200})
    await _ok(bed, ["config", "quota", "user"], {"member": bed.d.bob, "credits": 10})
    await _ok(bed, ["config", "quota", "exempt"], {"role": guild.roles[exempt_id]})
    policy = await bed.services.quotas.policies.policy(bed.guild_id)
    assert policy.default == 50 and policy.period == Period.MONTH
    assert policy.roles == {vip_id: 200} and policy.members == {bed.d.bob.id: 10}
    assert set(policy.exempt_roles) == {exempt_id}
    shown = await _ok(bed, ["config", "quota", "show"], {})
    assert "50" in shown and "200" in shown and "10" in shown and str(exempt_id) in shown


async def test_channels_defaults_limits_and_usage(bed: Bed) -> None:
    await _ok(bed, ["config", "channels"], {"action": "add", "channel": bed.fake.channel(bed.d.images)})
    assert (await bed.services.guilds.get(bed.guild_id)).allowed_channel_ids == [bed.d.images]
    refused = await (await bed.imagine(channel_id=bed.d.general)).callback()
    assert refused.ephemeral and "isn't enabled in this channel" in _text(refused)
    await _ok(bed, ["config", "defaults"], {"aspect": "16:9", "resolution": "2K", "quality": "high"})
    config = await bed.services.guilds.get(bed.guild_id)
    assert (config.default_aspect, config.default_resolution, config.default_quality) == (
        "16:9",
        "2K",
        "high",
    )
    bad = await (
        await bed.fake.slash(
            bed.d.guild, bed.d.general, bed.d.admin, ["config", "defaults"], {"aspect": "7:5"}
        )
    ).callback()
    assert "doesn't support" in _text(bad)
    await _ok(bed, ["config", "limits"], {"per_member": 3, "per_server": 20})
    config = await bed.services.guilds.get(bed.guild_id)
    assert (config.max_concurrent_per_member, config.max_concurrent_per_guild) == (3, 20)
    await _generate(bed)
    usage = await _ok(bed, ["config", "usage"], {})
    assert f"<@{bed.d.alice.id}> — 10" in usage  # the new default: one 2K image, 10 credits


async def test_two_servers_reach_the_hub_with_their_own_keys(bed: Bed) -> None:
    other = bed.fake.add_guild("Other Server")
    channel = other.add_channel("art")
    member = other.add_member("carol")
    await bed.fake.join_guild(other)
    other_key = bed.hub.add_key(credits=500)
    await bed.services.keys.set_key(other.id, other_key, other.owner.id)

    first = await bed.job_of(await bed.imagine())
    second_it = await bed.fake.slash(other, channel, member, "imagine", {"prompt": "a red fox"})
    second = await bed.job_of(second_it)
    for job in (first, second):
        await bed.wait_job(job.id, *_done())
    assert bed.hub.balance(bed.key) == 10_000 - 8
    assert bed.hub.balance(other_key) == 500 - 8
    posts = bed.hub.requests_to("/api/v1/images/generations", "POST")
    assert sorted(r.key_suffix for r in posts) == sorted([bed.key[-4:], other_key[-4:]])


# -- helpers --------------------------------------------------------------------------------------


def _done() -> tuple[Any, ...]:
    from bot.jobs import JobStatus

    return (JobStatus.POSTED, JobStatus.FAILED)


async def _generate(bed: Bed) -> None:
    from bot.jobs import JobStatus

    job = await bed.job_of(await bed.imagine())
    job = await bed.wait_job(job.id, JobStatus.POSTED)


async def _ok(bed: Bed, command: list[str], options: dict[str, Any]) -> str:
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, command, options)
    cb = await it.callback()
    if cb.type == 5:
        message = await it.original()
        text = str(message.embeds)
    else:
        text = _text(cb)
    assert cb.ephemeral, command
    assert "⚠️" not in text, text
    return text


@pytest.mark.timings(early_answer=5.0)  # the refusal itself, not the early "thinking…" answer
async def test_a_key_the_bot_can_no_longer_decrypt_is_refused_clearly(bed: Bed) -> None:
    from cryptography.fernet import Fernet, MultiFernet

    from bot.keys import KeyVault

    other = KeyVault(bed.services.db, MultiFernet([Fernet(Fernet.generate_key())]))
    await other.set_key(bed.guild_id, bed.key, bed.d.admin.id)  # as if ENCRYPTION_KEY had changed since
    cb = await (await bed.imagine()).callback()
    assert cb.ephemeral and "can't be read" in _text(cb) and "/config key set" in _text(cb)
    assert bed.hub.requests_to("/api/v1/images/generations", "POST") == []
