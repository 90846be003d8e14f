"""Shared fixtures: databases on both backends, an encryption key, a manual clock.

Every database fixture is parametrized `sqlite` / `postgres`. The PostgreSQL half needs
`TEST_DATABASE_URL` (e.g. `export TEST_DATABASE_URL=$(bash scripts/pg-start)`); without it
those tests are skipped with the reason shown, unless `REQUIRE_POSTGRES=1`, which makes them
fail instead. Each test gets its own fresh database: a copied SQLite file, or a PostgreSQL
database cloned from a per-session migrated template (`CREATE DATABASE ... TEMPLATE`),
emptied and reused after the test (every database is dropped at the end of the session); how
is in `tests/databases.py`, which the benchmarks share.

Fixtures:
  backend             "sqlite" | "postgres"
  empty_database_url  URL of a fresh database with no tables (for migration tests)
  database_url        URL of a fresh database migrated to head (e.g. for other processes)
  db                  an open `bot.db.Database` on `database_url`
  fernet              a `MultiFernet` with one fresh key
  clock               a `ManualClock` at Wednesday 2025-01-15 12:00 UTC
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet

from bot.clock import ManualClock
from bot.db import Database, migrate_sync
from cogs.i18n import compile_catalogs
from tests.databases import (
    PG_ENV,
    REQUIRE_ENV,
    PostgresServer,
    fresh_database_url,
    pg_base_url,
    require_postgres,
    sqlite_url,
)

pytest_plugins = ["tests.fakediscord.fixtures", "tests.bed"]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def pytest_configure(config: pytest.Config) -> None:
    # The tests import the source tree: its message catalogs are compiled as the package build does.
    compile_catalogs()
    config.addinivalue_line("markers", "postgres: runs against PostgreSQL (needs TEST_DATABASE_URL)")


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
    migrate_sync(sqlite_url(path))
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
