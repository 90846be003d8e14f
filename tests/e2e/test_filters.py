"""Prompt filters — /config filter, blocked before anything is reserved, moderator log."""

from __future__ import annotations

import time
from typing import Any

from bot.filters import MAX_PATTERNS
from bot.jobs import JobStatus
from tests.bed import Bed
from tests.e2e.queue_support import text


async def _config(bed: Bed, command: list[str], options: dict[str, Any]) -> str:
    it = await bed.fake.slash(bed.d.guild, bed.d.general, bed.d.admin, ["config", *command], options)
    cb = await it.callback()
    assert cb.ephemeral
    return text(cb)


async def test_filters_block_before_anything_is_reserved_and_moderators_see_it(bed: Bed) -> None:
    await _config(bed, ["modlog"], {"channel": bed.fake.channel(bed.d.mod_log)})
    assert "now blocked" in await _config(bed, ["filter", "add"], {"kind": "word", "value": "Dragon"})
    assert "now blocked" in await _config(bed, ["filter", "add"], {"kind": "regex", "value": r"sp[a4]+m"})
    listing = await _config(bed, ["filter", "list"], {})
    assert "Dragon" in listing and "sp[a4]+m" in listing

    for prompt in ("a red DRAGON over @everyone <@&1>", "buy SP4AAM now"):
        cb = await (await bed.imagine(prompt=prompt)).callback()
        assert cb.ephemeral and "blocked by this server's filters" in text(cb)
        assert "Dragon" not in text(cb) and "sp[a4]" not in text(cb)  # not which rule
    logged = await bed.fake.wait_message(bed.d.mod_log, lambda m: "SP4AAM" in str(m.embeds))
    first = bed.fake.messages(bed.d.mod_log)[0]
    assert "a red DRAGON over @everyone <@&1>" in str(first.embeds)
    for message in (first, logged):
        assert f"<@{bed.d.alice.id}>" in str(message.embeds) and f"<#{bed.d.images}>" in str(message.embeds)
        assert message.allowed_mentions is not None and message.allowed_mentions.get("parse") == []

    # Nothing reserved, nothing stored, nothing sent to the hub.
    assert await bed.services.quotas.reports.recent(bed.guild_id, limit=100) == []
    assert await bed.services.jobs.list_for_member(bed.guild_id, bed.d.alice.id) == []
    assert bed.hub.requests_to("/api/v1/images/generations", "POST") == []

    # A whole word only, and removing the word lets the prompt through.
    job = await bed.job_of(await bed.imagine(prompt="dragonfly wings"))
    await bed.wait_job(job.id, JobStatus.POSTED)
    assert "no longer blocked" in await _config(
        bed, ["filter", "remove"], {"kind": "word", "value": "Dragon"}
    )
    job = await bed.job_of(await bed.imagine(prompt="a red dragon"))
    await bed.wait_job(job.id, JobStatus.POSTED)


async def test_bad_and_hostile_patterns(bed: Bed) -> None:
    for bad, reason in [
        ("(unclosed", "missing )"),
        ("(?<=x)y", "isn't valid here"),  # look-behind: RE2 can't, refused when added
        (r"(a)\1", "isn't valid here"),  # backreference
        ("x{1000}{1000}", "isn't valid here"),  # too big
    ]:
        reply = await _config(bed, ["filter", "add"], {"kind": "regex", "value": bad})
        assert "⚠️" in reply and reason in reply, (bad, reply)
    assert (await bed.services.guilds.get(bed.guild_id)).blocked_patterns == []

    # Catastrophic backtracking in Python's re; linear in RE2: the prompt is checked at once.
    assert "now blocked" in await _config(bed, ["filter", "add"], {"kind": "regex", "value": "(a+)+$"})
    started = time.monotonic()
    cb = await (await bed.imagine(prompt="a" * 3000 + "!")).callback()
    assert not cb.ephemeral and time.monotonic() - started < 2.0
    blocked = await (await bed.imagine(prompt="a" * 3000)).callback()
    assert blocked.ephemeral and "blocked" in text(blocked)

    # At most MAX_PATTERNS patterns per server.
    await bed.services.guilds.update(bed.guild_id, blocked_patterns=[f"p{i}x" for i in range(MAX_PATTERNS)])
    reply = await _config(bed, ["filter", "add"], {"kind": "regex", "value": "one-more"})
    assert f"at most {MAX_PATTERNS}" in reply
    assert len((await bed.services.guilds.get(bed.guild_id)).blocked_patterns) == MAX_PATTERNS


async def test_filter_commands_need_manage_server(bed: Bed) -> None:
    it = await bed.fake.slash(
        bed.d.guild, bed.d.general, bed.d.alice, ["config", "filter", "list"], {}, force=True
    )
    cb = await it.callback()
    assert cb.ephemeral and "Manage Server" in text(cb)
