"""Encrypted per-server hub keys."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import select

from bot.clock import ManualClock
from bot.db import Database
from bot.db.models import GuildKey, MemberKey
from bot.keys import KeyInfo, KeyUnreadable, KeyVault, PersonalKeyUnreadable, mask_key

RAW = "gih_live_Zq8x3NvR7pLm2KwT9aYb4cD"
GUILD = 111_222_333_444_555_666


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("gih_live_Zq8x3NvR7pLm2KwT9aYb4cD", "gih_live_…b4cD"),
        ("gih_test_0123456789abcdef", "gih_test_…cdef"),
        ("sk-abcdefghijklmnop", "…mnop"),
        ("abcdefgh", "…gh"),
        ("abc", "…"),
        ("", "…"),
    ],
)
def test_mask_key(raw: str, masked: str) -> None:
    assert mask_key(raw) == masked


def test_mask_never_shows_more_than_four_secret_characters() -> None:
    for raw in ["x" * n + "SECRETTAIL" for n in range(0, 40)]:
        masked = mask_key(raw)
        assert len(masked.split("…")[1]) <= 4


async def test_set_get_clear(db: Database, fernet: MultiFernet, clock: ManualClock) -> None:
    vault = KeyVault(db, fernet, None, clock=clock)
    assert await vault.get_key(GUILD) is None
    assert await vault.key_info(GUILD) is None
    assert not await vault.has_own_key(GUILD)

    info = await vault.set_key(GUILD, f"  {RAW}\n", set_by=42)
    assert info == KeyInfo(guild_id=GUILD, masked="gih_live_…b4cD", set_by=42, set_at=clock())
    assert await vault.key_info(GUILD) == info
    assert await vault.get_key(GUILD) == RAW
    assert await vault.has_own_key(GUILD)
    assert await vault.get_key(GUILD + 1) is None

    clock.advance(minutes=5)
    await vault.set_key(GUILD, "gih_live_another_key_9999", set_by=43)
    assert await vault.get_key(GUILD) == "gih_live_another_key_9999"
    info2 = await vault.key_info(GUILD)
    assert info2 is not None and info2.set_by == 43 and info2.set_at == clock()

    assert await vault.clear_key(GUILD) is True
    assert await vault.clear_key(GUILD) is False
    assert await vault.get_key(GUILD) is None


async def test_fallback_key(db: Database, fernet: MultiFernet) -> None:
    vault = KeyVault(db, fernet, "gih_live_operator_fallback")
    assert await vault.get_key(GUILD) == "gih_live_operator_fallback"
    assert await vault.key_info(GUILD) is None
    assert not await vault.has_own_key(GUILD)
    await vault.set_key(GUILD, RAW, set_by=1)
    assert await vault.get_key(GUILD) == RAW
    await vault.clear_key(GUILD)
    assert await vault.get_key(GUILD) == "gih_live_operator_fallback"
    assert "fallback" not in repr(vault).replace("fallback=", "")


async def test_empty_keys_are_refused(db: Database, fernet: MultiFernet) -> None:
    vault = KeyVault(db, fernet, None)
    with pytest.raises(ValueError):
        await vault.set_key(GUILD, "   ", set_by=1)
    with pytest.raises(ValueError) as excinfo:
        await vault.set_key(GUILD, "gih_live_has space", set_by=1)
    assert "space" not in str(excinfo.value).replace("whitespace", "")


async def test_stored_encrypted(db: Database, fernet: MultiFernet) -> None:
    vault = KeyVault(db, fernet, None)
    await vault.set_key(GUILD, RAW, set_by=1)
    async with db.session() as s:
        row = (await s.execute(select(GuildKey))).scalar_one()
    assert RAW.encode() not in bytes(row.ciphertext)
    assert RAW not in row.masked
    assert fernet.decrypt(bytes(row.ciphertext)).decode() == RAW
    assert RAW not in repr(row) and "ciphertext" not in repr(row)


async def test_raw_key_is_not_in_the_sqlite_files(tmp_path: Path, fernet: MultiFernet) -> None:
    path = tmp_path / "bot.db"
    async with await Database.open(f"sqlite+aiosqlite:///{path}") as db:
        vault = KeyVault(db, fernet, None)
        await vault.set_key(GUILD, RAW, set_by=1)
        await vault.set_key(GUILD + 1, RAW, set_by=1)
        await vault.clear_key(GUILD + 1)
        _assert_not_in_files(path)
    _assert_not_in_files(path)  # closed: everything checkpointed into the main file


def _assert_not_in_files(path: Path) -> None:
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    assert path in files
    blob = b"".join(p.read_bytes() for p in files)
    assert len(blob) > 0
    for needle in (RAW, RAW[-12:], RAW[9:]):
        assert needle.encode() not in blob
        assert needle.encode("utf-16-le") not in blob
    assert b"gih_live_\xe2\x80\xa6b4cD" in blob  # the masked form is stored


async def test_rotation(db: Database, clock: ManualClock) -> None:
    old, new = Fernet(Fernet.generate_key()), Fernet(Fernet.generate_key())
    before = KeyVault(db, MultiFernet([old]), None, clock=clock)
    await before.set_key(1, "gih_live_first_key_aaaa", set_by=1)
    await before.set_key(2, "gih_live_second_key_bbbb", set_by=1)

    after = KeyVault(db, MultiFernet([new, old]), None, clock=clock)  # newest first
    assert await after.get_key(1) == "gih_live_first_key_aaaa"  # old key still decrypts
    assert await after.rotate() == 2
    async with db.session() as s:
        for token in (await s.execute(select(GuildKey.ciphertext))).scalars():
            new.decrypt(bytes(token))  # encrypted with the new key now
    only_new = KeyVault(db, MultiFernet([new]), None)
    assert await only_new.get_key(1) == "gih_live_first_key_aaaa"
    assert await only_new.get_key(2) == "gih_live_second_key_bbbb"
    info = await only_new.key_info(1)
    assert info is not None and info.set_at == clock()  # rotation is not a re-set


async def test_unreadable_key(db: Database) -> None:
    vault = KeyVault(db, MultiFernet([Fernet(Fernet.generate_key())]), "gih_live_fallback_xxxx")
    await vault.set_key(GUILD, RAW, set_by=1)
    other = KeyVault(db, MultiFernet([Fernet(Fernet.generate_key())]), "gih_live_fallback_xxxx")
    with pytest.raises(KeyUnreadable) as excinfo:
        await other.get_key(GUILD)
    assert str(GUILD) in str(excinfo.value)
    assert await other.rotate() == 0  # left alone, not destroyed
    assert await vault.get_key(GUILD) == RAW


async def test_key_never_logged_or_in_reprs(
    db: Database, fernet: MultiFernet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vault = KeyVault(db, fernet, "gih_live_fallback_secret_zzzz")
    info = await vault.set_key(GUILD, RAW, set_by=7)
    await vault.get_key(GUILD)
    await vault.key_info(GUILD)
    await vault.rotate()
    await vault.clear_key(GUILD)
    assert caplog.records  # the vault does log what it does
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert RAW not in text and RAW[9:] not in text
    assert "gih_live_fallback_secret_zzzz" not in text
    assert RAW not in repr(info) and RAW not in str(info)
    assert "fallback_secret" not in repr(vault)


async def test_personal_keys_are_encrypted_masked_rotated_and_never_logged(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    old, new = Fernet(Fernet.generate_key()), Fernet(Fernet.generate_key())
    vault = KeyVault(db, MultiFernet([old]), None)
    info = await vault.set_personal_key(42, RAW)
    assert info.masked == mask_key(RAW) and RAW not in repr(info)
    assert await vault.get_personal_key(42) == RAW and await vault.get_personal_key(43) is None
    assert await vault.get_key(GUILD) is None  # a member's key is not a server's
    async with db.session() as s:
        (stored,) = (await s.execute(select(MemberKey.ciphertext))).scalars()
    assert RAW.encode() not in bytes(stored)

    after = KeyVault(db, MultiFernet([new, old]), None)
    assert await after.rotate() == 1
    only_new = KeyVault(db, MultiFernet([new]), None)
    assert await only_new.get_personal_key(42) == RAW
    with pytest.raises(PersonalKeyUnreadable):
        await KeyVault(db, MultiFernet([old]), None).get_personal_key(42)
    assert await only_new.clear_personal_key(42) and not await only_new.clear_personal_key(42)
    assert await only_new.get_personal_key(42) is None
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert RAW not in text and RAW[9:] not in text
