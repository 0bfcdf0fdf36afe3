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


def encode_cursor(at: dt.datetime, row_id: uuid.UUID | int) -> str:
    raw = orjson.dumps([at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, id_type: type[Any] = uuid.UUID) -> tuple[dt.datetime | None, Any]:
    """`(None, None)` for the first page; `invalid_payload` for anything not made here.

    Args:
        id_type: what the rows' ids are (`uuid.UUID`, or `int` for bigint ids).
    """
    if cursor is None:
        return None, None
    try:
        at, row_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        instant = dt.datetime.fromisoformat(at)
        instant_in_range(instant, "cursor")  # a forged year 9999 would overflow in asyncpg
        return instant, id_type(row_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidPayload("cursor is not one this server issued", {"field": "cursor"}) from None


def page_of(rows: Sequence[Any], page_size: int, key: str, document: str) -> Paged:
    """Rows fetched with LIMIT page_size + 1: the extra row only says a next page exists."""
    items = [row[document] for row in rows[:page_size]]
    if len(rows) <= page_size:
        return Paged(items, None)
    last = rows[page_size - 1]
    return Paged(items, encode_cursor(last[key], last["id"]))
