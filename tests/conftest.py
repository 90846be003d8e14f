"""Shared fixtures: databases on both backends, an encryption key, a manual clock.

Every database fixture is parametrized `sqlite` / `postgres`. The PostgreSQL half needs
`TEST_DATABASE_URL` (e.g. `export TEST_DATABASE_URL=$(bash scripts/pg-start)`); without it
those tests are skipped with the reason shown, unless `REQUIRE_POSTGRES=1`, which makes them
fail instead. Each test gets its own fresh database: a copied SQLite file, or a PostgreSQL
database cloned from a per-session migrated template (`CREATE DATABASE ... TEMPLATE`),
emptied and reused after the test (every database is dropped at the end of the session).

Fixtures:
  backend             "sqlite" | "postgres"
  empty_database_url  URL of a fresh database with no tables (for migration tests)
  database_url        URL of a fresh database migrated to head (e.g. for other processes)
  db                  an open `bot.db.Database` on `database_url`
  fernet              a `MultiFernet` with one fresh key
  clock               a `ManualClock` at Wednesday 2025-01-15 12:00 UTC
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy.engine import make_url

from bot.clock import ManualClock
from bot.db import Database, head_revision, migrate_sync
from bot.db.models import Base

pytest_plugins = ["tests.fakediscord.fixtures", "tests.bed"]

PG_ENV = "TEST_DATABASE_URL"
REQUIRE_ENV = "REQUIRE_POSTGRES"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: runs against PostgreSQL (needs TEST_DATABASE_URL)")


def pg_base_url() -> str | None:
    return os.environ.get(PG_ENV, "").strip() or None


def require_postgres() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}


class PostgresServer:
    """Creates and drops throwaway databases on the server behind TEST_DATABASE_URL.

    Migrated databases are cloned from a per-session template; after a test they are emptied
    (TRUNCATE ... RESTART IDENTITY) and reused, which is much faster than CREATE DATABASE.
    A database whose schema a test changed is dropped instead.
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

    async def _admin(self, *statements: str) -> None:
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
                asyncio.run(self._admin(f'CREATE DATABASE "{template}"'))
                migrate_sync(self.url(template))
                self.template = template
            asyncio.run(self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        else:
            asyncio.run(self._admin(f'CREATE DATABASE "{name}"'))
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
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        for name in self.spare:
            self.drop(name)
        self.spare.clear()
        if self.template is not None:
            self.drop(self.template)
            self.template = None


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[PostgresServer | None]:
    url = pg_base_url()
    server = PostgresServer(url) if url else None
    yield server
    if server is not None:
        server.close()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate_sync(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend under test; the postgres half skips without TEST_DATABASE_URL."""
    name: str = request.param
    if name == "postgres" and pg_base_url() is None:
        reason = f"PostgreSQL tests need {PG_ENV} (export {PG_ENV}=$(bash scripts/pg-start))"
        if require_postgres():
            pytest.fail(f"{REQUIRE_ENV}=1 but {PG_ENV} is not set", pytrace=False)
        pytest.skip(reason)
    return name


def fresh_database_url(
    backend: str, migrated: bool, tmp_path: Path, server: PostgresServer | None, template: Path | None
) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path / f"db-{uuid.uuid4().hex[:8]}" / "bot.db"
        if migrated:
            assert template is not None
            path.parent.mkdir(parents=True)
            shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
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


@pytest.fixture
def empty_database_url(
    backend: str, tmp_path: Path, _postgres_server: PostgresServer | None
) -> Iterator[str]:
    """URL of a fresh, empty (never migrated) database on the backend under test."""
    yield from fresh_database_url(backend, False, tmp_path, _postgres_server, None)


@pytest.fixture
def database_url(
    backend: str, tmp_path: Path, _postgres_server: PostgresServer | None, request: pytest.FixtureRequest
) -> Iterator[str]:
    """URL of a fresh database migrated to head on the backend under test."""
    template = request.getfixturevalue("_sqlite_template") if backend == "sqlite" else None
    yield from fresh_database_url(backend, True, tmp_path, _postgres_server, template)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """An open `Database` on a fresh migrated database (closed after the test)."""
    database = await Database.open(database_url, migrate=False)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def fernet() -> MultiFernet:
    return MultiFernet([Fernet(Fernet.generate_key())])


@pytest.fixture
def clock() -> ManualClock:
    """Wednesday 2025-01-15 12:00:00 UTC; move it with `clock.advance(...)`."""
    return ManualClock(datetime(2025, 1, 15, 12, 0, tzinfo=UTC))
