"""Demo data: every table filled, consistent with itself, and the same for the same seed."""

from __future__ import annotations

import datetime as dt
from typing import AsyncIterator

import asyncpg
import pytest

from wsd import demo
from wsd.aggregates import differences
from wsd.database import apply_migrations, load_queries

ANCHOR = dt.datetime(2026, 3, 2, 12, tzinfo=dt.timezone.utc)


@pytest.fixture
async def empty_db(postgres) -> AsyncIterator[asyncpg.Connection]:
    admin = await asyncpg.connect(postgres)
    await admin.execute("DROP DATABASE IF EXISTS wsd_demo_test")
    await admin.execute("CREATE DATABASE wsd_demo_test")
    connection = await asyncpg.connect(postgres.replace("/wsd_test", "/wsd_demo_test"))
    await apply_migrations(connection)
    yield connection
    await connection.close()
    await admin.execute("DROP DATABASE wsd_demo_test")
    await admin.close()


async def _fingerprint(connection: asyncpg.Connection) -> list:
    return [tuple(r) for r in await connection.fetch(
        "SELECT l.id, u.email, l.current_step::text, l.created_at FROM lead_qualifications l "
        "JOIN users u ON u.id = l.user_id ORDER BY l.id")]


async def test_demo_fills_every_table_consistently(empty_db: asyncpg.Connection) -> None:
    await demo.seed_demo(empty_db, leads=700, seed=3, anchor=ANCHOR)
    for table in demo.COLUMNS:
        assert await empty_db.fetchval(f"SELECT count(*) FROM {table}") > 0, table
    assert await empty_db.fetchval("SELECT count(*) FROM lead_qualifications") == 700
    steps = {r["current_step"]: r["n"] for r in await empty_db.fetch(
        "SELECT current_step::text, count(*) AS n FROM lead_qualifications GROUP BY 1")}
    assert set(steps) == set(demo.STEPS)
    # Each lead's history ends at its current step and never runs past the anchor.
    mismatched = await empty_db.fetchval("""
        SELECT count(*) FROM lead_qualifications l
        WHERE l.current_step <> (SELECT h.to_step FROM lead_step_history h WHERE h.lead_id = l.id
                                 ORDER BY h.changed_at DESC, h.id DESC LIMIT 1)""")
    assert mismatched == 0
    assert await empty_db.fetchval("SELECT max(changed_at) FROM lead_step_history") <= ANCHOR
    # BANT answers exist exactly for leads that reached the bant step.
    assert await empty_db.fetchval("""
        SELECT count(*) FROM lead_qualifications l
        WHERE (EXISTS (SELECT 1 FROM bant_data b WHERE b.lead_id = l.id))
           <> (SELECT max(to_step) >= 'bant' FROM lead_step_history h WHERE h.lead_id = l.id)""") == 0
    # furthest_step and first-entry times agree with the history, as the triggers would keep them.
    assert await empty_db.fetchval("""
        SELECT count(*) FROM lead_qualifications l
        WHERE l.furthest_step <> (SELECT max(to_step) FROM lead_step_history h WHERE h.lead_id = l.id)
           OR l.last_activity_at < l.updated_at""") == 0
    assert await empty_db.fetchval("""
        SELECT count(*) FROM (SELECT lead_id, to_step, min(changed_at) AS at FROM lead_step_history
                              GROUP BY 1, 2) h
        FULL JOIN lead_step_entries e ON e.lead_id = h.lead_id AND e.step = h.to_step
        WHERE e.entered_at IS DISTINCT FROM h.at""") == 0
    # last_message_at matches the messages, even though triggers were off for the load.
    assert await empty_db.fetchval("""
        SELECT count(*) FROM conversations c
        WHERE c.last_message_at IS DISTINCT FROM
              (SELECT max(created_at) FROM messages m WHERE m.conversation_id = c.id)""") == 0
    # Agent replies come seconds after the user, as a real agent's do.
    median_reply = await empty_db.fetchval("""
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM m.created_at - p.created_at))
        FROM messages m JOIN LATERAL (SELECT created_at, role FROM messages p
             WHERE p.conversation_id = m.conversation_id AND p.created_at < m.created_at
             ORDER BY p.created_at DESC LIMIT 1) p ON p.role = 'user'
        WHERE m.role = 'agent'""")
    assert 2 < median_reply < 30
    # The stored reply delays and first agent times are what the triggers would have written.
    assert await empty_db.fetchval("""
        SELECT count(*) FROM (
            SELECT m.role, m.response_seconds,
                   lag(m.role) OVER w AS previous_role, m.created_at - lag(m.created_at) OVER w AS gap
              FROM messages m WINDOW w AS (PARTITION BY conversation_id ORDER BY created_at, id)) x
        WHERE (role = 'agent' AND previous_role = 'user')
              IS DISTINCT FROM (response_seconds IS NOT NULL)
           OR abs(response_seconds - extract(epoch FROM gap)) > 0.001""") == 0
    assert await empty_db.fetchval("""
        SELECT count(*) FROM conversations c WHERE first_agent_message_at IS DISTINCT FROM
            (SELECT min(created_at) FROM messages m WHERE m.conversation_id = c.id AND role = 'agent')""") == 0
    assert await empty_db.fetchval("SELECT n FROM row_counts WHERE table_name = 'users'") == 700
    assert await empty_db.fetchval("""
        SELECT count(*) FROM lead_qualifications l JOIN conversations c ON c.id = l.conversation_id
        WHERE l.agent_handled <> (c.first_agent_message_at IS NOT NULL)""") == 0
    assert await empty_db.fetchval("""
        SELECT count(*) FROM meetings m JOIN lead_qualifications l ON l.id = m.lead_id
        WHERE m.lead_agent_handled <> l.agent_handled""") == 0
    assert await empty_db.fetchval(
        "SELECT count(DISTINCT name) FROM integrations WHERE name IN ('PayPal', 'Stripe', 'Firebase')") == 3
    # The kept aggregates were filled by the one pass after the load (their triggers were off).
    assert await empty_db.fetchval("SELECT sum(replies) FROM reply_delay_counts") == await empty_db.fetchval(
        "SELECT count(*) FROM messages WHERE role = 'agent' AND response_seconds IS NOT NULL") > 0
    assert await differences(empty_db, load_queries()) == []


async def test_same_seed_same_data_and_never_into_a_full_database(empty_db: asyncpg.Connection) -> None:
    await demo.seed_demo(empty_db, leads=50, seed=9, anchor=ANCHOR)
    first = await _fingerprint(empty_db)
    with pytest.raises(demo.DatabaseNotEmpty):
        await demo.seed_demo(empty_db, leads=50, seed=9, anchor=ANCHOR)
    assert await empty_db.fetchval("SELECT count(*) FROM lead_qualifications") == 50
    await empty_db.execute("TRUNCATE users CASCADE")
    await demo.seed_demo(empty_db, leads=50, seed=9, anchor=ANCHOR)
    assert await _fingerprint(empty_db) == first
    await empty_db.execute("TRUNCATE users CASCADE")
    await demo.seed_demo(empty_db, leads=50, seed=10, anchor=ANCHOR)
    assert await _fingerprint(empty_db) != first


async def test_demo_data_answers_every_leads_and_requirements_action(admin, db) -> None:
    await demo.seed_demo(db, leads=300, seed=5)
    pipeline = await admin.data("leads", "get_lead_pipeline")
    assert sum(column["count"] for column in pipeline) == 300
    first = await admin.request("leads", "get_all_leads")
    assert len(first["payload"]["data"]) == 100 and first["payload"]["next_cursor"]
    lead = first["payload"]["data"][0]
    complete = await admin.data("leads", "get_lead_with_complete_data", {"lead_id": lead["id"]})
    assert complete["conversation"]["message_count"] >= 2 and complete["step_history"]
    stats = await admin.data("leads", "get_conversion_stats")
    assert stats[0]["reached_from"] == 300 and 0 < stats[0]["rate"] < 1
    assert all(s["median_hours"] is not None and s["median_hours"] > 0 for s in stats)
    abandoned = await admin.data("leads", "get_abandoned_leads", {"days": 30})
    assert abandoned and all(a["days_inactive"] >= 30 and a["completed_at"] is None for a in abandoned)
    moved = await admin.data("leads", "update_lead_step", {"lead_id": lead["id"], "new_step": "meeting"})
    assert moved["current_step"] == "meeting"
    with_requirements = await db.fetchval("SELECT lead_id FROM requirements LIMIT 1")
    requirements = await admin.data("requirements", "get_requirements_by_lead",
                                    {"lead_id": str(with_requirements)})
    assert requirements["features"]
    added = await admin.data("requirements", "add_integration", {
        "requirements_id": requirements["id"], "name": "Zapier", "description": "Automatizaciones"})
    assert added["name"] == "Zapier"
    features = await admin.data("requirements", "get_popular_features")
    assert len(features) == 10 and features[0]["count"] >= features[-1]["count"] > 0
    assert 0 < features[0]["share"] <= 1
    assert await admin.data("requirements", "get_popular_integrations", {"limit": 3})


async def test_demo_data_obeys_the_rules_the_api_enforces(empty_db: asyncpg.Connection) -> None:
    """Issue 14 found weekend meetings, overlapping scheduled ones, leads completed before
    their meeting, and step changes and meetings piled on the anchor hour."""
    await demo.seed_demo(empty_db, leads=500, seed=1, anchor=ANCHOR)
    broken = await empty_db.fetch("""
        SELECT 'outside working hours' AS rule, count(*) FROM meetings
         WHERE extract(isodow FROM start_time AT TIME ZONE 'Europe/Madrid') > 5
            OR (start_time AT TIME ZONE 'Europe/Madrid')::time < '09:00'
            OR (end_time AT TIME ZONE 'Europe/Madrid')::time > '18:00'
            OR (start_time AT TIME ZONE 'Europe/Madrid')::date <> (end_time AT TIME ZONE 'Europe/Madrid')::date
        UNION ALL
        SELECT 'overlapping scheduled', count(*) FROM meetings AS a JOIN meetings AS b
            ON a.mailbox = b.mailbox AND a.id < b.id AND a.status = 'scheduled' AND b.status = 'scheduled'
           AND a.start_time < b.end_time AND b.start_time < a.end_time
        UNION ALL
        SELECT 'completed before its meeting ended', count(*) FROM lead_qualifications AS l
          JOIN meetings AS m ON m.lead_id = l.id AND m.status <> 'cancelled'
         WHERE l.completed_at < m.end_time
        UNION ALL
        SELECT 'step change at or after the anchor', count(*) FROM lead_step_history WHERE changed_at >= $1
        UNION ALL
        SELECT 'meeting booked at or after the anchor', count(*) FROM meetings WHERE created_at >= $1
        UNION ALL
        SELECT 'meeting booked before the lead reached it', count(*) FROM meetings AS m
          JOIN lead_step_entries AS e ON e.lead_id = m.lead_id AND e.step = 'meeting'
         WHERE m.start_time < e.entered_at""", ANCHOR)
    assert {row["rule"]: row["count"] for row in broken if row["count"]} == {}
    assert await empty_db.fetchval("SELECT count(*) FROM meetings") > 50
