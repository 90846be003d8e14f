"""The command line: one clear line for a bad setting, genkey, migrate and rotate-keys."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

from bot.db import Database
from bot.keys import KeyVault

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_missing_token_is_one_line_and_non_zero(tmp_path: Path) -> None:
    result = run_cli(env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "DISCORD_TOKEN is not set" in result.stderr and "Traceback" not in result.stderr


def test_invalid_encryption_key_names_the_setting(tmp_path: Path) -> None:
    result = run_cli(env={"DISCORD_TOKEN": "x", "ENCRYPTION_KEY": "nope"}, cwd=tmp_path)
    assert result.returncode == 2 and "ENCRYPTION_KEY is invalid" in result.stderr
    assert "python -m bot genkey" in result.stderr


def test_genkey_prints_a_usable_key(tmp_path: Path) -> None:
    result = run_cli("genkey", env={}, cwd=tmp_path)
    name, _, value = result.stdout.strip().partition("=")
    assert name == "ENCRYPTION_KEY"
    Fernet(value.encode())  # a valid key


def test_rotate_keys_re_encrypts_with_the_newest_key(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"

    async def store() -> None:
        db = await Database.open(url)
        await KeyVault(db, MultiFernet([Fernet(old.encode())])).set_key(1, "gih_live_" + "a" * 32, 2)
        await db.close()

    async def read_with_new_only() -> str | None:
        db = await Database.open(url)
        try:
            return await KeyVault(db, MultiFernet([Fernet(new.encode())])).get_key(1)
        finally:
            await db.close()

    asyncio.run(store())
    result = run_cli("rotate-keys", env={"DATABASE_URL": url, "ENCRYPTION_KEY": f"{new},{old}"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "re-encrypted 1" in result.stdout
    assert asyncio.run(read_with_new_only()) == "gih_live_" + "a" * 32
