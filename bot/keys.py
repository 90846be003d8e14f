"""GPT Image Hub keys, per server and per member (`/mykey`), encrypted at rest with `MultiFernet`.

Only ciphertext and a masked form (at most the last 4 characters) reach the database. The raw
key is never logged and never put in an exception message or a repr. Rotation re-encrypts both
kinds.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import InvalidToken, MultiFernet
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock, utcnow
from bot.db import Database
from bot.db.keyed_reads import KeyedReads
from bot.db.models import GuildKey, MemberKey
from bot.db.sql import upsert

log = logging.getLogger(__name__)

_PREFIX = re.compile(r"^[A-Za-z]{2,8}_(?:[A-Za-z]{2,8}_)?")
_ELLIPSIS = "…"
# Decrypted keys are kept this long: the scheduler asks for one on every poll. A key set or
# cleared through this process applies at once; through another process, within this time.
KEY_CACHE_SECONDS = 10.0


def mask_key(raw: str) -> str:
    """Display form of a key: a known-looking prefix plus at most its last 4 characters.

    `gih_live_0123456789abcd` → `gih_live_…abcd`. Short keys show fewer characters (a quarter
    of the secret part at most), so a mask never gives away most of a key.
    """
    raw = raw.strip()
    match = _PREFIX.match(raw)
    prefix = match.group(0) if match else ""
    secret = raw[len(prefix) :]
    shown = min(4, len(secret) // 4)
    return f"{prefix}{_ELLIPSIS}{secret[-shown:] if shown else ''}"


class KeyVaultError(Exception):
    """Base class for key-vault errors (messages never contain a key)."""


class KeyUnreadable(KeyVaultError):
    """The stored key cannot be decrypted with the configured ENCRYPTION_KEY(s)."""

    def __init__(self, guild_id: int) -> None:
        super().__init__(
            f"the hub key stored for server {guild_id} cannot be decrypted with ENCRYPTION_KEY; "
            "set the key again (or add the old encryption key back after the new one)"
        )
        self.guild_id = guild_id


class PersonalKeyUnreadable(KeyVaultError):
    """A member's stored key cannot be decrypted with the configured ENCRYPTION_KEY(s)."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"the hub key stored for member {user_id} cannot be decrypted with ENCRYPTION_KEY")
        self.user_id = user_id


@dataclass(frozen=True)
class PersonalKeyInfo:
    """What may be shown about a member's key."""

    user_id: int
    masked: str
    set_at: datetime


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a stored key."""

    guild_id: int
    masked: str
    set_by: int
    set_at: datetime


class KeyVault:
    """Stores, reads and rotates the per-server keys; `fallback_key` is the bot-wide HUB_API_KEY."""

    def __init__(
        self, db: Database, fernet: MultiFernet, fallback_key: str | None = None, *, clock: Clock = utcnow
    ) -> None:
        self._db = db
        self._fernet = fernet
        self._fallback = fallback_key or None
        self._clock = clock
        self._cache: dict[int, tuple[float, str | None]] = {}  # guild -> (read at, key)
        self._personal: dict[int, tuple[float, str | None]] = {}  # member -> (read at, key)
        self._changes = 0  # set/clear/rotate through this vault: a read racing one is not cached
        self._guild_ciphertexts = KeyedReads(self._read_guild_keys, None)
        self._member_ciphertexts = KeyedReads(self._read_member_keys, None)

    def __repr__(self) -> str:
        return f"KeyVault(fallback={'set' if self._fallback else 'unset'})"

    async def set_key(self, guild_id: int, raw_key: str, set_by: int) -> KeyInfo:
        """Encrypt and store `raw_key` for the server, replacing any previous one."""
        raw = _clean(raw_key)
        ciphertext = self._fernet.encrypt(raw.encode())
        info = KeyInfo(guild_id=guild_id, masked=mask_key(raw), set_by=set_by, set_at=self._clock())

        async def work(s: AsyncSession) -> None:
            await upsert(
                s,
                GuildKey,
                {
                    "guild_id": guild_id,
                    "ciphertext": ciphertext,
                    "masked": info.masked,
                    "set_by": set_by,
                    "set_at": info.set_at,
                },
                ["guild_id"],
            )

        await self._db.run(work)
        self._forget()
        log.info("hub key set for guild %s by %s (%s)", guild_id, set_by, info.masked)
        return info

    async def clear_key(self, guild_id: int) -> bool:
        """Forget the server's key; False when there was none."""

        async def work(s: AsyncSession) -> bool:
            result = await s.execute(delete(GuildKey).where(GuildKey.guild_id == guild_id))
            return bool(getattr(result, "rowcount", 0))

        removed = await self._db.run(work)
        self._forget()
        if removed:
            log.info("hub key cleared for guild %s", guild_id)
        return removed

    async def key_info(self, guild_id: int) -> KeyInfo | None:
        """The masked key, who set it and when; None when the server has no key of its own."""
        async with self._db.session() as s:
            row = (
                await s.execute(
                    select(GuildKey.masked, GuildKey.set_by, GuildKey.set_at).where(
                        GuildKey.guild_id == guild_id
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        return KeyInfo(guild_id=guild_id, masked=row.masked, set_by=row.set_by, set_at=row.set_at)

    async def has_own_key(self, guild_id: int) -> bool:
        return await self.key_info(guild_id) is not None

    async def get_key(self, guild_id: int) -> str | None:
        """The key to call the hub with: the server's own, else the fallback, else None.

        Raises `KeyUnreadable` when a stored key cannot be decrypted (rather than silently
        spending the fallback key's credits).
        """
        cached = self._cache.get(guild_id)
        if cached is not None and time.monotonic() - cached[0] < KEY_CACHE_SECONDS:
            return cached[1]
        read_at, changes = time.monotonic(), self._changes
        ciphertext = await self._guild_ciphertexts.get(guild_id)
        if ciphertext is None:
            key = self._fallback
        else:
            try:
                key = self._fernet.decrypt(bytes(ciphertext)).decode()
            except InvalidToken:
                raise KeyUnreadable(guild_id) from None
        if changes == self._changes:
            self._cache[guild_id] = (read_at, key)
        return key

    async def _read_guild_keys(self, guild_ids: Sequence[int]) -> dict[int, bytes]:
        async with self._db.session() as s:
            rows = await s.execute(
                select(GuildKey.guild_id, GuildKey.ciphertext).where(GuildKey.guild_id.in_(guild_ids))
            )
        return {guild_id: bytes(ciphertext) for guild_id, ciphertext in rows}

    async def _read_member_keys(self, user_ids: Sequence[int]) -> dict[int, bytes]:
        async with self._db.session() as s:
            rows = await s.execute(
                select(MemberKey.user_id, MemberKey.ciphertext).where(MemberKey.user_id.in_(user_ids))
            )
        return {user_id: bytes(ciphertext) for user_id, ciphertext in rows}

    def _forget(self) -> None:
        self._changes += 1
        self._cache.clear()
        self._personal.clear()

    # -- members' own keys -----------------------------------------------------------------------

    async def set_personal_key(self, user_id: int, raw_key: str) -> PersonalKeyInfo:
        """Encrypt and store a member's own key, replacing any previous one."""
        raw = _clean(raw_key)
        ciphertext = self._fernet.encrypt(raw.encode())
        info = PersonalKeyInfo(user_id=user_id, masked=mask_key(raw), set_at=self._clock())

        async def work(s: AsyncSession) -> None:
            values = {
                "user_id": user_id,
                "ciphertext": ciphertext,
                "masked": info.masked,
                "set_at": info.set_at,
            }
            await upsert(s, MemberKey, values, ["user_id"])

        await self._db.run(work)
        self._forget()
        log.info("personal hub key set for member %s (%s)", user_id, info.masked)
        return info

    async def clear_personal_key(self, user_id: int) -> bool:
        """Forget a member's own key; False when there was none."""

        async def work(s: AsyncSession) -> bool:
            result = await s.execute(delete(MemberKey).where(MemberKey.user_id == user_id))
            return bool(getattr(result, "rowcount", 0))

        removed = await self._db.run(work)
        self._forget()
        if removed:
            log.info("personal hub key cleared for member %s", user_id)
        return removed

    async def personal_key_info(self, user_id: int) -> PersonalKeyInfo | None:
        async with self._db.session() as s:
            row = (
                await s.execute(
                    select(MemberKey.masked, MemberKey.set_at).where(MemberKey.user_id == user_id)
                )
            ).one_or_none()
        if row is None:
            return None
        return PersonalKeyInfo(user_id=user_id, masked=row.masked, set_at=row.set_at)

    async def get_personal_key(self, user_id: int) -> str | None:
        """A member's own key, or None; `PersonalKeyUnreadable` when it can't be decrypted."""
        cached = self._personal.get(user_id)
        if cached is not None and time.monotonic() - cached[0] < KEY_CACHE_SECONDS:
            return cached[1]
        read_at, changes = time.monotonic(), self._changes
        ciphertext = await self._member_ciphertexts.get(user_id)
        key = None
        if ciphertext is not None:
            try:
                key = self._fernet.decrypt(bytes(ciphertext)).decode()
            except InvalidToken:
                raise PersonalKeyUnreadable(user_id) from None
        if changes == self._changes:
            if len(self._personal) >= 10_000:
                self._personal.clear()
            self._personal[user_id] = (read_at, key)
        return key

    async def rotate(self) -> int:
        """Re-encrypt every stored key with the newest ENCRYPTION_KEY; returns how many rows.

        Keys that no configured encryption key can decrypt are left as they are (and logged).
        """

        async def work(s: AsyncSession) -> int:
            rows = (await s.execute(select(GuildKey.guild_id, GuildKey.ciphertext))).all()
            count = 0
            for guild_id, ciphertext in rows:
                try:
                    new = self._fernet.rotate(bytes(ciphertext))
                except InvalidToken:
                    log.warning("hub key for guild %s cannot be decrypted; not rotated", guild_id)
                    continue
                await s.execute(update(GuildKey).where(GuildKey.guild_id == guild_id).values(ciphertext=new))
                count += 1
            members = (await s.execute(select(MemberKey.user_id, MemberKey.ciphertext))).all()
            for user_id, ciphertext in members:
                try:
                    new = self._fernet.rotate(bytes(ciphertext))
                except InvalidToken:
                    log.warning("personal hub key of member %s cannot be decrypted; not rotated", user_id)
                    continue
                await s.execute(update(MemberKey).where(MemberKey.user_id == user_id).values(ciphertext=new))
                count += 1
            return count

        count = await self._db.run(work)
        self._forget()
        log.info("re-encrypted %d hub key(s) with the newest encryption key", count)
        return count


def _clean(raw_key: str) -> str:
    raw = raw_key.strip()
    if not raw:
        raise ValueError("the key is empty")
    if any(c.isspace() for c in raw):
        raise ValueError("the key contains whitespace")
    return raw
