"""The `Database`: sessions, write transactions and retries over an engine (`bot.db.connect`).

A read session starts a plain (deferred) transaction and a write transaction starts with
`BEGIN IMMEDIATE` on SQLite: it takes the database's single write lock up front, which makes
read-check-write sequences (quota checks, job claims) atomic against every other connection
and process. PostgreSQL uses row locks and advisory locks instead; see the services.
`Database.open` migrates to the newest schema first (`bot.db.migrate`).

Group commit: `run(work)` (a write) does not open a transaction of its own. It queues `work`,
and ONE writer task per `Database` drains the queue: every write queued while the previous
transaction was being written goes into the next one, each `work` in its own SAVEPOINT and its
own session. A `work` that raises is rolled back to its savepoint alone and its caller gets the
exception; the others commit. A caller learns its outcome only after the COMMIT (never before:
a step that must be durable before a side effect stays so). A transient lock error (SQLite busy,
a PostgreSQL deadlock or serialization failure) rolls back the whole transaction, which is
written again (so `work` may run more than once, as before). A burst of writes thus costs a few
commits instead of one each, and on SQLite the write lock changes hands once per transaction.
After a commit of fewer than `GROUP_ENOUGH` writes the next transaction waits `group_window` for
more writes, unless that many already wait: a steady trickle of writes is merged into fewer
commits, and under load (groups already form) nothing waits. A group that deadlocks with
another process's group (PostgreSQL) is written again one write per transaction.

On SQLite (a file) the group transactions and the reads run on the bot's own loop and thread,
through an engine whose driver calls run inline (`bot.db.connect.InlineConnection`): aiosqlite
would hand every statement to a connection thread and back, each hand-back a wait for a loop turn
and the GIL. A writer thread of its own was tried and measured: under one GIL the two threads
hand the GIL to each other at every SQLite call (the writer waits up to the switch interval each
time), and a burst of 500 /imagine in one second took 1.2 s of CPU with first answers at p50
160 ms, against 1.0 s and 80 ms on one thread. In WAL mode a reader never waits for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot import metrics
from bot.db.connect import WRITE_OPTION, create_engine
from bot.db.migrate import migrate as run_migrations

log = logging.getLogger(__name__)

T = TypeVar("T")
Item = TypeVar("Item")

# PostgreSQL errors worth retrying: serialization failure, deadlock.
_PG_RETRY_STATES = {"40001", "40P01"}
# Writes in one group transaction at most: bounds how long the write lock is held.
GROUP_MAX = 200
# With this many writes waiting, the next transaction starts at once (no window): under load the
# queue itself makes the groups, and steps waiting on their writes would only be slowed down.
GROUP_ENOUGH = 8


class _Retry(Exception):
    """The group transaction hit a transient lock error: roll it all back and write it again."""

    def __init__(self, cause: DBAPIError) -> None:
        super().__init__(str(cause))
        self.cause = cause


# Writes of one kind that cost less written together (see `Database.run_together`): given the
# items, it stores them all and returns each one's outcome, a refusal as an exception object.
Together = Callable[[AsyncSession, list[Any]], Awaitable[Sequence[Any]]]


class _Write:
    """One queued write: its work and the future its caller awaits; `together`: its kind and item
    when it may be written with others of its kind."""

    __slots__ = ("failed", "future", "outcome", "together", "work")

    def __init__(
        self,
        work: Callable[[AsyncSession], Awaitable[Any]],
        future: asyncio.Future[Any],
        together: tuple[Together, Any] | None = None,
    ) -> None:
        self.work = work
        self.future = future
        self.together = together
        self.outcome: Any = None
        self.failed = False


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

    def __init__(
        self, engine: AsyncEngine, *, retries: int = 6, group_commit: bool = True, group_window: float = 0.0
    ) -> None:
        self.engine = engine
        self.retries = retries
        self.group_commit = group_commit
        # After a commit, the next transaction starts no sooner than this, unless GROUP_ENOUGH
        # writes wait: writes that come in the meantime share it.
        self.group_window = group_window
        self._last_commit = -math.inf
        self._last_group = 0  # writes in the last transaction
        self.commits = 0  # write transactions committed (group transactions count once)
        self.writes = 0  # writes (`run` calls) committed
        self._pending: list[_Write] = []
        self._writer: asyncio.Task[None] | None = None
        # An urgent write is waiting (a member waits for its answer): no window. `_hurry` is what
        # the writer waits on during a window.
        self._urgent = False
        self._hurry: asyncio.Future[None] | None = None
        database = engine.url.database or ""
        file = database not in ("", ":memory:") and not database.startswith("file:")
        inline = engine.dialect.name == "sqlite" and file
        # SQLite (a file): reads and group transactions call the driver inline on this loop's
        # thread (see the module docstring); a statement costs less than aiosqlite's four
        # hand-offs to its thread and back, each a turn of the busy bot loop.
        self._inline_engine = (
            create_engine(engine.url.render_as_string(hide_password=False), inline=True) if inline else engine
        )
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self._inline_engine, expire_on_commit=False
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
        group_window: float = 0.0,
    ) -> Database:
        """Create the engine (SQLite: create the file's folder) and, by default, migrate to head."""
        engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow, echo=echo)
        db = cls(engine, group_window=group_window)
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

    async def run(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, write: bool = True, urgent: bool = False
    ) -> T:
        """Run `work(session)` in a transaction, retrying transient lock errors with backoff.

        A write shares its transaction with the writes queued beside it (group commit, see the
        module docstring) and returns once that transaction is committed. `work` may run more
        than once, so it must do nothing but database work, and it must not wait for another
        write. Exceptions it raises itself (e.g. `QuotaExceeded`) roll back its own changes only
        and propagate untouched. `urgent`: a member waits for this write (a launch), so the next
        transaction starts now, with whatever is queued, instead of waiting out the group window.
        """
        return await self._queue(work, write=write, urgent=urgent)

    async def run_together(
        self,
        many: Callable[[AsyncSession, list[Item]], Awaitable[Sequence[T | Exception]]],
        item: Item,
        *,
        urgent: bool = False,
    ) -> T:
        """Write `item` as `run` would, but together with the other items of its kind (`many`) that
        share its transaction: `many(session, items)` stores them all in one savepoint and returns
        each one's outcome (an exception object for one it refuses, raised to that caller alone).

        The writes of a kind that costs several statements each (a launch: credits, queue counts,
        the job) then cost a few statements for the whole group. If `many` itself raises, each
        item is written again alone (`many` with that item only) in its own savepoint."""

        async def alone(s: AsyncSession) -> T:
            (outcome,) = await many(s, [item])
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        return await self._queue(alone, write=True, urgent=urgent, together=(many, item))

    async def _queue(
        self,
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        write: bool,
        urgent: bool,
        together: tuple[Together, Any] | None = None,
    ) -> T:
        if write and self.group_commit:
            future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._pending.append(_Write(work, future, together))
            if urgent:
                self._urgent = True
                if self._hurry is not None and not self._hurry.done():
                    self._hurry.set_result(None)
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._write_pending(), name="db-group-commit")
            return await future
        return await self._run_alone(work, write=write)

    async def _write_pending(self) -> None:
        """The writer task: one transaction per batch of queued writes, until none are left."""
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._last_commit + self.group_window - loop.time()
            if (
                wait > 0
                and self._last_group < GROUP_ENOUGH
                and len(self._pending) < GROUP_ENOUGH
                and not self._urgent
            ):
                self._hurry = loop.create_future()  # a trickle of single writes: let a few gather
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry, wait)
                self._hurry = None
            self._urgent = False  # every write queued until now goes into this transaction
            batch, self._pending = self._pending[:GROUP_MAX], self._pending[GROUP_MAX:]
            batch = [w for w in batch if not w.future.done()]  # a caller that gave up: not written
            if not batch:
                continue
            try:
                await self._write_batch(batch)
            except BaseException as exc:  # the commit failed (or we are cancelled): all of them fail
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    for w in self._pending:
                        w.future.cancel()
                    self._pending = []
                    raise
                continue
            for w in batch:
                if w.future.done():
                    continue
                if w.failed:
                    w.future.set_exception(w.outcome)
                else:
                    w.future.set_result(w.outcome)

    async def _write_batch(self, batch: list[_Write]) -> None:
        delay = 0.02
        for attempt in range(self.retries + 1):
            try:
                await self._transaction_of(batch, self._inline_engine, lock=True)
                self._committed(len(batch))
                return
            except _Retry as retry:
                if len(batch) > 1:
                    # Deadlocked with another process's group (their locks in another order):
                    # each write alone then, as without group commit, so every one progresses.
                    await self._write_alone(batch)
                    return
                if attempt >= self.retries:
                    raise retry.cause from None
            except DBAPIError as exc:  # BEGIN or COMMIT itself
                if attempt >= self.retries or not is_retryable(exc):
                    raise
            log.debug("database busy, writing the group again (attempt %d)", attempt + 1)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    async def _write_alone(self, batch: list[_Write]) -> None:
        for w in batch:
            try:
                w.outcome, w.failed = await self._run_alone(w.work, write=True), False
            except Exception as exc:
                w.outcome, w.failed = exc, True

    async def _transaction_of(self, batch: list[_Write], engine: AsyncEngine, *, lock: bool = False) -> None:
        """One transaction: each write in its own savepoint and session, then COMMIT."""
        async with contextlib.AsyncExitStack() as stack:
            if lock and self._write_lock is not None:
                await stack.enter_async_context(self._write_lock)
            conn: AsyncConnection = await stack.enter_async_context(engine.connect())
            conn = await conn.execution_options(**{WRITE_OPTION: True})
            await stack.enter_async_context(conn.begin())
            written: set[int] = set()  # writes done together with an earlier one of their kind
            for at, w in enumerate(batch):
                if id(w) in written:
                    continue
                if w.together is not None:
                    kind = w.together[0]
                    group = [x for x in batch[at:] if x.together is not None and x.together[0] == kind]
                    written.update(id(x) for x in group)
                    if len(group) > 1 and await self._together(conn, kind, group):
                        continue
                    for x in group:  # one of its kind, or `many` failed: each alone
                        await self._one(conn, x)
                    continue
                await self._one(conn, w)

    async def _one(self, conn: AsyncConnection, w: _Write) -> None:
        """One write in its own savepoint and session: its failure rolls back its changes alone."""
        async with AsyncSession(
            bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
        ) as s:
            try:
                async with s.begin():
                    w.outcome, w.failed = await w.work(s), False
            except DBAPIError as exc:
                if is_retryable(exc):
                    raise _Retry(exc) from None
                w.outcome, w.failed = exc, True
            except Exception as exc:
                w.outcome, w.failed = exc, True

    async def _together(self, conn: AsyncConnection, many: Together, group: list[_Write]) -> bool:
        """Writes of one kind in one savepoint (see `run_together`). False, with nothing written,
        when `many` raised: the caller writes them one by one."""
        async with AsyncSession(
            bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
        ) as s:
            try:
                async with s.begin():
                    outcomes = await many(s, [w.together[1] for w in group if w.together is not None])
            except Exception as exc:
                if isinstance(exc, DBAPIError) and is_retryable(exc):
                    raise _Retry(exc) from None
                log.warning("writing %d together failed, writing them one by one: %r", len(group), exc)
                return False
        if len(outcomes) != len(group):
            raise AssertionError("`many` must return one outcome per item")
        for w, outcome in zip(group, outcomes, strict=True):
            w.outcome, w.failed = outcome, isinstance(outcome, Exception)
        return True

    async def _run_alone(self, work: Callable[[AsyncSession], Awaitable[T]], *, write: bool) -> T:
        delay = 0.02
        for attempt in range(self.retries + 1):
            try:
                if write:
                    async with self.transaction() as s:
                        result = await work(s)
                    self._committed(1)
                    return result
                async with self.session() as s:
                    return await work(s)
            except DBAPIError as exc:
                if attempt >= self.retries or not is_retryable(exc):
                    raise
                log.debug("database busy, retrying (attempt %d)", attempt + 1)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def _committed(self, writes: int) -> None:
        self._last_commit = asyncio.get_running_loop().time()
        self._last_group = writes
        self.commits += 1
        self.writes += writes
        metrics.DB_COMMITS.inc()
        metrics.DB_WRITES.inc(writes)

    async def ping(self) -> bool:
        """True when the database answers a trivial query (for /healthz)."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def close(self) -> None:
        writer = self._writer
        if writer is not None and not writer.done():
            with contextlib.suppress(Exception):
                await writer  # the queued writes are committed (or fail) before the engine goes
        if self._inline_engine is not self.engine:
            await self._inline_engine.dispose()
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"
