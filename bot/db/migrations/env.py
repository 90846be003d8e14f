"""Alembic environment for image-hub-bot.

Normally run through `bot.db.migrate`, which passes a live synchronous connection in
`config.attributes["connection"]` (from `AsyncConnection.run_sync`), so no event loop is
started here. When Alembic's own CLI runs it without one, a temporary async engine is made
from `sqlalchemy.url`. No logging configuration happens here: the bot owns logging.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from bot.db.connect import create_engine
from bot.db.models import Base

# Any constant: concurrent PostgreSQL migrators wait for each other on this advisory lock.
_PG_MIGRATION_LOCK = 7_146_323_001

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    _run_offline()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no connection given and no sqlalchemy.url set")
        asyncio.run(_run_with_new_engine(url))
