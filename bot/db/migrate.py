"""Alembic, run programmatically: the scripts ship as package data next to this module.

The Alembic `Config` is built in code (no alembic.ini), so migrating works from any working
directory and from an installed (non-editable) package. The async helpers hand a live
connection to `env.py` through `config.attributes["connection"]` and run Alembic with
`connection.run_sync`, so they work inside a running event loop.

Alembic is imported only inside the functions that run it: importing it costs about 12 MB of
resident memory for the bot's whole life. `migrate` (which `Database.open` calls at every start)
first reads the database's revision with plain SQL and compares it with `HEAD`; only when they
differ does it load Alembic and upgrade.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.db.connect import WRITE_OPTION, create_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# The newest revision shipped (`revision` of the newest script in migrations/versions/). Written
# out here so that the bot can tell an up-to-date database without loading Alembic (about 12 MB
# resident) just to read its script directory. A new migration script must update it; a test
# (tests/storage/test_migrate_lazy.py) checks that it equals Alembic's own head.
HEAD = "0004"

# Alembic's default version table (env.py does not rename it).
_VERSION_TABLE = "alembic_version"


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged scripts (and at `connection`, if given)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of the bot, as Alembic's scripts say."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _read_revision(sync: Connection) -> str | None:
    """The revision recorded in the database, or None when it was never migrated (no Alembic).

    The table's existence is checked with the inspector rather than by letting a SELECT fail: on
    PostgreSQL a failed statement would abort the surrounding transaction.
    """
    if not inspect(sync).has_table(_VERSION_TABLE):
        return None
    rows = sync.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
    if not rows:
        return None
    if len(rows) > 1:
        # As Alembic's `MigrationContext.get_current_revision` does: one line of history only.
        raise RuntimeError(f"the database records several revisions: {', '.join(sorted(rows))}")
    revision: str = rows[0]
    return revision


async def _write_connection(engine: AsyncEngine) -> AsyncConnection:
    conn = await engine.connect()
    if engine.dialect.name == "sqlite":
        # BEGIN IMMEDIATE: two processes migrating at once take turns.
        await conn.execution_options(**{WRITE_OPTION: True})
    return conn


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind `engine` to `revision` (default: the newest).

    Already at the newest revision (the usual start), it returns without loading Alembic.
    """
    if revision == "head" and await current_revision(engine) == HEAD:
        return
    from alembic import command

    conn = await _write_connection(engine)
    try:
        async with conn.begin():
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
    finally:
        await conn.close()


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    """Downgrade to `revision` (default: an empty schema). For tests and emergencies."""
    from alembic import command

    conn = await _write_connection(engine)
    try:
        async with conn.begin():
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))
    finally:
        await conn.close()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(_read_revision)


def migrate_sync(url: str) -> None:
    """Upgrade the database at `url` to the newest revision (for `python -m bot migrate`).

    Starts its own event loop: call it from synchronous code only.
    """

    async def _run() -> None:
        engine = create_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(_run())
