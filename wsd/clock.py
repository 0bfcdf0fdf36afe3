"""Business time: "today", "this week" and hour buckets in the configured IANA time zone.

Timestamps are stored in UTC; only this module turns local calendar notions into UTC
instants, so a daylight-saving change is handled in one place.

The business clock is the system clock, unless `WSD_CLOCK_START` (an ISO-8601 instant with
an offset) is set when the process starts: then the clock starts at that instant and runs at
the real pace from there. Tests use it to cross a local midnight or a month's end on demand;
it moves only what wsd computes in Python (periods, "today"), never PostgreSQL's now().

Example:
    >>> start, end = local_day_bounds(dt.date(2026, 3, 29), ZoneInfo("Europe/Madrid"))
    >>> (end - start).total_seconds() / 3600     # the spring-forward day has 23 hours
    23.0
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from typing import Callable
from zoneinfo import ZoneInfo

__all__ = ["utc_now", "local_day_bounds", "local_today", "hour_floor", "at_local_midnights"]

UTC = dt.timezone.utc


def _clock_offset(start: str | None) -> dt.timedelta:
    """How far the business clock is from the system clock: 0 unless WSD_CLOCK_START is set."""
    if not start:
        return dt.timedelta(0)
    instant = dt.datetime.fromisoformat(start)
    if instant.tzinfo is None:
        raise ValueError("WSD_CLOCK_START needs a UTC offset, e.g. 2026-03-01T23:59:50+01:00")
    return instant - dt.datetime.fromtimestamp(time.time(), UTC)


_OFFSET = _clock_offset(os.environ.get("WSD_CLOCK_START"))


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC) + _OFFSET


def local_day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where local `day` starts and the next local day starts."""
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_today(zone: ZoneInfo, now: dt.datetime | None = None) -> dt.date:
    return (now or utc_now()).astimezone(zone).date()


def hour_floor(instant: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The start of the local hour containing `instant`, in UTC (zones with half-hour offsets
    get buckets on their own half hours)."""
    local = instant.astimezone(zone)
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


async def at_local_midnights(zone: ZoneInfo, call: Callable[[], None]) -> None:
    """Calls `call` just after each local midnight on the business clock, forever: what
    "today" and the reporting periods name changes then."""
    while True:
        now = utc_now()
        day = local_today(zone, now)
        await asyncio.sleep((local_day_bounds(day, zone)[1] - now).total_seconds() + 0.05)
        if local_today(zone) != day:  # a sleep may end a little early
            call()
