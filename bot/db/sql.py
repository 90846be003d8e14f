"""Small dialect-aware SQL helpers used by the services."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Insert, Row, Select, Table, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Base


def dialect_name(session: AsyncSession) -> str:
    """`"sqlite"` or `"postgresql"` for the session's bind."""
    return session.get_bind().dialect.name


async def upsert(
    session: AsyncSession,
    model: type[Base],
    values: Mapping[str, Any],
    keys: Sequence[str],
    update: Mapping[str, Any] | None = None,
) -> None:
    """INSERT `values`, or on a key conflict UPDATE `update` (default: every non-key value).

    An empty `update` means "insert if missing, else leave the row alone".
    """
    name = dialect_name(session)
    stmt: Any
    if name == "postgresql":
        stmt = postgresql.insert(model).values(**values)
    elif name == "sqlite":
        stmt = sqlite.insert(model).values(**values)
    else:  # pragma: no cover - only the two supported backends
        raise NotImplementedError(name)
    changes = dict(update) if update is not None else {k: v for k, v in values.items() if k not in keys}
    if changes:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=changes)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    await session.execute(stmt)


def lock_key(*parts: int | str) -> int:
    """A stable signed 64-bit key for `pg_advisory_xact_lock` from some ids."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def advisory_locks(session: AsyncSession, keys: Sequence[tuple[int | str, ...]]) -> None:
    """`advisory_lock` on each of these ids, in one statement (one round trip instead of one per
    key), in key order: two transactions locking overlapping sets wait for each other instead of
    deadlocking."""
    if dialect_name(session) != "postgresql" or not keys:
        return
    locks = sorted({lock_key(*parts) for parts in keys})
    if len(locks) == 1:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": locks[0]})
        return
    await session.execute(
        text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ks AS bigint[])) AS k"),  # in array order
        {"ks": locks},
    )


async def advisory_lock(session: AsyncSession, *parts: int | str) -> None:
    """On PostgreSQL, hold a transaction-scoped lock on these ids (other processes included).

    On SQLite this does nothing: write transactions already hold the database's write lock.
    """
    await advisory_locks(session, [parts])


@cache
def _inserts(table: Table, returning: tuple[ColumnElement[Any], ...]) -> tuple[Insert, Insert, Select[Any]]:
    """Built once per table (building a statement costs SQLAlchemy more than running it)."""
    return (
        insert(table).returning(*returning, sort_by_parameter_order=True),
        insert(table).returning(*returning),
        select(func.coalesce(func.max(table.c.id), 0)),
    )


async def insert_many(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    returning: tuple[ColumnElement[Any], ...],
) -> list[Row[Any]]:
    """INSERT `rows` (same keys) into a table with an integer `id` in one statement; the RETURNING
    rows in the order of `rows`, which SQLAlchemy guarantees on PostgreSQL. SQLite cannot tie the
    ids it makes to the rows (SQLAlchemy would then insert them one at a time), so there the ids
    are given here: the next ones after the largest, the ones SQLite would give. The caller's
    write transaction holds SQLite's only write lock, so nobody else inserts meanwhile. `returning`
    must include `id`."""
    ordered, plain, largest = _inserts(table, returning)
    if len(rows) == 1:  # nothing to order: the plain statement, and on SQLite no read first
        return [(await session.execute(plain, dict(rows[0]))).one()]
    if dialect_name(session) != "sqlite":
        return list((await session.execute(ordered, [dict(r) for r in rows])).all())
    first = int((await session.execute(largest)).scalar_one()) + 1
    given = [{**r, "id": first + k} for k, r in enumerate(rows)]
    by_id = {int(row.id): row for row in (await session.execute(plain, given)).all()}
    return [by_id[first + k] for k in range(len(rows))]
