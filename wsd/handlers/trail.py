"""trail: who did what through wsd, newest first (admins only).

Entries are written by the dispatcher, one per committed write and one per export
(wsd/trail.py says what an entry holds). Retention: `[trail] keep_days` and
`wsd trail purge --older-than DAYS`.
"""

from __future__ import annotations

import datetime as dt
import typing
import uuid
from typing import Annotated, Any

import msgspec

from wsd.actions import ActionTable, Context, Paged, Payload, read
from wsd.fields import Cursor, Instant, instant_in_range
from wsd.pagination import decode_cursor, page_of
from wsd.topics import Topic

# Every write through wsd changes at least one of these, and adds an entry with it.
WRITES: frozenset[Topic] = frozenset(typing.get_args(Topic))

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TrailQuery(Payload):
    actor: Name | None = None
    action: Annotated[Name, msgspec.Meta(description='"update_lead_step" or "leads.update_lead_step"')] | None = None
    lead_id: uuid.UUID | None = None
    since: Instant | None = None
    until: Instant | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    cursor: Cursor | None = None

    def __post_init__(self) -> None:
        for field in ("since", "until"):
            if (value := getattr(self, field)) is not None:
                instant_in_range(value, field)


def trail_query(_: Context, payload: TrailQuery) -> tuple[tuple[str, str], dict[str, Any]]:
    """get_trail's query and filters."""
    return ("trail", "trail_page"), {"actor": payload.actor, "action": payload.action,
                                     "lead_id": payload.lead_id, "since": payload.since,
                                     "until": payload.until}


async def get_trail(ctx: Context, payload: TrailQuery) -> Paged:
    """Trail entries newest first, filtered by actor, action, lead and [since, until); each
    {id, at, actor, actor_role, resource, action, lead_id, ids, payload, outcome}."""
    after = decode_cursor(payload.cursor, id_type=int)
    rows = [row async for row in ctx.queries.trail.trail_page(
        ctx.pool, **trail_query(ctx, payload)[1], after_at=after.at, after_id=after.id,
        page_size=payload.limit + 1)]
    return page_of(rows, payload.limit, key="at", document="entry")


ACTIONS = ActionTable("trail", [
    read("get_trail", get_trail, TrailQuery, topics=WRITES, role="admin"),
])
