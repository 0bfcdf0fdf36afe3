"""dashboard.get_human_takeover on a hand-computed fixture: hand-offs, time to the first
human message (median, p90), unanswered now, switched back, conversations a human wrote in."""

from __future__ import annotations

import datetime as dt
import uuid

from tests import factories
from tests.conftest import Client
from wsd.database import load_queries

UTC = dt.timezone.utc
DAY, SECOND = dt.timedelta(days=1), dt.timedelta(seconds=1)


async def switch(db, conversation_id: uuid.UUID, enabled: bool, at: dt.datetime) -> None:
    """A switch as the agent's worker would store it, at a chosen time."""
    await db.execute("INSERT INTO agent_status_changes (conversation_id, enabled, changed_at) VALUES ($1, $2, $3)",
                     conversation_id, enabled, at)


async def test_human_takeover_on_a_hand_computed_fixture(admin: Client, viewer: Client, db) -> None:
    now = dt.datetime.now(UTC)
    c1, c2, c3, c4, c5, c6 = [await factories.conversation(db) for _ in range(6)]
    # c1: answered after 60 s, then the agent is switched back on.
    await switch(db, c1, False, now - 3 * DAY)
    await factories.message(db, c1, "human", now - 3 * DAY + 60 * SECOND)
    await switch(db, c1, True, now - 2 * DAY)
    # c2: answered after 300 s (a second human message changes nothing); still off.
    await switch(db, c2, False, now - 2 * DAY)
    await factories.message(db, c2, "human", now - 2 * DAY + 300 * SECOND)
    await factories.message(db, c2, "human", now - 2 * DAY + 400 * SECOND)
    # c3: never answered, agent still off: unanswered now.
    await factories.message(db, c3, "user", now - DAY + SECOND)
    await switch(db, c3, False, now - DAY)
    # c4: switched back after 100 s before any human wrote; a human message after that does
    # not answer the hand-off.
    await switch(db, c4, False, now - 5 * DAY)
    await switch(db, c4, True, now - 5 * DAY + 100 * SECOND)
    await factories.message(db, c4, "human", now - 4 * DAY)
    # c5: a hand-off before the period (answered): not counted, nor its human message.
    await switch(db, c5, False, now - 10 * DAY)
    await factories.message(db, c5, "human", now - 10 * DAY + 10 * SECOND)
    # c6: answered after 1200 s, the message stored before the hand-off row (out of order).
    await factories.message(db, c6, "human", now - DAY + 1200 * SECOND)
    await switch(db, c6, False, now - DAY)

    expected = {"days": 7, "handoffs": 5, "answered": 3, "unanswered_now": 1, "switched_back": 2,
                "conversations_human_wrote": 4,
                # [60, 300, 1200]: median 300; p90 at position 0.9 × 2 = 1.8 → 300 + 0.8 × 900
                "first_human_message_seconds": {"median": 300.0, "p90": 1020.0}}
    data = await viewer.data("dashboard", "get_human_takeover")
    assert {k: v for k, v in data.items() if k not in ("since", "until")} == expected
    # The kept columns agree with their recomputation from the raw rows (verify-aggregates).
    assert [dict(r) async for r in load_queries().aggregates.handoff_differences(db)] == []
    await db.execute("UPDATE agent_status_changes SET answered_at = NULL")
    assert len([r async for r in load_queries().aggregates.handoff_differences(db)]) == 4
    await db.execute("SELECT recount_handoffs()")
    assert {k: v for k, v in (await admin.data("dashboard", "get_human_takeover", {"days": 7})).items()
            if k not in ("since", "until")} == expected

    longer = await admin.data("dashboard", "get_human_takeover", {"days": 30})
    assert (longer["handoffs"], longer["answered"], longer["conversations_human_wrote"]) == (6, 4, 5)
    error = await admin.error("dashboard", "get_human_takeover", {"days": 0})
    assert (error["code"], error["details"]) == ("invalid_payload", {"field": "days"})


async def test_a_switch_through_wsd_then_a_human_message(admin: Client, db) -> None:
    conversation_id = await factories.conversation(db)
    await admin.data("conversations", "update_agent_status",
                     {"conversation_id": str(conversation_id), "enabled": False})
    data = await admin.data("dashboard", "get_human_takeover")
    assert (data["handoffs"], data["answered"], data["unanswered_now"]) == (1, 0, 1)
    await factories.message(db, conversation_id, "human", dt.datetime.now(UTC) + SECOND)
    data = await admin.data("dashboard", "get_human_takeover")
    assert (data["handoffs"], data["answered"], data["unanswered_now"]) == (1, 1, 0)
    assert data["first_human_message_seconds"]["median"] > 0
