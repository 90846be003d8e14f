"""Throwaway databases for tests and benchmarks, on SQLite or PostgreSQL.

PostgreSQL is the server behind `TEST_DATABASE_URL` (e.g. `export TEST_DATABASE_URL=$(bash
scripts/pg-start)`); `postgres_url(start=True)` runs `scripts/pg-start` itself when it is not set.

- Tests (the fixtures in `tests/conftest.py`): `fresh_database_url(...)`, a fresh database per test, empty or
  migrated to head: a copied SQLite template file, or a PostgreSQL database cloned from a per-session
  migrated template (`CREATE DATABASE ... TEMPLATE`), emptied and reused after the test (`PostgresServer`).
- Benchmarks: `async with scratch_database(backend) as url`, an empty database dropped afterwards.
- `statements_to(db, verb, table)`: the statements a database is sent, for tests that count them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event
from sqlalchemy.engine import make_url

from bot.db import Database, head_revision, migrate_sync
from bot.db.models import Base

ROOT = Path(__file__).resolve().parents[1]
PG_ENV = "TEST_DATABASE_URL"
REQUIRE_ENV = "REQUIRE_POSTGRES"


def pg_base_url() -> str | None:
    return os.environ.get(PG_ENV, "").strip() or None


def require_postgres() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}


def postgres_url(*, start: bool = False) -> str | None:
    """The PostgreSQL server's URL: `TEST_DATABASE_URL`, else (with `start`) a local one that
    `scripts/pg-start` starts; None when there is none."""
    url = pg_base_url()
    if url or not start:
        return url
    if shutil.which("bash") is None:
        return None
    try:
        out = subprocess.run(
            ["bash", str(ROOT / "scripts" / "pg-start")],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else None


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


class PostgresServer:
    """Creates and drops throwaway databases on a PostgreSQL server.

    Migrated databases are cloned from a per-session template; after a test they are emptied
    (TRUNCATE ... RESTART IDENTITY) and reused, which is much faster than CREATE DATABASE.
    A database whose schema a test changed is dropped instead. The synchronous methods start their
    own event loop (for pytest's synchronous fixtures); `admin` is the asynchronous primitive.
    """

    def __init__(self, base_url: str) -> None:
        self.base = make_url(base_url)
        self.template: str | None = None
        self.spare: list[str] = []

    def url(self, database: str) -> str:
        return self.base.set(database=database).render_as_string(hide_password=False)

    def _dsn(self, database: str | None = None) -> str:
        url = self.base.set(drivername="postgresql")
        if database is not None:
            url = url.set(database=database)
        return url.render_as_string(hide_password=False)

    async def admin(self, *statements: str) -> None:
        """Run statements on the server's maintenance connection (CREATE/DROP DATABASE)."""
        conn = await asyncpg.connect(self._dsn())
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    def create(self, *, migrated: bool) -> str:
        """A new database's name: empty, or migrated to head."""
        if migrated and self.spare:
            return self.spare.pop()
        name = f"t_{uuid.uuid4().hex[:16]}"
        if migrated:
            if self.template is None:
                template = f"tmpl_{uuid.uuid4().hex[:16]}"
                asyncio.run(self.admin(f'CREATE DATABASE "{template}"'))
                migrate_sync(self.url(template))
                self.template = template
            asyncio.run(self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        else:
            asyncio.run(self.admin(f'CREATE DATABASE "{name}"'))
        return name

    def recycle(self, name: str) -> None:
        """Empty a migrated database for the next test, or drop it if its schema changed."""
        try:
            if asyncio.run(self._empty(name)):
                self.spare.append(name)
                return
        except (OSError, asyncpg.PostgresError):
            pass
        self.drop(name)

    async def _empty(self, name: str) -> bool:
        conn = await asyncpg.connect(self._dsn(name))
        try:
            tables = {
                r["tablename"]
                for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            }
            version = await conn.fetchval("SELECT version_num FROM alembic_version") if tables else None
            if tables != set(Base.metadata.tables) | {"alembic_version"} or version != head_revision():
                return False
            names = ", ".join(f'"{t}"' for t in sorted(Base.metadata.tables))
            await conn.execute("SET lock_timeout = '2s'")
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY")
            return True
        finally:
            await conn.close()

    def drop(self, name: str) -> None:
        asyncio.run(self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        for name in self.spare:
            self.drop(name)
        self.spare.clear()
        if self.template is not None:
            self.drop(self.template)
            self.template = None


def fresh_database_url(
    backend: str, migrated: bool, tmp_path: Path, server: PostgresServer | None, template: Path | None
) -> Iterator[str]:
    """A fresh database's URL for one test (a generator for a pytest fixture): on SQLite a new file under
    `tmp_path` (a copy of `template` when `migrated`), on PostgreSQL one from `server`."""
    if backend == "sqlite":
        path = tmp_path / f"db-{uuid.uuid4().hex[:8]}" / "bot.db"
        if migrated:
            assert template is not None
            path.parent.mkdir(parents=True)
            shutil.copyfile(template, path)
        yield sqlite_url(path)
        return
    assert server is not None
    name = server.create(migrated=migrated)
    try:
        yield server.url(name)
    finally:
        if migrated:
            server.recycle(name)
        else:
            server.drop(name)


@contextlib.asynccontextmanager
async def scratch_database(backend: str) -> AsyncIterator[str | None]:
    """An empty database on `backend`, removed afterwards (None when PostgreSQL is not available)."""
    if backend == "sqlite":
        workdir = Path(tempfile.mkdtemp(prefix="scratch-db-"))
        try:
            yield sqlite_url(workdir / "scratch.db")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    base = postgres_url(start=True)
    if base is None:
        yield None
        return
    server = PostgresServer(base)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    await server.admin(f'CREATE DATABASE "{name}"')
    try:
        yield server.url(name)
    finally:
        await server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def statements_to(db: Database, verb: str, table: str) -> Iterator[list[str]]:
    """The `verb` statements (`"SELECT"`: reading from `table`; `"INSERT"`: into it) the database is
    sent while in the block, on both of `db`'s engines (reads and group writes use the inline one)."""
    pattern = re.compile(rf"\s*{verb}\b.*\b(?:FROM|INTO) {table}\b", re.IGNORECASE | re.DOTALL)
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if pattern.match(statement):
            seen.append(statement)

    engines = {db.engine.sync_engine, db._inline_engine.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
