"""Free meeting slots on one local date, from working hours and busy blocks.

Slots are laid out in real (UTC) time from the local start of the working day to its local
end, so on a daylight-saving day every slot still lasts `duration` minutes and carries the
offset in force at its start.

Example:
    >>> free_slots(dt.date(2026, 3, 30), 60, business, busy=[], now=now)[0]
    (datetime(2026, 3, 30, 7, 0, tzinfo=UTC), datetime(2026, 3, 30, 8, 0, tzinfo=UTC))
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable

from wsd.config import BusinessConfig

__all__ = ["free_slots"]

Interval = tuple[dt.datetime, dt.datetime]


def working_hours(day: dt.date, business: BusinessConfig) -> Interval | None:
    """The working day's [start, end) as UTC instants, or None on a day off."""
    if day.isoweekday() not in business.workdays:
        return None
    zone = business.zone
    start = dt.datetime.combine(day, dt.time.fromisoformat(business.workday_start), zone)
    end = dt.datetime.combine(day, dt.time.fromisoformat(business.workday_end), zone)
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def free_slots(day: dt.date, duration_minutes: int, business: BusinessConfig,
               busy: Iterable[Interval], now: dt.datetime) -> list[Interval]:
    """Slots of `duration_minutes` starting every `slot_minutes` within working hours, at
    least `min_notice_minutes` after `now`, and overlapping no busy block."""
    hours = working_hours(day, business)
    if hours is None:
        return []
    opens, closes = hours
    length = dt.timedelta(minutes=duration_minutes)
    step = dt.timedelta(minutes=business.slot_minutes)
    earliest = now + dt.timedelta(minutes=business.min_notice_minutes)
    blocks = sorted(busy)
    slots = []
    start = opens
    while start + length <= closes:
        end = start + length
        if start >= earliest and not any(b_start < end and b_end > start for b_start, b_end in blocks):
            slots.append((start, end))
        start += step
    return slots
