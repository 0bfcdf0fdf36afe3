"""Keyset pagination: opaque cursors over an ordered `(timestamp, id)` key.

A cursor is the last row's key, so a page boundary does not move when rows are inserted
before it (offsets would repeat or skip rows).

Example:
    >>> cursor = encode_cursor(row["created_at"], row["id"])
    >>> decode_cursor(cursor) == (row["created_at"], row["id"])
    True
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any, Sequence

import orjson

from wsd.dispatcher import Paged
from wsd.errors import InvalidPayload
from wsd.fields import instant_in_range

__all__ = ["encode_cursor", "decode_cursor", "page_of"]


def encode_cursor(at: dt.datetime, row_id: uuid.UUID) -> str:
    raw = orjson.dumps([at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[dt.datetime | None, uuid.UUID | None]:
    """`(None, None)` for the first page; `invalid_payload` on `cursor` for any string
    `encode_cursor` did not write, byte for byte (a key decoded from it must encode back to
    it), so no forged shape reaches a query."""
    if cursor is None:
        return None, None
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (type(key) is list and len(key) == 2 and all(type(part) is str for part in key)):
            raise ValueError("not a [timestamp, id] pair")
        instant = dt.datetime.fromisoformat(key[0])
        row_id = uuid.UUID(key[1])
        if instant.tzinfo is None or encode_cursor(instant, row_id) != cursor:
            raise ValueError("not in the form this server writes")
        instant_in_range(instant, "cursor")  # a forged year 9999 would overflow in asyncpg
    except ValueError:   # base64's, JSON's, the timestamp's and the uuid's errors included
        raise InvalidPayload("cursor is not one this server issued", {"field": "cursor"}) from None
    return instant, row_id


def page_of(rows: Sequence[Any], page_size: int, key: str, document: str) -> Paged:
    """Rows fetched with LIMIT page_size + 1: the extra row only says a next page exists."""
    items = [row[document] for row in rows[:page_size]]
    if len(rows) <= page_size:
        return Paged(items, None)
    last = rows[page_size - 1]
    return Paged(items, encode_cursor(last[key], last["id"]))
