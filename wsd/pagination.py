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

from wsd.actions import Paged
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
    """All None for the first page; `invalid_payload` on `cursor` for any string
    `encode_cursor` did not write for a list ordered this way (`grouped`: by a group first),
    byte for byte (the key decoded from it must encode back to it), so no forged shape
    reaches a query. `id_type`: what the rows' ids are (`uuid.UUID`, or `int` for bigint ids)."""
    if cursor is None:
        return Keyset(None, None, None)
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (type(key) is list and len(key) == 2 + int(grouped) and type(key[0]) is str
                and type(key[1]) is str and all(type(group) is int for group in key[2:])):
            raise ValueError("not a key of a list ordered this way")
        instant = dt.datetime.fromisoformat(key[0])
        row_id = id_type(key[1])
        if id_type is int and not -2 ** 63 <= row_id < 2 ** 63:
            raise ValueError("not a bigint id")
        group = key[2] if grouped else None
        if instant.tzinfo is None or encode_cursor(instant, row_id, group) != cursor:
            raise ValueError("not in the form this server writes")
        instant_in_range(instant, "cursor")  # a forged year 9999 would overflow in asyncpg
    except ValueError:   # base64's, JSON's, the timestamp's and the id's errors included
        raise InvalidPayload("cursor is not one this server issued", {"field": "cursor"}) from None
    return Keyset(instant, row_id, group)


def page_of(rows: Sequence[Any], page_size: int, key: str, document: str, group: str | None = None) -> Paged:
    """Rows fetched with LIMIT page_size + 1: the extra row only says a next page exists.
    `group`: the column the list is ordered by before `key`, kept in the cursor."""
    items = [row[document] for row in rows[:page_size]]
    if len(rows) <= page_size:
        return Paged(items, None)
    last = rows[page_size - 1]
    return Paged(items, encode_cursor(last[key], last["id"], None if group is None else last[group]))
