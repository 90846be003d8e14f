"""Starting on an up-to-date database does not load Alembic (about 12 MB resident for the bot's life).

`bot.db.migrate.HEAD` names the newest shipped revision so that `migrate` can compare it with the
database's `alembic_version` row in plain SQL; Alembic is imported only when they differ.
"""

from __future__ import annotations

import json

from sqlalchemy import inspect, text

from bot.db import Database, current_revision, downgrade, head_revision
from bot.db.migrate import HEAD
from bot.db.models import Base
from tests.botprocess import REPO_ROOT as ROOT
from tests.botprocess import run_python

TABLES = set(Base.metadata.tables)

# Opens the database at argv[1] as the bot does at start, then prints the Alembic modules loaded.
_OPEN_AND_REPORT = """
import asyncio, json, sys
from bot.db import Database

async def main(url):
    db = await Database.open(url)
    await db.close()

asyncio.run(main(sys.argv[1]))
print(json.dumps(sorted(m for m in sys.modules if m == "alembic" or m.startswith("alembic."))))
"""


def _open_in_a_new_process(url: str) -> list[str]:
    """`Database.open(url)` in a fresh interpreter running the working tree's code: the Alembic
    modules it loaded."""
    result = run_python(["-c", _OPEN_AND_REPORT, url], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


async def _schema(url: str) -> tuple[set[str], list[str]]:
    """The database's tables (without Alembic's) and the rows of its version table."""
    db = await Database.open(url, migrate=False)
    try:
        async with db.engine.connect() as conn:
            names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            versions: list[str] = []
            if "alembic_version" in names:
                versions = list(
                    (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars()
                )
    finally:
        await db.close()
    return names - {"alembic_version"}, versions


def test_head_constant_is_alembics_head() -> None:
    """A new migration script must update `HEAD`, or an up-to-date bot would never migrate."""
    assert head_revision() == HEAD


def test_opening_a_migrated_database_does_not_load_alembic(database_url: str) -> None:
    assert _open_in_a_new_process(database_url) == []


async def test_opening_an_empty_database_migrates_it(empty_database_url: str) -> None:
    assert await _schema(empty_database_url) == (set(), [])
    loaded = _open_in_a_new_process(empty_database_url)
    assert "alembic.command" in loaded
    assert await _schema(empty_database_url) == (TABLES, [HEAD])
    # Now up to date: the next start does not load Alembic.
    assert _open_in_a_new_process(empty_database_url) == []


async def test_opening_an_older_database_upgrades_it(database_url: str) -> None:
    db = await Database.open(database_url, migrate=False)
    try:
        await downgrade(db.engine, "0003")
        assert await current_revision(db.engine) == "0003"
    finally:
        await db.close()
    assert "alembic.command" in _open_in_a_new_process(database_url)
    assert await _schema(database_url) == (TABLES, [HEAD])


async def test_current_revision_reads_the_version_row(empty_database_url: str) -> None:
    """Without Alembic: None on a never-migrated database (no version table), then the row's value;
    the connection stays usable after the check (PostgreSQL aborts a transaction on a failed
    statement, which the table check avoids)."""
    db = await Database.open(empty_database_url, migrate=False)
    try:
        assert await current_revision(db.engine) is None
        async with db.engine.connect() as conn:
            await conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            await conn.commit()
        assert await current_revision(db.engine) is None  # the table, but no row yet
        async with db.engine.connect() as conn:
            await conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0002')"))
            await conn.commit()
        assert await current_revision(db.engine) == "0002"
    finally:
        await db.close()
