"""Checks shared by the payload types, so one rule reads the same in every action.

msgspec checks types and `Meta` bounds before a Struct's `__post_init__`; the rules here
need the value first (a length *after* trimming, a date PostgreSQL and `zoneinfo` can both
shift by a day). They raise `ValueError("field `x` ...")`, which the dispatcher turns into
`invalid_payload` with `details.field` = "x".

Each rule also has its JSON Schema words here (the `*_PATTERN`s, `trimmed_text`, `Day`,
`Instant`), which `wsd schema` publishes; tests/test_schema_contract.py holds the two to
the same answers.

Example:
    >>> trimmed("  Chat en vivo ", "name", 200)
    'Chat en vivo'
    >>> trimmed("   ", "name", 200)
    Traceback (most recent call last):
    ValueError: field `name` must not be blank
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

__all__ = ["FIRST_DAY", "LAST_DAY", "EMAIL_PATTERN", "DATE_PATTERN", "DAY_PATTERN", "INSTANT_PATTERN",
           "UUID_PATTERN", "Day", "Instant", "Cursor", "trimmed_text", "trimmed_pattern", "trimmed",
           "day_in_range", "instant_in_range"]

# Dates a calendar question may name: far enough from datetime's limits (years 1 and 9999)
# that a day's local bounds and any UTC offset stay representable.
FIRST_DAY = dt.date(1900, 1, 1)
LAST_DAY = dt.date(9998, 12, 31)

# The patterns below are the JSON Schema's words for the rules the payload types check, and
# must read the same in Python's `re` (msgspec, hypothesis) and in ECMAScript (clients'
# validators). So no `\s` (the two disagree on U+001C–U+001F and U+FEFF) and no `\d` (Python's
# matches any Unicode digit): white space is spelled out as exactly the characters
# `str.strip()` removes, and U+0000, which no text field may hold, is excluded wherever a
# pattern allows "any character".
_WHITE = "".join(f"\\u{ord(c):04x}" for c in map(chr, range(0x3001)) if c.isspace())
_SOLID = f"[^{_WHITE}\\u0000]"

# `$` in Python also matches before a final "\n" ("a@b.com\n" passed); the look-ahead
# closes that gap and reads the same as an ECMAScript pattern in the JSON Schema.
EMAIL_PATTERN = f"^[^@{_WHITE}\\u0000]+@[^@{_WHITE}\\u0000]+\\.[^@.{_WHITE}\\u0000]+(?!\\n)$"

# Hyphenated or 32 hex digits, either case: what msgspec reads as a UUID.
UUID_PATTERN = ("^(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
                "|[0-9A-Fa-f]{32})(?!\\n)$")


def _calendar_date(year: str, leap_year: str) -> str:
    """A real `YYYY-MM-DD` date (no 30 February) whose year matches `year`; 29 February only
    in the years `leap_year` matches."""
    month_day = (r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
                 r"|02-(?:0[1-9]|1[0-9]|2[0-8]))")
    return f"(?:(?:{year})-{month_day}|(?:{leap_year})-02-29)"


# Any date msgspec reads (years 0001–9999), and the dates of FIRST_DAY..LAST_DAY.
_ANY_DATE = _calendar_date(r"(?!0000)[0-9]{4}",
                           r"[0-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00")
_DAY = _calendar_date(r"19[0-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9][0-9]|99[0-8][0-9]|999[0-8]",
                      r"(?:19|[2-9][0-9])(?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[3579][26])00")
DATE_PATTERN = f"^{_ANY_DATE}(?!\\n)$"
DAY_PATTERN = f"^{_DAY}(?!\\n)$"
# RFC 3339 as msgspec reads it, with the offset required and the local date in range.
INSTANT_PATTERN = (f"^{_DAY}[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
                   f"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])(?!\\n)$")


def trimmed_pattern(longest: int) -> str:
    """The pattern of a text `trimmed(value, field, longest)` accepts: not blank, at most
    `longest` characters once surrounding white space is removed, no U+0000."""
    return f"^[{_WHITE}]*{_SOLID}(?:[^\\u0000]{{0,{longest - 2}}}{_SOLID})?[{_WHITE}]*$"


def trimmed_text(longest: int, note: str = "") -> msgspec.Meta:
    """The bounds of a text its payload type passes through `trimmed(value, field, longest)`:
    for the JSON Schema only, so the daemon's refusal keeps its own words."""
    return msgspec.Meta(min_length=1, extra_json_schema={"pattern": trimmed_pattern(longest)},
                        description=f"not blank; at most {longest} characters once surrounding white "
                                    f"space is trimmed{note}")


# A calendar date a question may name (checked by `day_in_range` in the payload type).
Day = Annotated[dt.date, msgspec.Meta(
    extra_json_schema={"pattern": DAY_PATTERN},
    description=f"a date from {FIRST_DAY} to {LAST_DAY}")]
# An instant with its UTC offset (checked by `instant_in_range` in the payload type).
Instant = Annotated[dt.datetime, msgspec.Meta(
    extra_json_schema={"format": "date-time", "pattern": INSTANT_PATTERN},
    description=f"RFC 3339 with a UTC offset (`Z` or `+01:00`), local date from {FIRST_DAY} to {LAST_DAY}")]
# A page's position: only a `next_cursor` this server sent (else `invalid_payload`).
Cursor = Annotated[str, msgspec.Meta(
    description="the `next_cursor` of an earlier reply; any other text is invalid_payload")]


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
    """Refuses naive datetimes and instants whose local date is outside FIRST_DAY..LAST_DAY.

    The local date only, as INSTANT_PATTERN says: an offset is less than a day, so the same
    instant in UTC (or any zone) is at most a day away and still far from datetime's limits.
    """
    if value.tzinfo is None:
        raise ValueError(f"field `{field}` needs a UTC offset, e.g. 2024-01-15T10:00:00Z")
    day_in_range(value.date(), field)
