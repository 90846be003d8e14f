"""Small dialect-aware SQL helpers used by the services."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import text
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


async def advisory_lock(session: AsyncSession, *parts: int | str) -> None:
    """On PostgreSQL, hold a transaction-scoped lock on these ids (other processes included).

    On SQLite this does nothing: write transactions already hold the database's write lock.
    """
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(*parts)})
