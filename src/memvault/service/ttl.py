"""TTL arithmetic and streak rules: pure functions, no I/O, no clock."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from memvault.errors import InvalidArgumentError


def expiry(now: datetime, ttl_seconds: int | None, expires_at: datetime | None) -> datetime | None:
    """When a memory expires, from a TTL or an absolute time; it must lie in the future."""
    if ttl_seconds is not None:
        return now + timedelta(seconds=ttl_seconds)
    if expires_at is not None and expires_at <= now:
        raise InvalidArgumentError(
            f"expires_at must be in the future, got {expires_at.isoformat()}",
            {"field": "expires_at"},
        )
    return expires_at


def local_day(now: datetime, timezone: str | None) -> date:
    """The calendar day of `now` in the user's time zone (UTC when unknown or invalid)."""
    if timezone:
        try:
            return now.astimezone(ZoneInfo(timezone)).date()
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return now.date()


def next_streak(
    last_active: date | None, current: int, longest: int, today: date
) -> tuple[int, int, date]:
    """(current, longest, last active day) after activity on `today`.

    Same day: unchanged. The day after the last active day: the streak grows by one.
    Any later day (a gap): a new streak of one. A day before the last one (clock moved back)
    changes nothing.
    """
    if last_active is not None and today <= last_active:
        return current, max(longest, current), last_active
    if last_active is not None and today - last_active == timedelta(days=1):
        current += 1
    else:
        current = 1
    return current, max(longest, current), today
