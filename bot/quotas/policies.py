"""A server's quota rules, and where a member's limit comes from.

Most specific wins: an exempt role means no limit at all; else a member override; else the most
generous of the member's role overrides; else the server default (no default: unlimited).
`QuotaPolicies` stores the rules and caches them for `CACHE_SECONDS` (every budget check and
reservation reads one): a change made through it applies at once, one made by another process
within that time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import utcnow
from bot.db import Database
from bot.db.models import QuotaExemptRole, QuotaMemberLimit, QuotaRoleLimit, QuotaSettings
from bot.db.sql import upsert
from bot.quotas.periods import DEFAULT_PERIOD, Period, period_bounds


class LimitSource(StrEnum):
    """Which rule set a member's limit."""

    EXEMPT = "exempt"
    MEMBER = "member"
    ROLE = "role"
    DEFAULT = "default"


@dataclass(frozen=True)
class QuotaPolicy:
    """A server's quota rules. Credits are per `period`; `default` None means unlimited."""

    guild_id: int
    default: int | None = None
    period: Period = DEFAULT_PERIOD
    roles: Mapping[int, int] = field(default_factory=dict)  # role id -> credits
    members: Mapping[int, int] = field(default_factory=dict)  # user id -> credits
    exempt_roles: frozenset[int] = frozenset()

    def resolve(self, user_id: int, role_ids: Iterable[int]) -> tuple[int | None, LimitSource]:
        """The member's limit (None: unlimited) and the rule it came from."""
        held = set(role_ids)
        if held & self.exempt_roles:
            return None, LimitSource.EXEMPT
        if user_id in self.members:
            return self.members[user_id], LimitSource.MEMBER
        role_limits = [self.roles[r] for r in held if r in self.roles]
        if role_limits:
            return max(role_limits), LimitSource.ROLE
        return self.default, LimitSource.DEFAULT

    def limit_for(self, user_id: int, role_ids: Iterable[int]) -> int | None:
        return self.resolve(user_id, role_ids)[0]

    def bounds(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The current period `(start, end)` (of `now`, default the current time)."""
        return period_bounds(self.period, now if now is not None else utcnow())


def credits_arg(credits: int | None, *, name: str = "credits") -> int | None:
    """A credit amount as given by a caller: None, or a whole number of at least 0."""
    if credits is None:
        return None
    if isinstance(credits, bool) or not isinstance(credits, int) or credits < 0:
        raise ValueError(f"{name} must be a whole number of at least 0")
    return credits


class QuotaPolicies:
    """Reads and changes every server's quota rules; see the module docstring."""

    CACHE_SECONDS = 5.0

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[int, tuple[float, QuotaPolicy]] = {}
        self._changes = 0  # writes through this object: a read racing one is not cached

    def _forget(self, guild_id: int) -> None:
        self._changes += 1
        self._cache.pop(guild_id, None)

    async def set_default(
        self, guild_id: int, credits: int | None, period: Period | str | None = None
    ) -> QuotaPolicy:
        """Set the server's default budget (None: unlimited); `period` None keeps the current one."""
        credits = credits_arg(credits)
        new_period = Period(period) if period is not None else None

        async def work(s: AsyncSession) -> None:
            values: dict[str, Any] = {"guild_id": guild_id, "credits": credits}
            changes: dict[str, Any] = {"credits": credits}
            values["period"] = (new_period or DEFAULT_PERIOD).value
            if new_period is not None:
                changes["period"] = new_period.value
            await upsert(s, QuotaSettings, values, ["guild_id"], update=changes)

        await self._db.run(work)
        self._forget(guild_id)
        return await self.policy(guild_id)

    async def set_role(self, guild_id: int, role_id: int, credits: int | None) -> QuotaPolicy:
        """Give a role its own budget per period; None removes the override."""
        return await self._set_override(QuotaRoleLimit, "role_id", guild_id, role_id, credits)

    async def set_member(self, guild_id: int, user_id: int, credits: int | None) -> QuotaPolicy:
        """Give one member their own budget (beats role overrides); None removes it."""
        return await self._set_override(QuotaMemberLimit, "user_id", guild_id, user_id, credits)

    async def _set_override(
        self,
        table: type[QuotaRoleLimit] | type[QuotaMemberLimit],
        key: str,
        guild_id: int,
        key_id: int,
        credits: int | None,
    ) -> QuotaPolicy:
        credits = credits_arg(credits)
        column = getattr(table, key)

        async def work(s: AsyncSession) -> None:
            if credits is None:
                await s.execute(delete(table).where(table.guild_id == guild_id, column == key_id))
            else:
                values = {"guild_id": guild_id, key: key_id, "credits": credits}
                await upsert(s, table, values, ["guild_id", key])

        await self._db.run(work)
        self._forget(guild_id)
        return await self.policy(guild_id)

    async def set_exempt(self, guild_id: int, role_id: int, exempt: bool) -> QuotaPolicy:
        """Members with an exempt role have no limit."""

        async def work(s: AsyncSession) -> None:
            if exempt:
                await upsert(
                    s, QuotaExemptRole, {"guild_id": guild_id, "role_id": role_id}, ["guild_id", "role_id"]
                )
            else:
                await s.execute(
                    delete(QuotaExemptRole).where(
                        QuotaExemptRole.guild_id == guild_id, QuotaExemptRole.role_id == role_id
                    )
                )

        await self._db.run(work)
        self._forget(guild_id)
        return await self.policy(guild_id)

    async def policy(self, guild_id: int) -> QuotaPolicy:
        async with self._db.session() as s:
            return await self.read(s, guild_id)

    async def read(self, s: AsyncSession, guild_id: int) -> QuotaPolicy:
        """The server's policy within the caller's session (cached; see the module docstring)."""
        cached = self._cache.get(guild_id)
        if cached is not None and time.monotonic() - cached[0] < self.CACHE_SECONDS:
            return cached[1]
        read_at, changes = time.monotonic(), self._changes
        policy = await self._load(s, guild_id)
        if changes == self._changes:
            self._cache[guild_id] = (read_at, policy)
        return policy

    async def _load(self, s: AsyncSession, guild_id: int) -> QuotaPolicy:
        settings = await s.get(QuotaSettings, guild_id)
        roles = (
            await s.execute(
                select(QuotaRoleLimit.role_id, QuotaRoleLimit.credits).where(
                    QuotaRoleLimit.guild_id == guild_id
                )
            )
        ).all()
        members = (
            await s.execute(
                select(QuotaMemberLimit.user_id, QuotaMemberLimit.credits).where(
                    QuotaMemberLimit.guild_id == guild_id
                )
            )
        ).all()
        exempt = (
            await s.execute(select(QuotaExemptRole.role_id).where(QuotaExemptRole.guild_id == guild_id))
        ).scalars()
        return QuotaPolicy(
            guild_id=guild_id,
            default=settings.credits if settings else None,
            period=Period(settings.period) if settings else DEFAULT_PERIOD,
            roles={r: c for r, c in roles},
            members={u: c for u, c in members},
            exempt_roles=frozenset(exempt),
        )
