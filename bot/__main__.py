"""Command line: `python -m bot [run|migrate|genkey|rotate-keys]`.

The entry point is the top floor of the house: `run` starts the Discord adapter (`cogs.runner`),
which builds the core's services and the client.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from cryptography.fernet import Fernet

from bot.config import ConfigError, Settings, env_file_warning, load_settings
from bot.db import Database, migrate_sync
from bot.keys import KeyVault
from cogs.runner import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="image-hub-bot")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start the bot (the default)")
    sub.add_parser("migrate", help="upgrade the database schema to the newest revision")
    sub.add_parser("genkey", help="print a fresh ENCRYPTION_KEY line for .env")
    sub.add_parser("rotate-keys", help="re-encrypt stored hub keys with the first ENCRYPTION_KEY")
    args = parser.parse_args(argv)

    if args.command == "genkey":
        print(f"ENCRYPTION_KEY={Fernet.generate_key().decode()}")
        return 0
    warning = env_file_warning()
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        settings = load_settings()
        if args.command == "migrate":
            migrate_sync(settings.database_url)
            print("database is at the newest revision")
            return 0
        if args.command == "rotate-keys":
            count = asyncio.run(_rotate_keys(settings))
            print(f"re-encrypted {count} stored hub key(s) with the newest ENCRYPTION_KEY")
            return 0
        settings.require_runnable()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    return run(settings)


async def _rotate_keys(settings: Settings) -> int:
    db = await Database.open(settings.database_url)
    try:
        return await KeyVault(db, settings.fernet).rotate()
    finally:
        await db.close()


if __name__ == "__main__":
    sys.exit(main())
