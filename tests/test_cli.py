"""The command line: one clear line for a bad setting, genkey, migrate and rotate-keys."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
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


# -- .env holds DISCORD_TOKEN and ENCRYPTION_KEY: private to its owner ------------------------------------


def test_a_group_or_world_readable_env_file_is_warned_about_at_start(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"DATABASE_URL=sqlite+aiosqlite:///{tmp_path / 'bot.db'}\n")
    for mode, warned in ((0o644, True), (0o640, True), (0o600, False), (0o400, False)):
        env_file.chmod(mode)
        result = run_cli("migrate", env={}, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        if warned:
            assert len(warning) == 1 and ".env" in warning[0] and "chmod 600" in warning[0], result.stderr
            assert oct(mode)[2:] in warning[0]
        else:
            assert warning == [], (oct(mode), result.stderr)


def fake_install(root: Path) -> None:
    """A copy of scripts/run-bot in `root`, whose .venv/bin/python skips installing and starting
    (not under test) but runs the real `python -m bot genkey`."""
    (root / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "run-bot", root / "scripts" / "run-bot")
    shutil.copy(ROOT / ".env.example", root / ".env.example")
    (root / ".env.example").chmod(0o644)
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  "-m pip "*) exit 0 ;;\n'
        f'  "-m bot genkey") PYTHONPATH={ROOT} exec {sys.executable} -m bot genkey ;;\n'
        '  *) echo "started: $*"; exit 0 ;;\n'
        "esac\n"
    )
    python.chmod(0o755)


def test_run_bot_creates_env_readable_by_its_owner_only(tmp_path: Path) -> None:
    fake_install(tmp_path)
    result = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "run-bot")],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        umask=0o022,  # a usual default: files would be created 0644
    )
    assert result.returncode == 0, result.stderr
    assert "started: -m bot" in result.stdout
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "ENCRYPTION_KEY=" in env_file.read_text()  # the key was added, the mode kept
