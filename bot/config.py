"""Settings from the environment and `.env`, validated once at start-up.

A wrong setting must stop the bot with one line naming it and the fix, never a traceback:
operators meet this module before anything else.
"""

from __future__ import annotations

import stat
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.hub.netguard import parse_allowed

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/image-hub-bot.db"

# How to fix each setting, in one line, for the start-up error message.
_FIXES: dict[str, str] = {
    "DISCORD_TOKEN": "put your bot token from the Discord developer portal in .env as DISCORD_TOKEN=...",
    "ENCRYPTION_KEY": "run `python -m bot genkey` and put the printed line in .env",
    "DATABASE_URL": "use an async SQLAlchemy URL such as sqlite+aiosqlite:///./data/bot.db "
    "or postgresql+asyncpg://user:pass@host/db",
    "HUB_BASE_URL": "use an http(s) URL such as https://www.gptimagehub.com",
    "DEV_GUILD_ID": "use a numeric server id, or leave it empty",
    "LOG_LEVEL": "use DEBUG, INFO, WARNING or ERROR",
    "SHARD_IDS": "use comma-separated shard numbers below SHARD_COUNT, e.g. 0,1",
    "ALLOW_PRIVATE_IMAGE_HOSTS": "use comma-separated host:port pairs, e.g. hub:8080, or leave it empty",
}


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line fit for an operator."""


class Settings(BaseSettings):
    """Every setting the bot reads; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    discord_token: SecretStr | None = Field(default=None, alias="DISCORD_TOKEN")
    hub_base_url: str = Field(default="https://www.gptimagehub.com", alias="HUB_BASE_URL")
    hub_api_key: SecretStr | None = Field(default=None, alias="HUB_API_KEY")
    database_url: str = Field(default=DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    encryption_key: SecretStr | None = Field(default=None, alias="ENCRYPTION_KEY")
    dev_guild_id: int | None = Field(default=None, alias="DEV_GUILD_ID")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    shard_count: int | None = Field(default=None, alias="SHARD_COUNT", ge=1)
    shard_ids: str | None = Field(default=None, alias="SHARD_IDS")
    metrics_port: int | None = Field(default=None, alias="METRICS_PORT", ge=0, le=65535)
    job_retention_days: int = Field(default=30, alias="JOB_RETENTION_DAYS", ge=1)
    max_concurrent_polls: int = Field(default=32, alias="MAX_CONCURRENT_POLLS", ge=1)
    job_lease_seconds: float = Field(default=120.0, alias="JOB_LEASE_SECONDS", gt=0)
    loop_lag_sampling: bool = Field(default=False, alias="LOOP_LAG_SAMPLING")
    # host:port pairs whose image URLs may be on private addresses (e.g. the hub emulator on a
    # private network); every other image URL must be on a public address.
    allow_private_image_hosts: str | None = Field(default=None, alias="ALLOW_PRIVATE_IMAGE_HOSTS")

    @field_validator(
        "hub_api_key",
        "discord_token",
        "encryption_key",
        "dev_guild_id",
        "shard_ids",
        "shard_count",
        "metrics_port",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("hub_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("allow_private_image_hosts")
    @classmethod
    def _host_ports(cls, value: str | None) -> str | None:
        parse_allowed(value)  # ValueError names the bad entry
        return value

    @field_validator("database_url")
    @classmethod
    def _async_url(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("unknown level")
        return level

    @field_validator("encryption_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            for part in value.get_secret_value().split(","):
                try:
                    Fernet(part.strip().encode())
                except ValueError:
                    raise ValueError("is not a valid Fernet key (32 url-safe base64 bytes)") from None
        return value

    @cached_property
    def fernet(self) -> MultiFernet:
        """All configured keys, newest first: encrypt with the first, decrypt with any."""
        if self.encryption_key is None:
            raise ConfigError(_line("ENCRYPTION_KEY", "is not set"))
        parts = self.encryption_key.get_secret_value().split(",")
        return MultiFernet([Fernet(p.strip().encode()) for p in parts if p.strip()])

    @property
    def shard_id_list(self) -> list[int] | None:
        if self.shard_ids is None:
            return None
        return [int(p) for p in self.shard_ids.split(",") if p.strip()]

    def require_runnable(self) -> None:
        """Check what only running the bot needs (tests and tools load settings without a token)."""
        if self.discord_token is None:
            raise ConfigError(_line("DISCORD_TOKEN", "is not set"))
        if self.encryption_key is None:
            raise ConfigError(_line("ENCRYPTION_KEY", "is not set"))
        if self.shard_ids is not None:
            try:
                ids = self.shard_id_list or []
            except ValueError:
                raise ConfigError(_line("SHARD_IDS", "is not a list of numbers")) from None
            if self.shard_count is None or not ids or any(not 0 <= i < self.shard_count for i in ids):
                raise ConfigError(_line("SHARD_IDS", "needs SHARD_COUNT and ids below it"))


def _line(name: str, problem: str) -> str:
    fix = _FIXES.get(name, "see .env.example")
    return f"{name} {problem}: {fix}"


def env_file_warning(path: str | Path = ".env") -> str | None:
    """A one-line warning when the env file (it holds DISCORD_TOKEN and ENCRYPTION_KEY) can be read
    by the file's group or by other users; None when it is private or absent."""
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (
        f"{path} is readable by other users (mode {mode:o}) and holds DISCORD_TOKEN and ENCRYPTION_KEY: "
        f"run `chmod 600 {path}`"
    )


def load_settings(**overrides: Any) -> Settings:
    """Load settings, turning validation errors into one operator-readable `ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        name = name.upper()
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(_line(name, f"is invalid ({message})")) from None
