"""Reporting periods: a preset or a custom range of local dates, as UTC instants, and the
period before it that `compare` sets beside it.

A period is whole local days in `business.timezone`: `from` and `to` inclusive, so its
instants are [start of `from`, start of the day after `to`). Presets are read on the
business clock (`wsd.clock.utc_now`), so the same request names another window after local
midnight; a live subscription re-runs and moves with it. Weeks start on Monday (ISO).

The previous period (docs/protocol.md, "Reporting periods"):
- calendar presets take the whole calendar unit before: `this_month` (partial) → last month
  whole, `last_month` → the month before it, `this_week`/`last_week` → the week before,
  `this_quarter` → last quarter whole;
- day-count presets and custom ranges take the same number of days right before `from`:
  `last_7_days` → the 7 days before them, `today` → yesterday, `yesterday` → the day before.

Example:
    >>> madrid = ZoneInfo("Europe/Madrid")
    >>> now = dt.datetime(2026, 3, 15, 12, tzinfo=dt.timezone.utc)
    >>> p = resolve("this_month", madrid, now)
    >>> (p.first, p.last), (p.previous().first, p.previous().last)
    ((datetime.date(2026, 3, 1), datetime.date(2026, 3, 31)), (datetime.date(2026, 2, 1), datetime.date(2026, 2, 28)))
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal
from zoneinfo import ZoneInfo

import msgspec

from wsd.clock import local_day_bounds, local_today, utc_now
from wsd.actions import Payload
from wsd.fields import Day, day_in_range

__all__ = ["Preset", "DateRange", "PeriodSpec", "Period", "Granularity", "resolve", "MAX_DAYS",
           "MAX_BUCKETS", "bucket_starts", "change", "changes", "Reported", "reported", "span"]

Preset = Literal["today", "yesterday", "last_7_days", "last_30_days", "last_90_days", "this_week",
                 "last_week", "this_month", "last_month", "this_quarter"]
Granularity = Literal["hour", "day", "week", "month"]

MAX_DAYS = 366
# A timeline of more buckets than this is refused: no chart shows them, and each costs a row.
MAX_BUCKETS = 1000

# How many days back each "last N days" preset reaches (today included).
_DAY_COUNTS = {"today": 1, "last_7_days": 7, "last_30_days": 30, "last_90_days": 90}


class DateRange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Beyond this schema: `to` is on or after `from`, and the range at most 366 days
    (`invalid_payload` on `to`). Local dates in business.timezone, both inclusive."""

    from_: Day = msgspec.field(name="from")
    to: Day

    def __post_init__(self) -> None:
        day_in_range(self.from_, "from")
        day_in_range(self.to, "to")
        if self.to < self.from_:
            raise ValueError("field `to` must not be before `from`")
        if (self.to - self.from_).days + 1 > MAX_DAYS:
            raise ValueError(f"field `to` makes the period longer than {MAX_DAYS} days")


PeriodSpec = Preset | DateRange


@dataclass(frozen=True, slots=True)
class Period:
    """Whole local days [first, last] and their UTC instants [since, until)."""

    first: dt.date
    last: dt.date
    zone: ZoneInfo
    # How `previous()` steps back: by calendar months (1 or 3), by 7 days, or by the length.
    unit: Literal["days", "weeks", "months", "quarters"] = "days"

    @property
    def since(self) -> dt.datetime:
        return local_day_bounds(self.first, self.zone)[0]

    @property
    def until(self) -> dt.datetime:
        return local_day_bounds(self.last, self.zone)[1]

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def previous(self) -> Period:
        """The period `compare` sets beside this one (the rules in the module docstring)."""
        if self.unit in ("months", "quarters"):
            months = 1 if self.unit == "months" else 3
            first = _add_months(self.first, -months)
            return Period(first, _add_months(first, months) - dt.timedelta(days=1), self.zone, self.unit)
        length = dt.timedelta(days=7 if self.unit == "weeks" else self.days)
        return Period(self.first - length, self.first - dt.timedelta(days=1), self.zone, self.unit)

    def describe(self) -> dict[str, Any]:
        """The period as answers carry it: its dates and its instants."""
        return {"from": self.first, "to": self.last, "since": self.since, "until": self.until}


def _add_months(day: dt.date, months: int) -> dt.date:
    """The first of the month `months` away from `day`'s month."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def resolve(spec: PeriodSpec, zone: ZoneInfo, now: dt.datetime | None = None) -> Period:
    """The local days a preset or range names, on the business clock."""
    if isinstance(spec, DateRange):
        return Period(spec.from_, spec.to, zone)
    today = local_today(zone, now or utc_now())
    if spec in _DAY_COUNTS:
        return Period(today - dt.timedelta(days=_DAY_COUNTS[spec] - 1), today, zone)
    if spec == "yesterday":
        return Period(today - dt.timedelta(days=1), today - dt.timedelta(days=1), zone)
    if spec in ("this_week", "last_week"):
        monday = today - dt.timedelta(days=today.weekday()) - dt.timedelta(days=7 * (spec == "last_week"))
        return Period(monday, monday + dt.timedelta(days=6), zone, "weeks")
    if spec in ("this_month", "last_month"):
        first = _add_months(today, -1 if spec == "last_month" else 0)
        return Period(first, _add_months(first, 1) - dt.timedelta(days=1), zone, "months")
    first = _add_months(today.replace(day=1), -((today.month - 1) % 3))  # this_quarter
    return Period(first, _add_months(first, 3) - dt.timedelta(days=1), zone, "quarters")


def bucket_starts(period: Period, granularity: Granularity) -> list[dt.datetime]:
    """The UTC instants where each local bucket starts, plus the period's end: n + 1 bounds
    for n buckets. Weeks start on Monday and months on the 1st; the first and last bucket
    are cut to the period. More than MAX_BUCKETS is a `ValueError` naming `granularity`."""
    zone = period.zone
    if granularity == "hour":
        # UTC steps: a daylight-saving day has 23 or 25 local hours.
        hours = (period.until - period.since) // dt.timedelta(hours=1)
        if hours > MAX_BUCKETS:
            raise ValueError(f"field `granularity` gives {hours} buckets over this period, "
                             f"more than {MAX_BUCKETS}")
        return [period.since + dt.timedelta(hours=n) for n in range(hours)] + [period.until]
    days, day = [], period.first
    while day <= period.last:
        if (granularity == "day" or day == period.first
                or (granularity == "week" and day.weekday() == 0)
                or (granularity == "month" and day.day == 1)):
            days.append(day)
        day += dt.timedelta(days=1)
    return [local_day_bounds(d, zone)[0] for d in days] + [period.until]


def change(current: float, previous: float) -> dict[str, float | None]:
    """A figure's change from the previous period: absolute, and relative to the previous
    (null where the previous is 0)."""
    return {"absolute": current - previous, "relative": (current - previous) / previous if previous else None}


class Reported(Payload):
    """Beyond this schema: `compare` needs a `period`; a custom period's `to` is on or after
    its `from` and at most 366 days after (`invalid_payload` on the field). Without `period`
    the answer is the seed's (all-time or its fixed window)."""

    period: PeriodSpec | None = None
    compare: bool = False

    def __post_init__(self) -> None:
        if self.compare and self.period is None:
            raise ValueError("field `compare` needs a `period`")


Figures = Callable[[Period], Awaitable[dict[str, Any]]]


async def reported(period: Period, compare: bool, figures: Figures) -> dict[str, Any]:
    """An aggregate's answer over a period: `period` and its figures, and with `compare` the
    previous period's figures under `previous` and each figure's `change` from them.

    `figures` answers one period; with `compare` both periods run at once."""
    if not compare:
        return {"period": period.describe(), **await figures(period)}
    before = period.previous()
    current, previous = await asyncio.gather(figures(period), figures(before))
    return {"period": period.describe(), **current, "previous": {"period": before.describe(), **previous},
            "change": changes(current, previous)}


def changes(current: Any, previous: Any) -> Any:
    """`change` for every number in `current` against the same place in `previous` (0 where
    previous lacks it); rows are paired by their step or name, buckets by position. Filter
    objects (`filters`), lead summaries (`leads`) and texts are left out; None where there is
    no number."""
    if isinstance(current, bool) or isinstance(current, str):
        return None
    if isinstance(current, (int, float)):
        before = previous if isinstance(previous, (int, float)) and not isinstance(previous, bool) else 0
        return change(current, before)
    if isinstance(current, dict):
        old = previous if isinstance(previous, dict) else {}
        found = {key: changes(value, old.get(key)) for key, value in current.items()
                 if key not in ("filters", "leads")}
        return {key: value for key, value in found.items() if value is not None} or None
    if isinstance(current, list):
        old_rows = previous if isinstance(previous, list) else []
        return [_row_change(row, old_rows, n) for n, row in enumerate(current)]
    return None


def _row_change(row: Any, old_rows: list[Any], position: int) -> Any:
    key = next((k for k in ("step", "to_step", "name") if isinstance(row, dict) and k in row), None)
    if key is None:
        return changes(row, old_rows[position] if position < len(old_rows) else None)
    match = next((old for old in old_rows if old.get(key) == row[key]), None)
    return {key: row[key], **(changes(row, match) or {})}


def span(period: Period) -> dict[str, dt.date]:
    """A period as a drill-down filter's dates ({from, to}, as `period` takes them)."""
    return {"from": period.first, "to": period.last}
