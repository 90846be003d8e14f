"""In a DM with the bot, and where only the member installed the app: their own key, results to them only."""

from __future__ import annotations

import pytest

from bot.hub.emulator import EmulatorState
from bot.hub.emulator.state import hash_key
from bot.jobs import JobStatus
from bot.scopes import personal_scope
from tests.bed import TEST_TIMINGS, Bed, open_bed
from tests.e2e.queue_support import FAST_POLLS, text
from tests.fakediscord.server import FakeDiscord

BOTH = pytest.mark.parametrize("bed_backend", ["sqlite", "postgres"], indirect=True)
pytestmark = FAST_POLLS


async def _set_my_key(bed: Bed, key: str) -> None:
    it = await bed.fake.dm_slash(bed.d.alice, ["mykey", "set"])
    cb = await it.callback()
    assert cb.type == 9
    reply = await (await bed.fake.submit_modal(it, {cb.text_inputs[0]: key})).original()
    assert "saved" in str(reply.embeds)


async def test_commands_are_declared_for_dms_and_user_install(bed: Bed) -> None:
    for name in ("imagine", "settings", "mykey", "credits"):
        command = bed.fake.command(name)
        assert sorted(command["contexts"]) == [0, 1, 2], name
        assert sorted(command["integration_types"]) == [0, 1], name
    for name in ("config", "history", "show"):
        assert bed.fake.command(name)["contexts"] == [0], name


async def test_a_dm_without_a_key_is_told_how_to_set_one_and_nothing_is_spent(bed: Bed) -> None:
    it = await bed.fake.dm_slash(bed.d.alice, "imagine", {"prompt": "a comet"})
    cb = await it.callback()
    assert cb.ephemeral and "/mykey set" in text(cb)
    assert bed.hub.requests_to("/api/v1/images/generations", "POST") == []
    cb = await (await bed.fake.dm_slash(bed.d.alice, "credits")).callback()
    assert cb.ephemeral and "/mykey set" in text(cb)


@BOTH
async def test_a_dm_with_a_key_generates_on_the_members_credits(bed: Bed) -> None:
    mine = bed.hub.add_key(credits=200)
    await _set_my_key(bed, mine)
    await (await bed.fake.dm_slash(bed.d.alice, "settings", {"count": 2})).callback()
    assert (await bed.services.members.get(personal_scope(bed.d.alice.id), bed.d.alice.id)).count == 2

    it = await bed.fake.dm_slash(bed.d.alice, "imagine", {"prompt": "a comet over the sea"})
    job = await bed.wait_job((await bed.job_of(it)).id, JobStatus.POSTED)
    assert job.guild_id == personal_scope(bed.d.alice.id) and job.key_owner == bed.d.alice.id
    assert job.private and job.params.n == 2 and job.reservation_id is None
    assert bed.hub.requests_to("/api/v1/images/generations", "POST")[-1].key_hash == hash_key(mine)
    assert bed.hub.balance(mine) == 200 - 16
    channel = bed.fake.dm_channel(bed.d.alice.id)
    assert channel is not None and job.channel_id == channel.id
    (result,) = [m for m in bed.fake.messages(channel.id, include_ephemeral=True) if m.attachments]
    assert "a comet over the sea" in str(result.embeds) and len(result.attachments) == 2

    # The DM's buttons reach only the presser's own jobs; a server's press never reaches this one.
    info = await (await bed.fake.press_button(result, f"imagine:info:{job.id}", bed.d.alice)).callback()
    assert info.ephemeral and "a comet over the sea" in text(info)
    server_job = await bed.wait_job((await bed.job_of(await bed.imagine(bed.d.bob))).id, JobStatus.POSTED)
    posted = bed.fake.message(server_job.posted_message_ids[0])
    posted.components = [
        *posted.components,
        {
            "type": 1,
            "components": [{"type": 2, "style": 2, "label": "x", "custom_id": f"imagine:info:{job.id}"}],
        },
    ]
    cb = await (await bed.fake.press_button(posted, f"imagine:info:{job.id}", bed.d.bob)).callback()
    assert cb.ephemeral and "can't find that generation" in text(cb)

    shown = await (await bed.fake.dm_slash(bed.d.alice, "credits")).original()
    assert "Your image hub balance" in str(shown.embeds) and str(200 - 16) in str(shown.embeds)


async def test_user_install_in_a_server_without_the_bot_uses_the_key_and_stays_ephemeral(bed: Bed) -> None:
    elsewhere = bed.fake.add_guild("No Bot Here")  # the bot never joins it
    channel = elsewhere.add_channel("art")
    carol = elsewhere.add_member("carol")
    it = await bed.fake.user_install_slash(elsewhere, channel, carol, "imagine", {"prompt": "a lantern"})
    cb = await it.callback()
    assert cb.ephemeral and "/mykey set" in text(cb)

    mine = bed.hub.add_key(credits=100)
    it = await bed.fake.user_install_slash(elsewhere, channel, carol, ["mykey", "set"])
    form = await it.callback()
    await (await bed.fake.submit_modal(it, {form.text_inputs[0]: mine})).original()

    it = await bed.fake.user_install_slash(elsewhere, channel, carol, "imagine", {"prompt": "a lantern"})
    cb = await it.callback()
    assert cb.ephemeral
    job = await bed.wait_job((await bed.job_of(it)).id, JobStatus.POSTED)
    assert job.guild_id == personal_scope(carol.id) and job.key_owner == carol.id and job.private
    assert bed.hub.requests_to("/api/v1/images/generations", "POST")[-1].key_hash == hash_key(mine)
    # Nothing public in that server's channel: every message there is ephemeral (to carol).
    assert not bed.fake.messages(channel)
    shown = [m for m in bed.fake.messages(channel, include_ephemeral=True) if m.attachments]
    assert len(shown) == 1 and shown[0].ephemeral
    # And nothing at all went through the bot's own channel routes there.
    assert not [r for r in bed.fake.requests if f"/channels/{channel}/" in r.path]


async def test_without_user_install_enabled_the_commands_are_declared_for_servers_only(
    fake_discord: FakeDiscord,
    hub: tuple[str, EmulatorState],
    bed_database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_discord.app_integration_types = {0}  # the operator didn't enable User Install
    async with open_bed(fake_discord, hub, bed_database_url, TEST_TIMINGS) as bed:
        assert bed.fake.command_syncs and all(
            (c.get("integration_types") or [0]) == [0] for c in bed.fake.command_syncs[-1].payload
        )
        assert sorted(bed.fake.command("imagine")["contexts"]) == [0, 1, 2]  # DMs with the bot still work
        mine = bed.hub.add_key(credits=50)
        await _set_my_key(bed, mine)
        it = await bed.fake.dm_slash(bed.d.alice, "imagine", {"prompt": "still here"})
        await bed.wait_job((await bed.job_of(it)).id, JobStatus.POSTED)
        with pytest.raises(PermissionError):  # Discord's client offers nothing for a user install
            await bed.fake.dm_slash(bed.d.alice, "imagine", {"prompt": "x"}, user_install=True)
    assert "commands.user_install_off" in caplog.text
