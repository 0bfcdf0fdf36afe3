"""The simulated AI agent (`wsd demo-activity`) against the real test database.

Everything it writes is checked with SQL: each kind of row appears, the invariants the
dashboard relies on hold, a seed reproduces the same rows, and a killed connection is
replaced without stopping the demo.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.conftest import DATA_TABLES, ROOT, free_port, write_config
from wsd.aggregates import differences
from wsd.config import BusinessConfig, Config
from wsd.database import load_queries
from wsd.demo_activity import run_demo_activity

# A business unlike the default one — another zone, odd workdays, short hours, a 20-minute
# grid — so the meeting checks would catch rules taken from anywhere but the config.
CONFIG = Config(business=BusinessConfig(timezone="America/New_York", workday_start="10:00",
                                        workday_end="13:30", workdays=[1, 2, 4, 6],
                                        slot_minutes=20, min_notice_minutes=90))
# Enough events for every seed tried (1-16) to take some lead all the way to `completed`.
EVENTS, RATE, SEED = 400, 150.0, 11
STEP_ORDER = "array_position(enum_range(NULL::lead_step), {})"


def connector(dsn: str, name: str = "wsd-demo-test", opened: list[int] | None = None) -> Any:
    async def connect() -> asyncpg.Connection:
        if opened is not None:
            opened.append(1)
        return await asyncpg.connect(dsn, server_settings={"application_name": name})
    return connect


async def play(dsn: str, events: int = EVENTS, seed: int = SEED) -> list[Any]:
    """Runs the simulator to completion; returns what it logged."""
    with capture_logs() as logs:
        await asyncio.wait_for(run_demo_activity(connector(dsn), CONFIG, events_per_second=RATE,
                                                 seed=seed, stop_after=events), 60)
    return logs


async def empty(db: asyncpg.Connection) -> None:
    await db.execute(f"TRUNCATE {', '.join(DATA_TABLES)} CASCADE")


async def count(db: asyncpg.Connection, sql: str, *args: Any) -> int:
    return await db.fetchval(f"SELECT count(*) FROM ({sql}) AS rows", *args)


async def test_every_kind_of_row_appears_at_the_asked_pace(postgres: str, db: asyncpg.Connection) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    logs = await play(postgres)
    elapsed = loop.time() - started
    assert not [entry for entry in logs if entry["log_level"] in ("error", "warning")], logs
    # 400 events at 150/s: about 2.7 s of pacing (a little less: the run ends on an event).
    assert 1.5 < elapsed < 15, elapsed
    kinds = {
        "users": "SELECT 1 FROM users",
        "conversations": "SELECT 1 FROM conversations",
        "leads": "SELECT 1 FROM lead_qualifications",
        "user messages": "SELECT 1 FROM messages WHERE role = 'user'",
        "agent replies": "SELECT 1 FROM messages WHERE role = 'agent' AND response_seconds > 0",
        "human messages": "SELECT 1 FROM messages WHERE role = 'human'",
        "agent step moves": "SELECT 1 FROM lead_step_history WHERE source = 'agent' AND from_step IS NOT NULL",
        "hand-offs": "SELECT 1 FROM agent_status_changes WHERE NOT enabled",
        "bant": "SELECT 1 FROM bant_data",
        "requirements": "SELECT 1 FROM requirements",
        "features": "SELECT 1 FROM features",
        "integrations": "SELECT 1 FROM integrations",
        "meetings": "SELECT 1 FROM meetings WHERE status = 'scheduled'",
        "completed leads": "SELECT 1 FROM lead_qualifications WHERE current_step = 'completed'",
    }
    missing = [kind for kind, sql in kinds.items() if await count(db, sql) == 0]
    assert not missing, missing
    assert await db.fetchval("SELECT bool_and(source = 'agent') FROM lead_step_history")
    await assert_invariants(db)


async def assert_invariants(db: asyncpg.Connection) -> None:
    """What the dashboard counts on, whoever wrote the rows."""
    assert await count(db, "SELECT 1 FROM lead_qualifications WHERE current_step > furthest_step") == 0
    assert await count(db, "SELECT 1 FROM lead_qualifications "
                           "WHERE (current_step = 'completed') <> (completed_at IS NOT NULL)") == 0
    # History: a chain from NULL → start, each row starting where the last one ended, the
    # agent moving one step at a time, the last row at the current step.
    assert await count(db, """
        SELECT 1 FROM (SELECT from_step, lag(to_step) OVER w AS previous FROM lead_step_history
                       WINDOW w AS (PARTITION BY lead_id ORDER BY changed_at, id)) AS h
         WHERE from_step IS DISTINCT FROM previous""") == 0
    assert await count(db, f"""
        SELECT 1 FROM lead_step_history WHERE from_step IS NOT NULL
           AND {STEP_ORDER.format('to_step')} <> {STEP_ORDER.format('from_step')} + 1""") == 0
    assert await count(db, """
        SELECT 1 FROM lead_qualifications AS l
         WHERE current_step IS DISTINCT FROM (SELECT to_step FROM lead_step_history AS h WHERE h.lead_id = l.id
                                               ORDER BY changed_at DESC, id DESC LIMIT 1)
            OR furthest_step IS DISTINCT FROM (SELECT max(to_step) FROM lead_step_history AS h
                                                WHERE h.lead_id = l.id)
            OR (SELECT count(*) FROM lead_step_entries AS e WHERE e.lead_id = l.id)
               <> (SELECT count(DISTINCT to_step) FROM lead_step_history AS h WHERE h.lead_id = l.id)""") == 0
    # What each step needs was written on the way.
    assert await count(db, """
        SELECT 1 FROM lead_qualifications AS l
         WHERE (furthest_step >= 'consent' AND NOT consent)
            OR (furthest_step >= 'bant' AND NOT EXISTS (SELECT 1 FROM bant_data WHERE lead_id = l.id))
            OR (furthest_step >= 'requirements' AND NOT EXISTS (
                    SELECT 1 FROM requirements AS r WHERE r.lead_id = l.id
                       AND EXISTS (SELECT 1 FROM features WHERE requirements_id = r.id)
                       AND EXISTS (SELECT 1 FROM integrations WHERE requirements_id = r.id)))
            OR (furthest_step >= 'meeting' AND NOT EXISTS (SELECT 1 FROM meetings WHERE lead_id = l.id))""") == 0
    # Hand-offs: every conversation without the agent has its switch recorded, and the agent
    # never wrote after it.
    assert await count(db, """
        SELECT 1 FROM conversations AS c WHERE NOT agent_enabled
           AND NOT EXISTS (SELECT 1 FROM agent_status_changes AS s WHERE s.conversation_id = c.id AND NOT s.enabled)
            OR EXISTS (SELECT 1 FROM messages AS m JOIN agent_status_changes AS s USING (conversation_id)
                        WHERE m.conversation_id = c.id AND m.role = 'agent' AND m.created_at > s.changed_at)""") == 0
    assert await count(db, """
        SELECT 1 FROM conversations AS c
         WHERE last_message_at IS DISTINCT FROM (SELECT max(created_at) FROM messages WHERE conversation_id = c.id)""") == 0
    await assert_meetings_follow_the_rules(db)
    # The kept dashboard aggregates (triggers) agree with the rows the simulator wrote.
    assert [str(found) for found in await differences(db, load_queries())] == []


async def assert_meetings_follow_the_rules(db: asyncpg.Connection) -> None:
    assert await count(db, """
        SELECT 1 FROM meetings AS a JOIN meetings AS b
            ON a.mailbox = b.mailbox AND a.id < b.id AND a.status = 'scheduled' AND b.status = 'scheduled'
           AND a.start_time < b.end_time AND b.start_time < a.end_time""") == 0
    business = CONFIG.business
    zone = business.zone
    opens, closes = (dt.time.fromisoformat(business.workday_start), dt.time.fromisoformat(business.workday_end))
    for meeting in await db.fetch("SELECT start_time, end_time, created_at, attendee_email, sync_status "
                                  "FROM meetings"):
        start, end = meeting["start_time"].astimezone(zone), meeting["end_time"].astimezone(zone)
        assert start.isoweekday() in business.workdays, meeting
        assert start.date() == end.date() and opens <= start.time() and end.time() <= closes, meeting
        since_open = start - dt.datetime.combine(start.date(), opens, zone)
        assert since_open.total_seconds() % (business.slot_minutes * 60) == 0, meeting
        assert start >= meeting["created_at"] + dt.timedelta(minutes=business.min_notice_minutes), meeting
        assert "@" in meeting["attendee_email"] and meeting["sync_status"] == "disabled"


async def snapshot(db: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the simulator wrote, without ids and timestamps, in the order written."""
    queries = {
        "users": "SELECT full_name, email, phone, company FROM users ORDER BY created_at, email",
        "leads": "SELECT u.email, l.current_step, l.furthest_step, l.consent, l.completed_at IS NOT NULL, "
                 "l.agent_handled FROM lead_qualifications AS l JOIN users AS u ON u.id = l.user_id "
                 "ORDER BY l.created_at",
        "conversations": "SELECT u.email, c.agent_enabled, c.status FROM conversations AS c "
                         "JOIN users AS u ON u.id = c.user_id ORDER BY c.created_at",
        "messages": "SELECT u.email, m.role, m.content, m.response_seconds IS NOT NULL FROM messages AS m "
                    "JOIN conversations AS c ON c.id = m.conversation_id JOIN users AS u ON u.id = c.user_id "
                    "ORDER BY m.created_at, m.role",
        "history": "SELECT u.email, h.from_step, h.to_step, h.source FROM lead_step_history AS h "
                   "JOIN lead_qualifications AS l ON l.id = h.lead_id JOIN users AS u ON u.id = l.user_id "
                   "ORDER BY h.changed_at, h.id",
        "hand-offs": "SELECT u.email, s.enabled FROM agent_status_changes AS s "
                     "JOIN conversations AS c ON c.id = s.conversation_id JOIN users AS u ON u.id = c.user_id "
                     "ORDER BY s.changed_at",
        "bant": "SELECT u.email, b.budget, b.authority, b.need, b.timeline FROM bant_data AS b "
                "JOIN lead_qualifications AS l ON l.id = b.lead_id JOIN users AS u ON u.id = l.user_id "
                "ORDER BY b.created_at",
        "requirements": "SELECT u.email, r.app_type, "
                        "(SELECT array_agg(name ORDER BY created_at, id) FROM features WHERE requirements_id = r.id), "
                        "(SELECT array_agg(name ORDER BY created_at, id) FROM integrations WHERE requirements_id = r.id) "
                        "FROM requirements AS r JOIN lead_qualifications AS l ON l.id = r.lead_id "
                        "JOIN users AS u ON u.id = l.user_id ORDER BY r.created_at",
        "meetings": "SELECT m.attendee_email, m.subject, m.end_time - m.start_time, m.status, m.mailbox "
                    "FROM meetings AS m ORDER BY m.created_at",
    }
    return {name: [tuple(row) for row in await db.fetch(sql)] for name, sql in queries.items()}


async def test_same_seed_same_rows(postgres: str, db: asyncpg.Connection) -> None:
    await play(postgres, events=80, seed=5)
    first = await snapshot(db)
    await empty(db)
    await play(postgres, events=80, seed=5)
    assert await snapshot(db) == first
    assert first["users"] and first["messages"] and first["history"]
    await empty(db)
    await play(postgres, events=80, seed=6)
    assert await snapshot(db) != first


async def test_dropped_connection_is_replaced_and_the_demo_goes_on(postgres: str, db: asyncpg.Connection) -> None:
    opened: list[int] = []
    name = "wsd-demo-test-reconnect"
    with capture_logs() as logs:
        task = asyncio.create_task(run_demo_activity(connector(postgres, name, opened), CONFIG,
                                                     events_per_second=40, seed=SEED, stop_after=120))
        async with asyncio.timeout(20):
            while await db.fetchval("SELECT count(*) FROM messages") < 20:
                await asyncio.sleep(0.05)
        killed = await db.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE application_name = $1", name)
        assert killed == 1
        before = await db.fetchval("SELECT count(*) FROM messages")
        await asyncio.wait_for(task, 60)
    assert len(opened) >= 2
    assert await db.fetchval("SELECT count(*) FROM messages") > before + 10
    assert any(entry["event"].startswith("demo activity lost its database connection")
               and entry["log_level"] == "warning" for entry in logs), logs
    assert not [entry for entry in logs if entry["log_level"] == "error"], logs
    await assert_invariants(db)


async def test_cancelling_stops_it_and_closes_its_connection(postgres: str, db: asyncpg.Connection) -> None:
    name = "wsd-demo-test-cancel"
    task = asyncio.create_task(run_demo_activity(connector(postgres, name), CONFIG, events_per_second=20))
    async with asyncio.timeout(20):
        while await db.fetchval("SELECT count(*) FROM users") < 1:
            await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5):
        while await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name):
            await asyncio.sleep(0.05)


async def test_rate_must_be_positive(postgres: str) -> None:
    with pytest.raises(ValueError):
        await run_demo_activity(connector(postgres), CONFIG, events_per_second=0)



def run_cli(dsn: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`wsd demo-activity ARGS` in a subprocess, configured for the test database."""
    config = write_config(tmp_path / "wsd.toml", dsn, free_port())
    env = {key: value for key, value in os.environ.items() if not key.startswith("WSD_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "wsd", "--config", str(config), "demo-activity", *args],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)


async def test_cli_subcommand_writes_the_given_number_of_events(postgres: str, db: asyncpg.Connection,
                                                                 tmp_path: Path) -> None:
    done = await asyncio.to_thread(run_cli, postgres, tmp_path, "--rate", "50", "--seed", "3", "--events", "30")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "demo activity stopped" in done.stdout and "30" in done.stdout, done.stdout
    assert await db.fetchval("SELECT count(*) FROM users") >= 1
    assert await db.fetchval("SELECT count(*) FROM messages") >= 10
    await assert_invariants(db)
    refused = await asyncio.to_thread(run_cli, postgres, tmp_path, "--rate", "0")
    assert refused.returncode == 2 and "must be positive" in refused.stderr
