"""Keyset pagination: opaque cursors over an ordered `(timestamp, id)` key.

A cursor is the last row's key, so a page boundary does not move when rows are inserted
before it (offsets would repeat or skip rows). A list ordered by a small integer group first
(meetings by status) carries that group in its cursor too.

Example:
    >>> cursor = encode_cursor(row["created_at"], row["id"])
    >>> decode_cursor(cursor) == Keyset(row["created_at"], row["id"], None)
    True
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any, NamedTuple, Sequence

import orjson

from wsd.dispatcher import Paged
from wsd.errors import InvalidPayload
from wsd.fields import instant_in_range

__all__ = ["Keyset", "encode_cursor", "decode_cursor", "page_of"]


class Keyset(NamedTuple):
    """Where the next page starts: after (group, at, id); all None for the first page."""
    at: dt.datetime | None
    id: Any   # uuid.UUID, or int for a list of bigint ids (the trail); None first
    group: int | None


def encode_cursor(at: dt.datetime, row_id: uuid.UUID | int, group: int | None = None) -> str:
    key: list[Any] = [at.isoformat(), str(row_id)]
    if group is not None:
        key.append(group)
    raw = orjson.dumps(key)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, grouped: bool = False, id_type: type[Any] = uuid.UUID) -> Keyset:
    """All None for the first page; `invalid_payload` for anything not made here, or made
    for a list ordered another way (`grouped`: the list is ordered by a group first).
    `id_type`: what the rows' ids are (`uuid.UUID`, or `int` for bigint ids)."""
    if cursor is None:
        return Keyset(None, None, None)
    try:
        at, row_id, *group = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if len(group) != int(grouped) or not all(type(g) is int for g in group):
            raise ValueError("a cursor of a list ordered another way")
        instant = dt.datetime.fromisoformat(at)
        instant_in_range(instant, "cursor")  # a forged year 9999 would overflow in asyncpg
        return Keyset(instant, id_type(row_id), group[0] if group else None)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidPayload("cursor is not one this server issued", {"field": "cursor"}) from None


def page_of(rows: Sequence[Any], page_size: int, key: str, document: str, group: str | None = None) -> Paged:
    """Rows fetched with LIMIT page_size + 1: the extra row only says a next page exists.
    `group`: the column the list is ordered by before `key`, kept in the cursor."""
    items = [row[document] for row in rows[:page_size]]
    if len(rows) <= page_size:
        return Paged(items, None)
    last = rows[page_size - 1]
    return Paged(items, encode_cursor(last[key], last["id"], None if group is None else last[group]))
