"""ORM models: one class per table. Services turn rows into frozen snapshots before returning.

Discord ids (snowflakes) are `BigInteger`; times are aware UTC (`UTCDateTime`). Tables of the
quota and job modules refer to each other by plain id columns, without foreign keys, so pruning
old jobs never touches the credit ledger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.db.types import UTCDateTime, id_type, json_type

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    def __repr__(self) -> str:
        # Never print column values: some rows hold secrets (encrypted keys, interaction tokens).
        keys = [str(c.key) for c in self.__mapper__.primary_key]
        pk = ", ".join(f"{k}={getattr(self, k, None)!r}" for k in keys)
        return f"<{type(self).__name__} {pk}>"


class GuildSettings(Base):
    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    allowed_channel_ids: Mapped[list[int]] = mapped_column(json_type(), default=list)
    default_model: Mapped[str] = mapped_column(String(100))
    default_aspect: Mapped[str] = mapped_column(String(20))
    default_resolution: Mapped[str] = mapped_column(String(20))
    default_quality: Mapped[str] = mapped_column(String(20))
    max_concurrent_per_member: Mapped[int] = mapped_column(Integer)
    max_concurrent_per_guild: Mapped[int] = mapped_column(Integer)
    max_queued_per_member: Mapped[int] = mapped_column(Integer)
    max_queued_per_guild: Mapped[int] = mapped_column(Integer)
    mod_log_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    language: Mapped[str] = mapped_column(String(8), default="auto", server_default="auto")
    low_balance_threshold: Mapped[int | None] = mapped_column(Integer)
    low_balance_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    blocked_words: Mapped[list[str]] = mapped_column(json_type(), default=list)
    blocked_patterns: Mapped[list[str]] = mapped_column(json_type(), default=list)
    personal_keys_allowed: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberSettings(Base):
    """A member's own defaults in one server; NULL = not set (the server's default applies)."""

    __tablename__ = "member_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    model: Mapped[str | None] = mapped_column(String(100))
    aspect: Mapped[str | None] = mapped_column(String(20))
    resolution: Mapped[str | None] = mapped_column(String(20))
    quality: Mapped[str | None] = mapped_column(String(20))
    count: Mapped[int | None] = mapped_column(Integer)
    visibility: Mapped[str | None] = mapped_column(String(10))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GuildKey(Base):
    """A server's hub key, Fernet-encrypted; `masked` is the display form (at most 4 characters)."""

    __tablename__ = "guild_keys"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    masked: Mapped[str] = mapped_column(String(40))
    set_by: Mapped[int] = mapped_column(BigInteger)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberKey(Base):
    """A member's own hub key (`/mykey`), Fernet-encrypted like the servers'; one per member, used
    wherever they generate (servers that allow personal keys, DMs)."""

    __tablename__ = "member_keys"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    masked: Mapped[str] = mapped_column(String(40))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QuotaSettings(Base):
    """A server's default budget: `credits` per `period`, or unlimited when `credits` is NULL."""

    __tablename__ = "quota_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    credits: Mapped[int | None] = mapped_column(Integer)
    period: Mapped[str] = mapped_column(String(8))


class QuotaRoleLimit(Base):
    __tablename__ = "quota_role_limits"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    role_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    credits: Mapped[int] = mapped_column(Integer)


class QuotaMemberLimit(Base):
    __tablename__ = "quota_member_limits"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    credits: Mapped[int] = mapped_column(Integer)


class QuotaExemptRole(Base):
    __tablename__ = "quota_exempt_roles"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    role_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class QuotaReservation(Base):
    """Credits held for one generation: `held` → `settled` (with `actual`) or `released`."""

    __tablename__ = "quota_reservations"
    __table_args__ = (
        Index("ix_quota_reservations_member", "guild_id", "user_id", "created_at"),
        Index("ix_quota_reservations_guild", "guild_id", "created_at"),
        Index("ix_quota_reservations_state", "state", "created_at"),
    )

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    credits: Mapped[int] = mapped_column(Integer)
    actual: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(10))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QuotaLedger(Base):
    """Every credit movement; `credits` is signed (negative = taken from the member's budget)."""

    __tablename__ = "quota_ledger"
    __table_args__ = (
        Index("ix_quota_ledger_member", "guild_id", "user_id", "at"),
        Index("ix_quota_ledger_guild", "guild_id", "at"),
        Index("ix_quota_ledger_reservation", "reservation_id"),
    )

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    reservation_id: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    credits: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))


class JobRow(Base):
    """One generation job; see `bot.jobs` for the states and the lease protocol."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_due", "status", "next_poll_at"),
        Index("ix_jobs_member", "guild_id", "user_id", "created_at"),
        Index("ix_jobs_guild_status", "guild_id", "status", "created_at"),
        Index("ix_jobs_finished", "finished_at"),
        Index("ix_jobs_hub_generation", "hub_generation_id"),
    )

    id: Mapped[int] = mapped_column(id_type(), primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    application_id: Mapped[int | None] = mapped_column(BigInteger)
    interaction_token: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_message_id: Mapped[int | None] = mapped_column(BigInteger)
    upload_limit: Mapped[int | None] = mapped_column(Integer)
    locale: Mapped[str | None] = mapped_column(String(16))  # public messages' language, fixed at launch
    reply_to_message_id: Mapped[int | None] = mapped_column(BigInteger)
    params: Mapped[dict[str, Any]] = mapped_column(json_type())
    cost: Mapped[int] = mapped_column(Integer)
    reservation_id: Mapped[int | None] = mapped_column(BigInteger)
    hub_generation_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(20))
    hub_status: Mapped[str | None] = mapped_column(String(40))
    next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    poll_attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    result_urls: Mapped[list[str]] = mapped_column(json_type(), default=list)
    delivered_images: Mapped[int] = mapped_column(Integer, default=0)
    charged_credits: Mapped[int | None] = mapped_column(Integer)
    posted_message_ids: Mapped[list[int]] = mapped_column(json_type(), default=list)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An Upscale or Vary of one image of an earlier job (no foreign key: old jobs are pruned).
    source_job_id: Mapped[int | None] = mapped_column(BigInteger)
    source_action: Mapped[str | None] = mapped_column(String(16))
    source_image: Mapped[int | None] = mapped_column(Integer)
    # The member's results go to them only (`/settings` visibility: private).
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    # Whose hub key pays: NULL the server's (or the operator's fallback), else this member's own.
    key_owner: Mapped[int | None] = mapped_column(BigInteger)
