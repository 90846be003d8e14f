"""Storage: the `Database` (engine, sessions, transactions), ORM models and Alembic migrations."""

from bot.db.connect import create_engine
from bot.db.engine import Database, is_retryable
from bot.db.migrate import current_revision, downgrade, head_revision, migrate, migrate_sync

__all__ = [
    "Database",
    "create_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_retryable",
    "migrate",
    "migrate_sync",
]
