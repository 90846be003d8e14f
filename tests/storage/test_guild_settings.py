"""Per-server settings."""

from __future__ import annotations

import dataclasses

import pytest

from bot.db import Database
from bot.guild_settings import SETTABLE_FIELDS, GuildConfig, GuildSettingsStore

GUILD = 900_000_000_000_000_001


async def test_defaults_without_a_row(db: Database) -> None:
    config = await GuildSettingsStore(db).get(GUILD)
    assert config == GuildConfig(guild_id=GUILD)
    assert config.allowed_channel_ids == []
    assert config.default_model == "gpt-image-2"
    assert (config.default_aspect, config.default_resolution, config.default_quality) == (
        "auto",
        "1K",
        "auto",
    )
    assert (config.max_concurrent_per_member, config.max_concurrent_per_guild) == (2, 10)
    assert (config.max_queued_per_member, config.max_queued_per_guild) == (5, 50)
    assert config.mod_log_channel_id is None and config.low_balance_threshold is None
    assert config.low_balance_alerted is False
    assert config.blocked_words == [] and config.blocked_patterns == []
    assert config.channel_allowed(123)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.default_model = "x"  # type: ignore[misc]


async def test_update_changes_only_given_fields(db: Database) -> None:
    store = GuildSettingsStore(db)
    config = await store.update(GUILD, default_model="flux-2", max_concurrent_per_member=4)
    assert config.default_model == "flux-2" and config.max_concurrent_per_member == 4
    assert config.default_aspect == "auto"
    config = await store.update(GUILD, default_aspect="16:9", mod_log_channel_id=555)
    assert (config.default_model, config.default_aspect, config.mod_log_channel_id) == ("flux-2", "16:9", 555)
    assert await store.get(GUILD) == config
    assert await store.get(GUILD + 1) == GuildConfig(guild_id=GUILD + 1)  # other servers untouched
    config = await store.update(GUILD, mod_log_channel_id=None, low_balance_threshold=100)
    assert config.mod_log_channel_id is None and config.low_balance_threshold == 100
    config = await store.update(GUILD, low_balance_alerted=True)
    assert config.low_balance_alerted is True
    assert (await store.update(GUILD)) == config  # nothing to change


async def test_every_field_can_be_set(db: Database) -> None:
    store = GuildSettingsStore(db)
    values = {
        "allowed_channel_ids": [1, 2],
        "default_model": "m",
        "default_aspect": "1:1",
        "default_resolution": "2K",
        "default_quality": "high",
        "max_concurrent_per_member": 3,
        "max_concurrent_per_guild": 30,
        "max_queued_per_member": 7,
        "max_queued_per_guild": 70,
        "mod_log_channel_id": 9,
        "language": "vi",
        "low_balance_threshold": 0,
        "low_balance_alerted": True,
        "blocked_words": ["Badword", "other"],
        "blocked_patterns": [r"\bfoo\d+"],
        "personal_keys_allowed": False,
    }
    assert set(values) == SETTABLE_FIELDS
    config = await store.update(GUILD, **values)
    assert dataclasses.asdict(config) == {"guild_id": GUILD, **values}
    assert await store.get(GUILD) == config


async def test_channels(db: Database) -> None:
    store = GuildSettingsStore(db)
    big = 1_300_000_000_000_000_000
    config = await store.set_channels(GUILD, [big, 5, big])
    assert config.allowed_channel_ids == [big, 5]
    assert config.channel_allowed(big) and not config.channel_allowed(6)
    config = await store.set_channels(GUILD, [])
    assert config.allowed_channel_ids == [] and config.channel_allowed(6)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nope": 1}, "unknown setting"),
        ({"guild_id": 5}, "unknown setting"),
        ({"max_concurrent_per_member": 0}, "at least 1"),
        ({"max_queued_per_guild": "5"}, "whole number"),
        ({"max_concurrent_per_guild": True}, "whole number"),
        ({"low_balance_threshold": -1}, "at least 0"),
        ({"default_model": "  "}, "non-empty"),
        ({"allowed_channel_ids": "123"}, "list of ids"),
        ({"allowed_channel_ids": [0]}, "positive"),
        ({"blocked_patterns": ["(unclosed"]}, "invalid pattern"),
        ({"blocked_words": "word"}, "list of strings"),
        ({"low_balance_alerted": 1}, "true or false"),
        ({"language": "fr"}, "one of auto, en, vi"),
        ({"language": None}, "one of auto, en, vi"),
    ],
)
async def test_invalid_updates_write_nothing(db: Database, changes: dict[str, object], message: str) -> None:
    store = GuildSettingsStore(db)
    with pytest.raises(ValueError, match=message):
        await store.update(GUILD, max_queued_per_member=9, **changes)
    assert await store.get(GUILD) == GuildConfig(guild_id=GUILD)


async def test_reset(db: Database) -> None:
    store = GuildSettingsStore(db)
    await store.update(GUILD, default_model="x")
    assert await store.reset(GUILD) == GuildConfig(guild_id=GUILD)
    assert await store.get(GUILD) == GuildConfig(guild_id=GUILD)
