"""A member's own defaults in a server (`/settings`), and the chain that picks every value of a request.

Each value of a generation comes from the first of: the option given with the command → the
member's setting → the server's default → the model's default (`resolve`, a pure function).
Settings are checked against the model catalog when they are used, not only when set: a model
that left the hub, or an aspect or tier the chosen model doesn't offer, is skipped (down the
chain) and reported in `Resolved.skipped`, so the member can be told. An option the member typed
is never skipped: `ImagineService.plan` refuses it, as before. Visibility is the member's own:
`private` results go to the member only (the chat side decides how), `public` is the default.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock, utcnow
from bot.db import Database
from bot.db.keyed_reads import KeyedReads
from bot.db.models import MemberSettings
from bot.db.sql import upsert
from bot.hub import HubModel
from bot.hub.sizes import QUALITIES, TIERS

T = TypeVar("T")

VISIBILITIES = ("public", "private")
MAX_COUNT = 4
SETTING_NAMES = ("model", "aspect", "resolution", "quality", "count", "visibility")
MAX_MODEL_CHARS = 100
MAX_ASPECT_CHARS = 20


class Origin(StrEnum):
    """Where a value came from, in the order they are tried."""

    OPTION = "option"
    MEMBER = "member"
    SERVER = "server"
    MODEL = "model"


@dataclass(frozen=True, slots=True)
class MemberDefaults:
    """A member's settings in one server; None = not set."""

    model: str | None = None
    aspect: str | None = None
    resolution: str | None = None
    quality: str | None = None
    count: int | None = None
    visibility: str | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True, slots=True)
class ServerDefaults:
    model: str
    aspect: str
    resolution: str
    quality: str


@dataclass(frozen=True, slots=True)
class Chosen(Generic[T]):
    value: T
    origin: Origin


@dataclass(frozen=True, slots=True)
class Resolved:
    """Every value of a request and where it came from; `skipped` lists the member's settings
    (name, value) that no longer fit the catalog or the chosen model and were passed over.
    `model` is None when the chain ends on a model the hub doesn't list (the caller refuses)."""

    model: Chosen[str]
    aspect: Chosen[str]
    resolution: Chosen[str]
    quality: Chosen[str]
    count: Chosen[int]
    visibility: Chosen[str]
    found: HubModel | None
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Options:
    """What the member typed with the command (None = not given)."""

    model: str | None = None
    aspect: str | None = None
    resolution: str | None = None
    quality: str | None = None
    count: int | None = None


def resolve(
    options: Options, member: MemberDefaults, server: ServerDefaults, models: Sequence[HubModel]
) -> Resolved:
    """Pick each value: option → member setting → server default → model default (see the module
    docstring). Options are taken as typed (the caller checks them); a member's or a server's value
    the chosen model can't use is passed over."""
    by_id = {m.id: m for m in models}
    skipped: list[tuple[str, str]] = []

    if options.model is not None:
        model = Chosen(options.model, Origin.OPTION)
    elif member.model is not None and member.model in by_id:
        model = Chosen(member.model, Origin.MEMBER)
    else:
        if member.model is not None:
            skipped.append(("model", member.model))
        model = Chosen(server.model, Origin.SERVER)
    found = by_id.get(model.value)

    def pick(
        name: str, option: str | None, mine: str | None, theirs: str, allowed: Sequence[str], last: str
    ) -> Chosen[str]:
        if option is not None:
            return Chosen(option, Origin.OPTION)
        if mine is not None:
            if found is None or mine in allowed:
                return Chosen(mine, Origin.MEMBER)
            skipped.append((name, mine))
        if found is None or theirs in allowed:
            return Chosen(theirs, Origin.SERVER)
        return Chosen(last, Origin.MODEL)

    aspect = pick(
        "aspect",
        options.aspect,
        member.aspect,
        server.aspect,
        found.aspect_ratios if found else (),
        found.default_aspect if found else server.aspect,
    )
    tiers = [t for t in found.credits] if found else list(TIERS)
    resolution = pick(
        "resolution",
        options.resolution.upper() if options.resolution else None,
        member.resolution,
        server.resolution.upper(),
        tiers,
        found.default_tier if found else server.resolution,
    )
    qualities = [q for q in (found.qualities if found else QUALITIES) if q in QUALITIES] or list(QUALITIES)
    quality = pick("quality", options.quality, member.quality, server.quality, qualities, qualities[0])
    if options.count is not None:
        count = Chosen(options.count, Origin.OPTION)
    elif member.count is not None:
        count = Chosen(member.count, Origin.MEMBER)
    else:
        count = Chosen(1, Origin.MODEL)
    visibility = (
        Chosen(member.visibility, Origin.MEMBER)
        if member.visibility in VISIBILITIES
        else Chosen("public", Origin.SERVER)
    )
    return Resolved(
        model=model,
        aspect=aspect,
        resolution=resolution,
        quality=quality,
        count=count,
        visibility=visibility,
        found=found,
        skipped=tuple(skipped),
    )


class SettingInvalid(ValueError):
    """A value a member tried to save is out of bounds (`name`, the `value` as given)."""

    def __init__(self, name: str, value: object) -> None:
        super().__init__(f"{name}={value!r}")
        self.name = name
        self.value = value


def check_setting(name: str, value: Any, models: Sequence[HubModel]) -> Any:
    """A value to store, checked and normalised; `SettingInvalid` if it can't be one. Bounded like
    every other input: a model must be listed by the hub, an aspect or tier offered by some model."""
    if name == "model":
        if not isinstance(value, str) or len(value) > MAX_MODEL_CHARS or value not in {m.id for m in models}:
            raise SettingInvalid(name, value)
        return value
    if name == "aspect":
        ratios = {r for m in models for r in m.aspect_ratios}
        if not isinstance(value, str) or len(value) > MAX_ASPECT_CHARS or value not in ratios:
            raise SettingInvalid(name, value)
        return value
    if name == "resolution":
        tier = str(value).upper()
        if tier not in TIERS:
            raise SettingInvalid(name, value)
        return tier
    if name == "quality":
        if value not in QUALITIES:
            raise SettingInvalid(name, value)
        return value
    if name == "count":
        if not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
            raise SettingInvalid(name, value)
        return value
    if name == "visibility":
        if value not in VISIBILITIES:
            raise SettingInvalid(name, value)
        return value
    raise SettingInvalid(name, value)


class MemberSettingsStore:
    """Members' defaults, one row per member and server (absent: nothing set).

    Reads are cached for `CACHE_SECONDS` (every /imagine reads them), as the server's settings
    are: a change made through this store applies at once, one made by another process within
    that time."""

    CACHE_SECONDS = 5.0
    CACHE_SIZE = 10_000

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[tuple[int, int], tuple[float, MemberDefaults]] = {}
        self._changes = 0  # writes through this store: a read racing one is not cached
        self._reads = KeyedReads(self._read_many, MemberDefaults())

    async def get(self, guild_id: int, user_id: int) -> MemberDefaults:
        key = (guild_id, user_id)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.CACHE_SECONDS:
            return cached[1]
        read_at, changes = time.monotonic(), self._changes
        defaults = await self._reads.get(key)
        if changes == self._changes:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = (read_at, defaults)
        return defaults

    async def _read_many(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], MemberDefaults]:
        member = (MemberSettings.guild_id, MemberSettings.user_id)
        columns = [getattr(MemberSettings, name) for name in SETTING_NAMES]
        async with self._db.session() as s:
            rows = await s.execute(select(*member, *columns).where(tuple_(*member).in_(keys)))
        return {
            (row[0], row[1]): MemberDefaults(**dict(zip(SETTING_NAMES, row[2:], strict=True))) for row in rows
        }

    def _forget(self, guild_id: int, user_id: int) -> None:
        self._changes += 1
        self._cache.pop((guild_id, user_id), None)

    async def update(self, guild_id: int, user_id: int, **values: Any) -> MemberDefaults:
        """Set the given settings (a value of None resets that one) in one upsert, so two changes
        at once never fail on the primary key. A row left with nothing set is deleted."""
        unknown = set(values) - set(SETTING_NAMES)
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        now = self._clock()

        async def work(s: AsyncSession) -> MemberDefaults:
            row = {"guild_id": guild_id, "user_id": user_id, "updated_at": now, **values}
            await upsert(
                s, MemberSettings, row, ["guild_id", "user_id"], update={**values, "updated_at": now}
            )
            current = await _read(s, guild_id, user_id)
            if current.is_empty():
                await s.execute(_where(delete(MemberSettings), guild_id, user_id))
            return current

        try:
            return await self._db.run(work)
        finally:
            self._forget(guild_id, user_id)

    async def reset(self, guild_id: int, user_id: int) -> None:
        """Forget every setting of the member in the server."""

        async def work(s: AsyncSession) -> None:
            await s.execute(_where(delete(MemberSettings), guild_id, user_id))

        try:
            await self._db.run(work)
        finally:
            self._forget(guild_id, user_id)


def _where(statement: Any, guild_id: int, user_id: int) -> Any:
    return statement.where(MemberSettings.guild_id == guild_id, MemberSettings.user_id == user_id)


async def _read(s: AsyncSession, guild_id: int, user_id: int) -> MemberDefaults:
    query = _where(select(MemberSettings), guild_id, user_id).execution_options(populate_existing=True)
    row = (await s.execute(query)).scalar_one_or_none()
    if row is None:
        return MemberDefaults()
    return MemberDefaults(**{name: getattr(row, name) for name in SETTING_NAMES})
