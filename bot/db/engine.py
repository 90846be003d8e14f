"""The `Database`: sessions, write transactions and retries over an engine (`bot.db.connect`).

A read session starts a plain (deferred) transaction and a write transaction starts with
`BEGIN IMMEDIATE` on SQLite: it takes the database's single write lock up front, which makes
read-check-write sequences (quota checks, job claims) atomic against every other connection
and process. PostgreSQL uses row locks and advisory locks instead; see the services.
`Database.open` migrates to the newest schema first (`bot.db.migrate`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db.connect import WRITE_OPTION, create_engine
from bot.db.migrate import migrate as run_migrations

log = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL errors worth retrying: serialization failure, deadlock.
_PG_RETRY_STATES = {"40001", "40P01"}


def is_retryable(exc: BaseException) -> bool:
    """True for a transient lock/serialization error that a fresh transaction may not hit."""
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower()
        if "database is locked" in text or "database is busy" in text or "database table is locked" in text:
            return True
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if state in _PG_RETRY_STATES:
            return True
    return False


class Database:
    """An opened database. Create with `await Database.open(url)`; close with `await db.close()`."""

    def __init__(self, engine: AsyncEngine, *, retries: int = 6) -> None:
        self.engine = engine
        self.retries = retries
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self._write_maker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False, execution_options={WRITE_OPTION: True}
        )
        # SQLite has one write lock per database. Writers of this process queue here, in order,
        # instead of in SQLite's busy handler, which sleeps up to 100 ms between attempts and
        # collapses throughput (and holds a pooled connection) under many concurrent writers.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        echo: bool = False,
    ) -> Database:
        """Create the engine (SQLite: create the file's folder) and, by default, migrate to head."""
        engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow, echo=echo)
        db = cls(engine)
        if migrate:
            try:
                await run_migrations(engine)
            except BaseException:
                await engine.dispose()
                raise
        return db

    @property
    def dialect(self) -> str:
        """`"sqlite"` or `"postgresql"`."""
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A plain session (reads; the caller commits any writes itself)."""
        async with self.sessionmaker() as s:
            yield s

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed on exit and rolled back on error.

        On SQLite it starts with `BEGIN IMMEDIATE`: it holds the write lock from the first statement
        (other processes wait in the busy handler; this process's writers wait their turn first).
        """
        if self._write_lock is None:
            async with self._write_maker() as s, s.begin():
                yield s
            return
        async with self._write_lock, self._write_maker() as s, s.begin():
            yield s

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]], *, write: bool = True) -> T:
        """Run `work(session)` in its own transaction, retrying transient lock errors with backoff.

        `work` may run more than once, so it must do nothing but database work. Exceptions it
        raises itself (e.g. `QuotaExceeded`) roll back and propagate untouched.
        """
        delay = 0.02
        for attempt in range(self.retries + 1):
            try:
                if write:
                    async with self.transaction() as s:
                        return await work(s)
                async with self.session() as s:
                    return await work(s)
            except DBAPIError as exc:
                if attempt >= self.retries or not is_retryable(exc):
                    raise
                log.debug("database busy, retrying (attempt %d)", attempt + 1)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    async def ping(self) -> bool:
        """True when the database answers a trivial query (for /healthz)."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"
