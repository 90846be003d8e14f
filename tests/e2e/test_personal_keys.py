"""Bring your own key: /mykey, jobs paid by the member's own hub key, /credits, /config personal_keys."""

from __future__ import annotations

import dataclasses
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bot.hub.emulator.state import hash_key
from bot.jobs import JobStatus
from bot.logs import make_handler
from bot.quotas import Period
from tests.bed import Bed, hub_settings, start_bot, stop_bot
from tests.e2e.queue_support import FAST_POLLS, text

BOTH = pytest.mark.parametrize("bed_backend", ["sqlite", "postgres"], indirect=True)
pytestmark = FAST_POLLS


async def _set_my_key(bed: Bed, key: str, member: Any = None) -> str:
    member = member or bed.d.alice
    it = await bed.fake.slash(bed.d.guild, bed.d.general, member, ["mykey", "set"])
    cb = await it.callback()
    assert cb.type == 9  # a private form: the key is never a slash option
    submit = await bed.fake.submit_modal(it, {cb.text_inputs[0]: key})
    return str((await submit.original()).embeds)


def _keys_seen(bed: Bed, path_prefix: str) -> list[str | None]:
    return [r.key_hash for r in bed.hub.requests if r.path.startswith(path_prefix)]


async def test_mykey_is_verified_encrypted_masked_and_never_logged_or_stored_in_clear(bed: Bed) -> None:
    mine = bed.hub.add_key(credits=321)
    out = io.StringIO()
    handler = make_handler(out)  # the bot's own handler, at DEBUG, discord's payloads included
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        wrong = await _set_my_key(bed, "gih_live_" + "x" * 32)
        assert (
            "doesn't recognise" in wrong and await bed.services.keys.personal_key_info(bed.d.alice.id) is None
        )
        reply = await _set_my_key(bed, mine)
        assert "321 credits" in reply and mine[-4:] in reply and mine not in reply
        shown = await (
            await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, ["mykey", "show"])
        ).callback()
        assert shown.ephemeral and mine[-4:] in text(shown) and mine not in text(shown)
        job = await bed.wait_job((await bed.job_of(await bed.imagine(prompt="mine"))).id, JobStatus.POSTED)
        assert job.key_owner == bed.d.alice.id
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert await bed.services.keys.get_personal_key(bed.d.alice.id) == mine
    assert "personal hub key set for member" in out.getvalue() and mine not in out.getvalue()
    for request in bed.fake.requests:
        assert mine not in repr(request.json), request.route
    database = Path(make_url(bed.database_url).database or "")
    for path in database.parent.glob(database.name + "*"):
        assert mine.encode() not in path.read_bytes(), path

    cleared = await (
        await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, ["mykey", "clear"])
    ).callback()
    assert cleared.ephemeral and "removed" in text(cleared)
    assert await bed.services.keys.get_personal_key(bed.d.alice.id) is None


@BOTH
async def test_the_members_key_pays_for_submit_and_every_poll_even_after_a_restart(bed: Bed) -> None:
    mine = bed.hub.add_key(credits=100)
    await _set_my_key(bed, mine)
    await bed.services.quotas.policies.set_default(bed.guild_id, 10, Period.WEEK)  # less than two images
    server_before = bed.hub.balance(bed.key)

    job = await bed.job_of(await bed.imagine(prompt="on my own credits", count=2))
    assert job.key_owner == bed.d.alice.id and job.reservation_id is None and job.cost == 16
    job = await bed.wait_job(job.id, JobStatus.POSTED)
    assert set(_keys_seen(bed, "/api/v1/generations/")) == {hash_key(mine)}
    assert _keys_seen(bed, "/api/v1/images/generations") == [hash_key(mine)]
    assert bed.hub.balance(mine) == 100 - 16 and bed.hub.balance(bed.key) == server_before
    budget = await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())
    assert budget.spent == budget.reserved == 0
    assert await bed.services.quotas.reports.recent(bed.guild_id, bed.d.alice.id) == []

    # Submitted with her key; the bot restarts while the hub works; the polls after it use her key too.
    bed.hub.set_hold(True)
    held = await bed.job_of(await bed.imagine(prompt="across a restart"))
    generation = await bed.hub.wait_generation_created(2)
    await stop_bot(bed.bot)
    polls_before = len(_keys_seen(bed, "/api/v1/generations/"))
    bed.hub.complete(generation.id)
    bed.hub.set_hold(False)
    settings = {
        "DISCORD_TOKEN": bed.fake.token,
        "ENCRYPTION_KEY": bed.encryption_key,
        "DATABASE_URL": bed.database_url,
        **hub_settings(bed.hub_url),
    }
    bot, services = await start_bot(bed.fake, settings, bed.timings)
    try:
        restarted = dataclasses.replace(bed, bot=bot, services=services)
        await restarted.wait_job(held.id, JobStatus.POSTED)
        after = _keys_seen(bed, "/api/v1/generations/")[polls_before:]
        assert after and set(after) == {hash_key(mine)}
        assert bed.hub.balance(bed.key) == server_before
    finally:
        await stop_bot(bot)


async def test_a_key_out_of_credits_is_told_in_the_members_words(bed: Bed) -> None:
    mine = bed.hub.add_key(credits=100)
    await _set_my_key(bed, mine)
    bed.hub.set_credits(mine, 3)
    it = await bed.imagine(prompt="too dear")
    job = await bed.wait_job((await bed.job_of(it)).id, JobStatus.FAILED)
    shown = await it.original(predicate=lambda m: "out of credits" in str(m.embeds))
    assert "Your own hub key is out of credits" in str(shown.embeds) and job.key_owner == bed.d.alice.id
    assert await bed.services.quotas.reports.recent(bed.guild_id) == []


async def test_server_rules_still_apply_and_a_server_can_forbid_personal_keys(bed: Bed) -> None:
    mine = bed.hub.add_key(credits=100)
    await _set_my_key(bed, mine)
    await bed.services.guilds.update(bed.guild_id, blocked_words=["forbidden"])
    cb = await (await bed.imagine(prompt="a forbidden thing")).callback()
    assert cb.ephemeral and "blocked" in text(cb)

    denied = await (
        await bed.fake.slash(
            bed.d.guild, bed.d.general, bed.d.admin, ["config", "personal_keys"], {"policy": "deny"}
        )
    ).callback()
    assert denied.ephemeral and "aren't used here" in text(denied)
    assert not (await bed.services.guilds.get(bed.guild_id)).personal_keys_allowed
    shown = await (
        await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, ["mykey", "show"])
    ).callback()
    assert "doesn't use members' own keys" in text(shown)

    # Forbidden: the server's key and budget pay, as for anyone.
    job = await bed.wait_job(
        (await bed.job_of(await bed.imagine(prompt="the server pays"))).id, JobStatus.POSTED
    )
    assert job.key_owner is None and job.reservation_id is not None
    assert _keys_seen(bed, "/api/v1/images/generations")[-1] == hash_key(bed.key)
    assert (await bed.services.quotas.ledger.budget(bed.guild_id, bed.d.alice.id, ())).spent == 8
    # And without a server key, the member is told why their own can't be used.
    await bed.services.keys.clear_key(bed.guild_id)
    cb = await (await bed.imagine(prompt="no key at all")).callback()
    assert cb.ephemeral and "doesn't allow personal hub keys" in text(cb)
    assert hash_key(mine) not in _keys_seen(bed, "/api/v1/images/generations")


async def test_credits_shows_a_members_own_balance_without_manage_server(bed: Bed) -> None:
    mine = bed.hub.add_key(credits=555)
    await _set_my_key(bed, mine)
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.alice, "credits")
    shown = await it.original()
    assert "Your image hub balance" in str(shown.embeds) and "555" in str(shown.embeds)
    assert mine not in str(shown.embeds)
    # The server's balance still needs Manage Server; a member without a key is told so.
    for member, options in ((bed.d.alice, {"whose": "server"}), (bed.d.bob, {})):
        cb = await (await bed.fake.slash(bed.d.guild, bed.d.general, member, "credits", options)).callback()
        assert cb.ephemeral and "Manage Server" in text(cb)
    cb = await (
        await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.bob, "credits", {"whose": "mine"})
    ).callback()
    assert cb.ephemeral and "/mykey set" in text(cb)


async def test_personal_key_jobs_still_wait_for_the_servers_concurrency_limits(bed: Bed) -> None:
    mine = bed.hub.add_key(credits=100)
    await _set_my_key(bed, mine)
    await bed.services.guilds.update(bed.guild_id, max_concurrent_per_member=1)
    bed.hub.set_hold(True)
    first = await bed.job_of(await bed.imagine(prompt="one"))
    await bed.hub.wait_generation_created(1)
    second = await bed.job_of(await bed.imagine(prompt="two"))
    assert first.key_owner == second.key_owner == bed.d.alice.id
    assert second.status is JobStatus.QUEUED  # the server's limit holds for own-key jobs too
    bed.hub.set_hold(False)
    await bed.wait_job(second.id, JobStatus.POSTED)
    assert _keys_seen(bed, "/api/v1/images/generations") == [hash_key(mine)] * 2
