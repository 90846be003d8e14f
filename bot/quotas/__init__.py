"""Credit budgets per member: periods, policies, the ledger of reservations, and reports.

`QuotaService` holds the three services over one database (`policies`, `ledger`, `reports`);
each caller uses the piece it needs: the engine and /imagine spend through the `ledger`,
/config changes `policies`, /quota and /config usage read `reports`.
"""

from __future__ import annotations

from bot.clock import Clock, utcnow
from bot.db import Database
from bot.quotas.ledger import (
    Budget,
    Ledger,
    LedgerEntry,
    LedgerKind,
    QuotaError,
    QuotaExceeded,
    Reservation,
    ReservationState,
    UnknownReservation,
)
from bot.quotas.periods import DEFAULT_PERIOD, Period, period_bounds
from bot.quotas.policies import LimitSource, QuotaPolicies, QuotaPolicy
from bot.quotas.reports import MemberSpend, MemberUsage, QuotaReports


class QuotaService:
    """The quota services over one database, sharing one policy cache."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self.policies = QuotaPolicies(db)
        self.ledger = Ledger(db, self.policies, clock=clock)
        self.reports = QuotaReports(db, self.policies, clock=clock)


__all__ = [
    "DEFAULT_PERIOD",
    "Budget",
    "Ledger",
    "LedgerEntry",
    "LedgerKind",
    "LimitSource",
    "MemberSpend",
    "MemberUsage",
    "Period",
    "QuotaError",
    "QuotaExceeded",
    "QuotaPolicies",
    "QuotaPolicy",
    "QuotaReports",
    "QuotaService",
    "Reservation",
    "ReservationState",
    "UnknownReservation",
    "period_bounds",
]
