"""Per-server settings: allowed channels, generation defaults, limits, moderation, alerts, language.

A server without a row gets `GuildConfig.defaults(guild_id)`. Updates are validated here so
commands can show the `ValueError` message to the admin as it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock, utcnow
from bot.db import Database
from bot.db.keyed_reads import KeyedReads
from bot.db.models import GuildSettings
from bot.db.sql import upsert
from bot.filters import MAX_PATTERN_LENGTH, MAX_PATTERNS, FilterError, check_pattern, check_patterns

MAX_BLOCKED_ENTRIES = 500
# `/config language`: `auto` follows the server's Discord locale; the others are the catalogs' languages.
LANGUAGES = ("auto", "en", "vi")


@dataclass(frozen=True)
class GuildConfig:
    """A snapshot of one server's settings."""

    guild_id: int
    allowed_channel_ids: list[int] = field(default_factory=list)  # empty: every channel
    default_model: str = "gpt-image-2"
    default_aspect: str = "auto"
    default_resolution: str = "1K"
    default_quality: str = "auto"
    max_concurrent_per_member: int = 2
    max_concurrent_per_guild: int = 10
    max_queued_per_member: int = 5
    max_queued_per_guild: int = 50
    mod_log_channel_id: int | None = None
    language: str = "auto"  # public messages' language: `auto` (the server's Discord locale) or a code
    low_balance_threshold: int | None = None
    low_balance_alerted: bool = False  # set after an alert, cleared when the balance recovers
    blocked_words: list[str] = field(default_factory=list)
    blocked_patterns: list[str] = field(default_factory=list)
    personal_keys_allowed: bool = True  # members may pay with their own hub key (`/mykey`)

    @classmethod
    def defaults(cls, guild_id: int) -> GuildConfig:
        return cls(guild_id=guild_id)

    def channel_allowed(self, channel_id: int) -> bool:
        return not self.allowed_channel_ids or channel_id in self.allowed_channel_ids


SETTABLE_FIELDS: frozenset[str] = frozenset(f.name for f in fields(GuildConfig)) - {"guild_id"}


def _int(name: str, value: Any, *, minimum: int, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return value


def _ids(name: str, value: Any) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of ids")
    out: list[int] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ValueError(f"{name} must contain positive numeric ids")
        if item not in out:
            out.append(item)
    return out


def _strings(name: str, value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of strings")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{name} must contain strings")
        item = item.strip()
        if item and item not in out:
            out.append(item)
    if len(out) > MAX_BLOCKED_ENTRIES:
        raise ValueError(f"{name} may hold at most {MAX_BLOCKED_ENTRIES} entries")
    return out


def validate(name: str, value: Any) -> Any:
    """The normalised value for setting `name`, or `ValueError` with a message for the admin."""
    if name not in SETTABLE_FIELDS:
        raise ValueError(f"unknown setting {name!r}")
    if name == "allowed_channel_ids":
        return _ids(name, value)
    if name in {"default_model", "default_aspect", "default_resolution", "default_quality"}:
        if not isinstance(value, str) or not value.strip() or len(value.strip()) > 100:
            raise ValueError(f"{name} must be a non-empty text")
        return value.strip()
    if name.startswith("max_"):
        return _int(name, value, minimum=1)
    if name == "mod_log_channel_id":
        return _int(name, value, minimum=1, optional=True)
    if name == "language":
        if value not in LANGUAGES:
            raise ValueError(f"{name} must be one of {', '.join(LANGUAGES)}")
        return value
    if name == "low_balance_threshold":
        return _int(name, value, minimum=0, optional=True)
    if name in ("low_balance_alerted", "personal_keys_allowed"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if name == "blocked_words":
        return _strings(name, value)
    if name == "blocked_patterns":
        patterns = _strings(name, value)
        if len(patterns) > MAX_PATTERNS:
            raise ValueError(f"{name} may hold at most {MAX_PATTERNS} patterns")
        for pattern in patterns:
            if len(pattern) > MAX_PATTERN_LENGTH:
                raise ValueError(f"pattern is longer than {MAX_PATTERN_LENGTH} characters")
            try:
                check_pattern(pattern)
            except FilterError as exc:
                raise ValueError(f"invalid pattern {pattern!r}: {exc}") from None
        try:
            check_patterns(patterns)  # together within the cost bound
        except FilterError as exc:
            raise ValueError(str(exc)) from None
        return patterns
    raise AssertionError(name)  # pragma: no cover


def _snapshot(row: GuildSettings) -> GuildConfig:
    values = {name: getattr(row, name) for name in SETTABLE_FIELDS}
    for name in ("allowed_channel_ids", "blocked_words", "blocked_patterns"):
        values[name] = list(values[name] or [])
    return GuildConfig(guild_id=row.guild_id, **values)


class GuildSettingsStore:
    """Reads and writes `GuildConfig`s.

    Reads are cached for `CACHE_SECONDS` (every /imagine and queue pass reads them): a change
    made through this store applies at once, one made by another process within that time.
    """

    CACHE_SECONDS = 5.0

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[int, tuple[float, GuildConfig]] = {}
        self._changes = 0  # writes through this store: a read racing one is not cached
        self._reads: KeyedReads[int, GuildConfig | None] = KeyedReads(self._read_many, None)

    async def get(self, guild_id: int) -> GuildConfig:
        """The server's settings (the defaults when nothing was ever set)."""
        cached = self._cache.get(guild_id)
        if cached is not None and time.monotonic() - cached[0] < self.CACHE_SECONDS:
            return cached[1]
        read_at, changes = time.monotonic(), self._changes
        stored = await self._reads.get(guild_id)
        config = GuildConfig.defaults(guild_id) if stored is None else stored
        if changes == self._changes:
            self._cache[guild_id] = (read_at, config)
        return config

    async def _read_many(self, guild_ids: Sequence[int]) -> dict[int, GuildConfig | None]:
        async with self._db.session() as s:
            rows = await s.scalars(select(GuildSettings).where(GuildSettings.guild_id.in_(guild_ids)))
            return {row.guild_id: _snapshot(row) for row in rows}

    def _forget(self, guild_id: int) -> None:
        self._changes += 1
        self._cache.pop(guild_id, None)

    async def update(self, guild_id: int, /, **changes: Any) -> GuildConfig:
        """Change some settings (others keep their value); returns the new settings.

        Raises `ValueError` for an unknown name or an invalid value, before writing anything.
        """
        clean = {name: validate(name, value) for name, value in changes.items()}
        now = self._clock()

        async def work(s: AsyncSession) -> GuildConfig:
            if clean:
                base = replace(GuildConfig.defaults(guild_id), **clean)
                values = {f.name: getattr(base, f.name) for f in fields(GuildConfig)}
                await upsert(
                    s,
                    GuildSettings,
                    {**values, "updated_at": now},
                    ["guild_id"],
                    update={**clean, "updated_at": now},
                )
            row = (
                await s.execute(
                    select(GuildSettings)
                    .where(GuildSettings.guild_id == guild_id)
                    .execution_options(populate_existing=True)
                )
            ).scalar_one_or_none()
            return GuildConfig.defaults(guild_id) if row is None else _snapshot(row)

        try:
            return await self._db.run(work)
        finally:
            self._forget(guild_id)

    async def mark_low_balance_alerted(self, guild_id: int, alerted: bool) -> bool:
        """Set `low_balance_alerted` only if it is not already `alerted`: True for exactly one
        caller (across processes), so a low balance is announced once. False without a row."""

        async def work(s: AsyncSession) -> bool:
            result = await s.execute(
                update(GuildSettings)
                .where(GuildSettings.guild_id == guild_id, GuildSettings.low_balance_alerted.is_not(alerted))
                .values(low_balance_alerted=alerted, updated_at=self._clock())
            )
            return bool(getattr(result, "rowcount", 0))

        try:
            return await self._db.run(work)
        finally:
            self._forget(guild_id)

    async def set_channels(self, guild_id: int, channel_ids: Iterable[int]) -> GuildConfig:
        """Restrict generation to these channels (an empty list allows every channel)."""
        return await self.update(guild_id, allowed_channel_ids=list(channel_ids))

    async def reset(self, guild_id: int) -> GuildConfig:
        """Back to the defaults."""

        async def work(s: AsyncSession) -> None:
            row = await s.get(GuildSettings, guild_id)
            if row is not None:
                await s.delete(row)

        try:
            await self._db.run(work)
        finally:
            self._forget(guild_id)
        return GuildConfig.defaults(guild_id)
