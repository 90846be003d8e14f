"""Connecting: the async engine for a database URL, with the SQLite connection setup.

Engines hide statement parameters from errors and logs (`hide_parameters`): a job's row holds
the member's interaction token and prompt. SQLite (aiosqlite) connections get WAL, a busy
timeout, foreign keys and `synchronous=NORMAL`. SQLAlchemy, not the sqlite3 driver, emits
BEGIN, so that a plain transaction starts deferred and one whose connection carries the
`WRITE_OPTION` execution option starts with `BEGIN IMMEDIATE` (the database's single write lock,
taken up front). `bot.db.engine` (sessions, transactions) and `bot.db.migrate` both use it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 5000
# An execution option: a transaction on a connection that carries it starts `BEGIN IMMEDIATE`.
WRITE_OPTION = "image_hub_write"


def create_engine(
    url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    echo: bool = False,
    inline: bool = False,
) -> AsyncEngine:
    """The async engine for `url`, with the SQLite connection setup described in the module doc.

    `inline` (SQLite only): the driver's calls run on the calling thread instead of crossing to a
    connection thread and back for every statement (`InlineConnection`). A statement then blocks
    the loop for its own time (tens of µs on a local file), and each hand-off saved is a wait for
    the GIL and a loop turn (see `bot.db.engine`).
    """
    parsed = make_url(url)
    # A failed statement's error must not carry its values (interaction tokens, prompts) to logs.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if pool_size is not None:
        kwargs["pool_size"] = pool_size
    if max_overflow is not None:
        kwargs["max_overflow"] = max_overflow
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        if not database or database == ":memory:":
            kwargs.pop("pool_size", None)
            kwargs.pop("max_overflow", None)
        if inline:

            async def connect_inline() -> aiosqlite.Connection:
                args, options = engine.sync_engine.dialect.create_connect_args(engine.url)
                connection: aiosqlite.Connection = await InlineConnection(
                    partial(sqlite3.connect, *args, **options)
                )
                return connection

            kwargs["async_creator"] = connect_inline
        engine = create_async_engine(parsed, **kwargs)
        _setup_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(parsed, **kwargs)


class _InlineCalls:
    """Stands in for aiosqlite's queue to its connection thread: runs each call at once, here."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
        else:
            if future is not None and not future.done():
                future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run on the awaiting thread, with no thread of its own.

    aiosqlite (and SQLAlchemy's adapter, for `isolation_level`) put every call on the queue `_tx`
    and await a future; with the queue replaced by `_InlineCalls` the future is done before it is
    awaited, so nothing suspends and no thread is involved.
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _InlineCalls()  # type: ignore[assignment]

    def __await__(self) -> Any:
        return self._connect().__await__()  # no connection thread to start


def _setup_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy emit BEGIN (see below) instead of the driver's legacy behaviour.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
