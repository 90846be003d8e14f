"""Budget periods: a day, a week (from Monday) or a month, always on UTC boundaries."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from bot.clock import as_utc


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


DEFAULT_PERIOD = Period.DAY


def period_bounds(period: Period | str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC period containing `now`: `(start, end)`, start inclusive, end exclusive."""
    period = Period(period)
    now = as_utc(now)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        return day, day + timedelta(days=1)
    if period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end
