"""Command line: `python -m bot [run|migrate|genkey]`."""

from __future__ import annotations

import argparse
import sys

from cryptography.fernet import Fernet

from bot.config import ConfigError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="image-hub-bot")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start the bot (the default)")
    sub.add_parser("migrate", help="upgrade the database schema to the newest revision")
    sub.add_parser("genkey", help="print a fresh ENCRYPTION_KEY line for .env")
    args = parser.parse_args(argv)

    if args.command == "genkey":
        print(f"ENCRYPTION_KEY={Fernet.generate_key().decode()}")
        return 0
    try:
        settings = load_settings()
        if args.command == "migrate":
            from bot.db import migrate_sync

            migrate_sync(settings.database_url)
            print("database is at the newest revision")
            return 0
        settings.require_runnable()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from bot.runner import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
