"""Alembic, run programmatically: the scripts ship as package data next to this module.

The Alembic `Config` is built in code (no alembic.ini), so migrating works from any working
directory and from an installed (non-editable) package. The async helpers hand a live
connection to `env.py` through `config.attributes["connection"]` and run Alembic with
`connection.run_sync`, so they work inside a running event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.db.connect import WRITE_OPTION, create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged scripts (and at `connection`, if given)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of the bot."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _write_connection(engine: AsyncEngine) -> AsyncConnection:
    conn = await engine.connect()
    if engine.dialect.name == "sqlite":
        # BEGIN IMMEDIATE: two processes migrating at once take turns.
        await conn.execution_options(**{WRITE_OPTION: True})
    return conn


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind `engine` to `revision` (default: the newest)."""
    conn = await _write_connection(engine)
    try:
        async with conn.begin():
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
    finally:
        await conn.close()


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    """Downgrade to `revision` (default: an empty schema). For tests and emergencies."""
    conn = await _write_connection(engine)
    try:
        async with conn.begin():
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))
    finally:
        await conn.close()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


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
