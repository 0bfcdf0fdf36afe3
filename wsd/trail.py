"""What a trail entry says about a write: the ids it touched and its payload, masked.

The dispatcher writes one entry per committed write, in the write's own transaction
(`Dispatcher._in_transaction`), so a rolled-back write leaves none and no entry exists
without its write. This module only shapes the entry; the SQL is wsd/sql/trail/.

Example:
    >>> masked({"attendee_email": "ana@example.com", "subject": "Demo"})
    {'attendee_email': '***', 'subject': 'Demo'}
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

__all__ = ["PERSONAL_FIELDS", "MASK", "masked", "touched_ids", "entry_fields"]

# Fields that name or reach a person (and `search`, what was typed to find one): never
# stored in clear on the trail.
PERSONAL_FIELDS = frozenset({"full_name", "email", "attendee_email", "phone", "company", "search"})
MASK = "***"


def masked(value: Any) -> Any:
    """`value` (JSON-shaped) with every personal field's value, at any depth, replaced by MASK."""
    if isinstance(value, dict):
        return {key: MASK if key in PERSONAL_FIELDS and item is not None else masked(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def touched_ids(payload: dict[str, Any], result: Any) -> dict[str, Any]:
    """The ids a write named (its payload's `*_id` fields) and made (its result: an id, or a
    dict or record with an `id`)."""
    ids = {key: value for key, value in payload.items() if key.endswith("_id") and value is not None}
    made = result if isinstance(result, uuid.UUID) else result.get("id") if hasattr(result, "get") else None
    if made is not None:
        ids.setdefault("id", str(made))
    return ids


def entry_fields(arguments: msgspec.Struct, result: Any) -> dict[str, Any]:
    """The `ids` and `payload` of a write's entry: the idempotency key (a client's own
    retry handle) is left out, personal fields masked."""
    payload = msgspec.to_builtins(arguments)
    payload.pop("idempotency_key", None)
    return {"ids": touched_ids(payload, result), "payload": masked(payload)}

