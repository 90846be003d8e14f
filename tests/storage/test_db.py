"""The Database: migrations, connection setup, time zones, retries."""

from __future__ import annotations

import sqlite3
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from fnmatch import fnmatch
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import OperationalError, StatementError

import bot
from bot.db import Database, create_engine, current_revision, downgrade, head_revision, migrate, migrate_sync
from bot.db.migrate import MIGRATIONS_DIR
from bot.db.models import Base, GuildKey
from tests.botprocess import run_python

TABLES = {
    "guild_settings",
    "guild_keys",
    "quota_settings",
    "quota_role_limits",
    "quota_member_limits",
    "quota_exempt_roles",
    "quota_reservations",
    "quota_ledger",
    "jobs",
    "member_settings",
    "member_keys",
}


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    return set(names) - {"alembic_version"}


async def test_migrate_up_to_head_and_down_to_base(empty_database_url: str) -> None:
    db = await Database.open(empty_database_url, migrate=False)
    try:
        assert await current_revision(db.engine) is None
        assert await _tables(db) == set()
        await migrate(db.engine)
        assert await current_revision(db.engine) == head_revision() == "0004"
        assert await _tables(db) == TABLES
        await migrate(db.engine)  # already at head: nothing happens
        await downgrade(db.engine, "base")
        assert await current_revision(db.engine) is None
        assert await _tables(db) == set()
        await migrate(db.engine)
        assert await _tables(db) == TABLES
    finally:
        await db.close()


async def test_open_migrates_by_default(empty_database_url: str) -> None:
    async with await Database.open(empty_database_url) as db:
        assert await current_revision(db.engine) == head_revision()


async def test_migrations_match_the_models(db: Database) -> None:
    def diff(sync_conn):  # type: ignore[no-untyped-def]
        return compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


def test_migrate_sync_from_another_directory(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m bot migrate` path: no event loop running, any working directory."""
    monkeypatch.chdir(tmp_path)
    migrate_sync(empty_database_url)
    migrate_sync(empty_database_url)


def test_migration_scripts_are_package_data() -> None:
    """Every file Alembic needs is matched by pyproject's package-data (non-editable installs)."""
    pyproject = tomllib.loads((Path(bot.__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["bot"]
    package = Path(bot.__file__).parent
    needed = [p for p in MIGRATIONS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert any(p.name == "env.py" for p in needed)
    assert any(p.name == "script.py.mako" for p in needed)
    for path in needed:
        rel = path.relative_to(package).as_posix()
        assert any(fnmatch(rel, pattern) for pattern in patterns), rel


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "folder" / "bot.db"
    async with await Database.open(f"sqlite+aiosqlite:///{path}") as db:
        assert path.exists()
        assert db.dialect == "sqlite"
        async with db.session() as s:
            assert (await s.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await s.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
            assert (await s.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await s.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL


async def test_write_transactions_begin_immediate_on_sqlite(tmp_path: Path) -> None:
    """A write transaction holds SQLite's write lock from its first statement."""
    path = tmp_path / "bot.db"
    async with await Database.open(f"sqlite+aiosqlite:///{path}") as db:
        async with db.transaction() as s:
            await s.execute(text("SELECT 1"))
            other = sqlite3.connect(path, timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
        async with db.session() as s:  # a plain session does not take the write lock
            await s.execute(text("SELECT 1"))
            other = sqlite3.connect(path, timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.rollback()
            finally:
                other.close()


async def test_datetimes_round_trip_as_aware_utc(db: Database) -> None:
    paris = timezone(timedelta(hours=1))
    when = datetime(2025, 3, 1, 10, 30, 15, 123456, tzinfo=paris)
    async with db.transaction() as s:
        s.add(GuildKey(guild_id=1, ciphertext=b"x", masked="…", set_by=2, set_at=when))
    async with db.session() as s:
        stored = (await s.execute(select(GuildKey.set_at))).scalar_one()
        found = (await s.execute(select(GuildKey.guild_id).where(GuildKey.set_at == when))).scalar_one()
    assert stored == when
    assert stored.tzinfo is UTC
    assert stored.hour == 9
    assert found == 1


async def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with db.transaction() as s:
            s.add(GuildKey(guild_id=1, ciphertext=b"x", masked="…", set_by=2, set_at=datetime(2025, 1, 1)))


async def test_big_snowflakes_round_trip(db: Database) -> None:
    snowflake = 1_234_567_890_123_456_789
    async with db.transaction() as s:
        s.add(
            GuildKey(
                guild_id=snowflake, ciphertext=b"x", masked="…", set_by=snowflake, set_at=datetime.now(UTC)
            )
        )
    async with db.session() as s:
        assert (await s.execute(select(GuildKey.set_by))).scalar_one() == snowflake


async def test_run_retries_a_locked_database(db: Database) -> None:
    calls = 0

    async def work(s):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls < 3:
            raise OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
        return (await s.execute(text("SELECT 42"))).scalar_one()

    assert await db.run(work) == 42
    assert calls == 3


async def test_run_does_not_retry_other_errors(db: Database) -> None:
    calls = 0

    async def work(s):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: nope"))

    with pytest.raises(OperationalError):
        await db.run(work)
    assert calls == 1


async def test_transaction_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            s.add(GuildKey(guild_id=5, ciphertext=b"x", masked="…", set_by=2, set_at=datetime.now(UTC)))
            await s.flush()
            raise RuntimeError("boom")
    async with db.session() as s:
        assert (await s.execute(select(GuildKey))).first() is None


def test_repr_hides_password() -> None:
    engine = create_engine("postgresql+asyncpg://bot:s3cret@localhost/bot")
    assert "s3cret" not in repr(Database(engine))


def test_cli_migrate_from_any_directory(tmp_path: Path, empty_database_url: str) -> None:
    """`python -m bot migrate` in a fresh directory: the packaged scripts are found, the default
    SQLite folder (./data/) is created."""
    env = {"DATABASE_URL": empty_database_url} if empty_database_url.startswith("postgresql") else {}
    result = run_python(["-m", "bot", "migrate"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "newest revision" in result.stdout
    if not empty_database_url.startswith("postgresql"):
        assert (tmp_path / "data" / "image-hub-bot.db").is_file()
