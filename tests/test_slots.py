"""Slot arithmetic in business time: daylight-saving days and minimum notice."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from wsd.config import BusinessConfig
from wsd.slots import free_slots

MADRID = ZoneInfo("Europe/Madrid")
UTC = dt.timezone.utc


def business(**settings) -> BusinessConfig:
    return BusinessConfig(**{"timezone": "Europe/Madrid", "workdays": [1, 2, 3, 4, 5, 6, 7], **settings})


def local_times(slots) -> list[str]:
    return [start.astimezone(MADRID).strftime("%H:%M%z") for start, _ in slots]


LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=UTC)


def test_offsets_change_with_daylight_saving() -> None:
    day_before = free_slots(dt.date(2027, 3, 27), 60, business(workday_start="09:00", workday_end="11:00"), [], LONG_AGO)
    spring = free_slots(dt.date(2027, 3, 28), 60, business(workday_start="09:00", workday_end="11:00"), [], LONG_AGO)
    assert local_times(day_before) == ["09:00+0100", "09:30+0100", "10:00+0100"]
    assert local_times(spring) == ["09:00+0200", "09:30+0200", "10:00+0200"]
    assert spring[0][0] == dt.datetime(2027, 3, 28, 7, tzinfo=UTC)


def test_a_working_day_across_the_spring_gap_has_one_hour_less() -> None:
    # 01:00–04:00 local on the night 02:00 does not exist: two real hours.
    slots = free_slots(dt.date(2027, 3, 28), 60, business(workday_start="01:00", workday_end="04:00"), [], LONG_AGO)
    assert local_times(slots) == ["01:00+0100", "01:30+0100", "03:00+0200"]
    assert all(end - start == dt.timedelta(hours=1) for start, end in slots)


def test_a_working_day_across_the_autumn_repeat_has_one_hour_more() -> None:
    slots = free_slots(dt.date(2027, 10, 31), 60, business(workday_start="01:00", workday_end="04:00"), [], LONG_AGO)
    assert local_times(slots) == ["01:00+0200", "01:30+0200", "02:00+0200", "02:30+0200",
                                  "02:00+0100", "02:30+0100", "03:00+0100"]


def test_minimum_notice_cuts_the_morning() -> None:
    now = dt.datetime(2027, 5, 10, 10, 15, tzinfo=MADRID)
    slots = free_slots(dt.date(2027, 5, 10), 30, business(min_notice_minutes=120), [], now)
    assert local_times(slots)[0] == "12:30+0200" and local_times(slots)[-1] == "17:30+0200"


def test_busy_blocks_and_days_off() -> None:
    day = dt.date(2027, 5, 10)
    busy = [(dt.datetime(2027, 5, 10, 9, 45, tzinfo=MADRID), dt.datetime(2027, 5, 10, 16, 10, tzinfo=MADRID))]
    slots = free_slots(day, 60, business(workdays=[1]), busy, LONG_AGO)
    assert local_times(slots) == ["16:30+0200", "17:00+0200"]
    assert free_slots(day + dt.timedelta(days=1), 60, business(workdays=[1]), [], LONG_AGO) == []
