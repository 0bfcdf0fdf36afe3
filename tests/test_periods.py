"""Reporting periods (wsd.periods): what each preset names on the business clock, the
previous period `compare` sets beside it, and the timeline's buckets."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import msgspec
import pytest

from wsd.periods import DateRange, bucket_starts, change, resolve

MADRID = ZoneInfo("Europe/Madrid")
# Sunday 2026-03-15, 00:30 in Madrid (23:30 UTC the day before): the local date is what counts.
NOW = dt.datetime(2026, 3, 14, 23, 30, tzinfo=dt.timezone.utc)
D = dt.date


def days(preset: str) -> tuple[tuple[dt.date, dt.date], tuple[dt.date, dt.date]]:
    period = resolve(preset, MADRID, NOW)  # type: ignore[arg-type]
    previous = period.previous()
    return (period.first, period.last), (previous.first, previous.last)


@pytest.mark.parametrize(("preset", "expected", "before"), [
    ("today", (D(2026, 3, 15), D(2026, 3, 15)), (D(2026, 3, 14), D(2026, 3, 14))),
    ("yesterday", (D(2026, 3, 14), D(2026, 3, 14)), (D(2026, 3, 13), D(2026, 3, 13))),
    ("last_7_days", (D(2026, 3, 9), D(2026, 3, 15)), (D(2026, 3, 2), D(2026, 3, 8))),
    ("last_30_days", (D(2026, 2, 14), D(2026, 3, 15)), (D(2026, 1, 15), D(2026, 2, 13))),
    ("last_90_days", (D(2025, 12, 16), D(2026, 3, 15)), (D(2025, 9, 17), D(2025, 12, 15))),
    ("this_week", (D(2026, 3, 9), D(2026, 3, 15)), (D(2026, 3, 2), D(2026, 3, 8))),
    ("last_week", (D(2026, 3, 2), D(2026, 3, 8)), (D(2026, 2, 23), D(2026, 3, 1))),
    ("this_month", (D(2026, 3, 1), D(2026, 3, 31)), (D(2026, 2, 1), D(2026, 2, 28))),
    ("last_month", (D(2026, 2, 1), D(2026, 2, 28)), (D(2026, 1, 1), D(2026, 1, 31))),
    ("this_quarter", (D(2026, 1, 1), D(2026, 3, 31)), (D(2025, 10, 1), D(2025, 12, 31))),
])
def test_presets_and_their_previous_periods(preset: str, expected: tuple[dt.date, dt.date],
                                           before: tuple[dt.date, dt.date]) -> None:
    assert days(preset) == (expected, before)


def test_a_period_is_whole_local_days_in_utc_instants() -> None:
    period = resolve(DateRange(from_=D(2026, 3, 29), to=D(2026, 3, 29)), MADRID)
    # The spring-forward day: 23 hours, from 23:00 UTC the day before.
    assert period.since == dt.datetime(2026, 3, 28, 23, tzinfo=dt.timezone.utc)
    assert period.until - period.since == dt.timedelta(hours=23)
    assert len(bucket_starts(period, "hour")) == 24  # 23 buckets and the end


def test_a_custom_range_compares_with_the_same_number_of_days_before() -> None:
    period = resolve(DateRange(from_=D(2026, 1, 10), to=D(2026, 1, 19)), MADRID)
    previous = period.previous()
    assert (previous.first, previous.last) == (D(2025, 12, 31), D(2026, 1, 9))


def test_bad_ranges_name_their_field() -> None:
    with pytest.raises(msgspec.ValidationError, match="field `to`"):
        msgspec.convert({"from": "2026-03-10", "to": "2026-03-09"}, DateRange)
    with pytest.raises(msgspec.ValidationError, match="longer than 366 days"):
        msgspec.convert({"from": "2025-01-01", "to": "2026-01-02"}, DateRange)
    msgspec.convert({"from": "2025-01-01", "to": "2026-01-01"}, DateRange)  # 366 days: accepted


def test_buckets_follow_local_weeks_and_months_and_refuse_too_many() -> None:
    period = resolve(DateRange(from_=D(2026, 1, 28), to=D(2026, 3, 3)), MADRID)
    weeks = bucket_starts(period, "week")
    assert [b.astimezone(MADRID).date() for b in weeks[:-1]] == [
        D(2026, 1, 28), D(2026, 2, 2), D(2026, 2, 9), D(2026, 2, 16), D(2026, 2, 23), D(2026, 3, 2)]
    months = bucket_starts(period, "month")
    assert [b.astimezone(MADRID).date() for b in months[:-1]] == [D(2026, 1, 28), D(2026, 2, 1), D(2026, 3, 1)]
    assert months[-1] == period.until
    with pytest.raises(ValueError, match="granularity"):
        bucket_starts(resolve("last_90_days", MADRID, NOW), "hour")


def test_change_is_null_against_zero() -> None:
    assert change(15, 10) == {"absolute": 5, "relative": 0.5}
    assert change(3, 0) == {"absolute": 3, "relative": None}
