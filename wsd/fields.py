"""Checks shared by the payload types, so one rule reads the same in every action.

msgspec checks types and `Meta` bounds before a Struct's `__post_init__`; the rules here
need the value first (a length *after* trimming, a date PostgreSQL and `zoneinfo` can both
shift by a day). They raise `ValueError("field `x` ...")`, which the dispatcher turns into
`invalid_payload` with `details.field` = "x".

Example:
    >>> trimmed("  Chat en vivo ", "name", 200)
    'Chat en vivo'
    >>> trimmed("   ", "name", 200)
    Traceback (most recent call last):
    ValueError: field `name` must not be blank
"""

from __future__ import annotations

import datetime as dt

__all__ = ["FIRST_DAY", "LAST_DAY", "EMAIL_PATTERN", "trimmed", "day_in_range",
           "instant_in_range"]

# Dates a calendar question may name: far enough from datetime's limits (years 1 and 9999)
# that a day's local bounds and any UTC offset stay representable.
FIRST_DAY = dt.date(1900, 1, 1)
LAST_DAY = dt.date(9998, 12, 31)

# `$` in Python also matches before a final "\n" ("a@b.com\n" passed); the look-ahead
# closes that gap and reads the same as an ECMAScript pattern in the JSON Schema.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]+(?!\n)$"


def trimmed(value: str, field: str, longest: int) -> str:
    """`value` without surrounding white space; blank or longer than `longest` is refused.

    The length is checked after trimming, so padding a valid name never makes it too long.
    """
    text = value.strip()
    if not text:
        raise ValueError(f"field `{field}` must not be blank")
    if len(text) > longest:
        raise ValueError(f"field `{field}` is longer than {longest} characters once trimmed")
    return text


def day_in_range(value: dt.date, field: str) -> None:
    """Refuses dates outside FIRST_DAY..LAST_DAY (their local bounds would overflow)."""
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"field `{field}` must be between {FIRST_DAY} and {LAST_DAY}")


def instant_in_range(value: dt.datetime, field: str) -> None:
    """Refuses naive datetimes and instants outside FIRST_DAY..LAST_DAY in UTC."""
    if value.tzinfo is None:
        raise ValueError(f"field `{field}` needs a UTC offset, e.g. 2024-01-15T10:00:00Z")
    day_in_range(value.date(), field)  # first the local date, so converting cannot overflow
    day_in_range(value.astimezone(dt.timezone.utc).date(), field)
