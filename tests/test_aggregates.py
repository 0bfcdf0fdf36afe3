"""Kept aggregates (migration 0009): right under concurrent writers, and checked by
`wsd verify-aggregates`."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import subprocess
import sys
import uuid

import asyncpg
import pytest

from tests import factories
from tests.conftest import ROOT, Client
from wsd.aggregates import differences
from wsd.database import load_queries
from wsd.steps import STEPS

NAMES = ("Chat en vivo", "chat en  vivo", "CHAT EN VIVO", "Pagos", " pagos", "Mapa", "Informes")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def move_step(connection: asyncpg.Connection, lead_id: uuid.UUID, step: str, at: dt.datetime) -> None:
    """A step move as the agent worker writes it: lock the lead, a history row, the lead's step."""
    async with connection.transaction():
        current = await connection.fetchval(
            "SELECT current_step::text FROM lead_qualifications WHERE id = $1 FOR UPDATE", lead_id)
        if current == step:
            return
        await connection.execute(
            "INSERT INTO lead_step_history (lead_id, from_step, to_step, source, changed_at) "
            "VALUES ($1, $2, $3, $4, $5)", lead_id, current, step,
            "agent" if STEPS.index(step) > STEPS.index(current) else "manual", at)
        await connection.execute(
            "UPDATE lead_qualifications SET current_step = $2::lead_step, updated_at = $3, "
            "completed_at = CASE WHEN $2::lead_step = 'completed' THEN $3::timestamptz END WHERE id = $1",
            lead_id, step, at)


async def straight_sql_writer(dsn: str, seed: int, leads: list[uuid.UUID], conversations: list[uuid.UUID],
                              requirements: list[uuid.UUID], rounds: int) -> None:
    """Step moves, item additions and removals, messages (added, moved, re-timed, deleted)
    and agent toggles, straight into PostgreSQL at times scattered over two weeks (so
    quarter-hours and hours differ)."""
    rng = random.Random(seed)
    connection = await asyncpg.connect(dsn)
    try:
        for _ in range(rounds):
            at = now() - dt.timedelta(minutes=rng.uniform(0, 14 * 24 * 60))
            choice = rng.random()
            if choice < 0.35:
                await move_step(connection, rng.choice(leads), rng.choice(STEPS), at)
            elif choice < 0.55:
                table = rng.choice(("features", "integrations"))
                await connection.execute(
                    f"INSERT INTO {table} (requirements_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    rng.choice(requirements), rng.choice(NAMES))
            elif choice < 0.6:
                await connection.execute(
                    "DELETE FROM features WHERE id = (SELECT id FROM features WHERE requirements_id = $1 LIMIT 1)",
                    rng.choice(requirements))
            elif choice < 0.85:
                conversation_id = rng.choice(conversations)
                await factories.message(connection, conversation_id, "user", at)
                await factories.message(connection, conversation_id, "agent",
                                        at + dt.timedelta(seconds=rng.uniform(0.5, 30)))
            elif choice < 0.9:
                # A reply moved in time or given another delay (kept hour and second both move).
                await connection.execute(
                    "UPDATE messages SET created_at = $2, response_seconds = response_seconds + $3 "
                    "WHERE id = (SELECT id FROM messages WHERE role = 'agent' AND conversation_id = $1 "
                    "            ORDER BY created_at LIMIT 1)",
                    rng.choice(conversations), at, rng.uniform(-0.5, 3))
            elif choice < 0.95:
                await connection.execute(
                    "DELETE FROM messages WHERE id = (SELECT id FROM messages WHERE conversation_id = $1 "
                    "                                 ORDER BY created_at DESC LIMIT 1)",
                    rng.choice(conversations))
            elif rng.random() < 0.5:
                await connection.execute(
                    "INSERT INTO agent_status_changes (conversation_id, enabled, changed_at) VALUES ($1, $2, $3)",
                    rng.choice(conversations), rng.random() < 0.5, at)
            else:   # a salesperson's message: it may answer a hand-off (kept on the switch)
                await factories.message(connection, rng.choice(conversations), "human", at)
    finally:
        await connection.close()


async def daemon_writer(client: Client, seed: int, leads: list[uuid.UUID], requirements: list[uuid.UUID],
                        rounds: int) -> None:
    """The same kinds of change through wsd's own write actions."""
    rng = random.Random(seed)
    for _ in range(rounds):
        if rng.random() < 0.6:
            reply = await client.request("leads", "update_lead_step",
                                         {"lead_id": str(rng.choice(leads)), "new_step": rng.choice(STEPS)})
        else:
            reply = await client.request("requirements", "add_feature",
                                         {"requirements_id": str(rng.choice(requirements)),
                                          "name": rng.choice(NAMES)})
        assert reply["type"] == "success" or reply["payload"]["code"] == "conflict", reply


async def test_concurrent_writes_keep_every_aggregate_exact(admin: Client, db, postgres: str) -> None:
    base = now() - dt.timedelta(days=10)
    leads, conversations, requirements = [], [], []
    for i in range(12):
        conversation_id = await factories.conversation(db)
        path = [(step, base + dt.timedelta(hours=3 * n + i), "agent") for n, step in enumerate(STEPS[:1 + i % 6])]
        lead_id = await factories.lead(db, path, conversation_id=conversation_id)
        leads.append(lead_id)
        conversations.append(conversation_id)
        requirements.append(await db.fetchval(
            "INSERT INTO requirements (lead_id, app_type) VALUES ($1, 'web_app') RETURNING id", lead_id))

    await asyncio.gather(
        *(straight_sql_writer(postgres, seed, leads, conversations, requirements, rounds=60)
          for seed in range(4)),
        daemon_writer(admin, 99, leads, requirements, rounds=40))

    assert await differences(db, load_queries()) == []
    # And the answers the dashboard reads are the exact computations on the same rows.
    stats = await admin.data("leads", "get_conversion_stats")
    exact = {r["to_step"]: r["median_hours"] for r in await db.fetch(
        "SELECT t.step::text AS to_step, percentile_cont(0.5) WITHIN GROUP ("
        "  ORDER BY extract(epoch FROM b.entered_at - a.entered_at) / 3600) AS median_hours"
        "  FROM unnest(enum_range(NULL::lead_step)) AS t(step)"
        "  JOIN lead_step_entries AS b ON b.step = t.step"
        "  JOIN lead_step_entries AS a ON a.lead_id = b.lead_id AND a.step = previous_step(t.step)"
        " GROUP BY t.step")}
    for row in stats:
        if row["to_step"] in exact:
            assert abs(row["median_hours"] - exact[row["to_step"]]) < 1e-9
        else:
            assert row["median_hours"] is None
    for days in (7, 3):
        await assert_reply_percentiles_exact(admin, db, days)


async def assert_reply_percentiles_exact(admin: Client, db: asyncpg.Connection, days: int) -> None:
    """get_agent_performance's median and p90, both windows, bit-equal to percentile_cont over
    the same window's replies (the windows the reply names)."""
    performance = await admin.data("dashboard", "get_agent_performance", {"days": days})
    for period in (performance["current"], performance["previous"]):
        exact = await load_queries().aggregates.exact_reply_percentiles(
            db, since=dt.datetime.fromisoformat(period["since"]), until=dt.datetime.fromisoformat(period["until"]))
        replies = period["first_response_seconds"]
        assert (replies["median"], replies["p90"]) == (exact["median"], exact["p90"]), period


async def test_conversion_median_exact_across_hour_boundaries(admin: Client, db) -> None:
    """An even count takes the mean of the middle two, even when they fall in different hours
    of the kept histogram; a negative interval (a step entered before the one before it)
    counts too."""
    base = now() - dt.timedelta(days=3)
    for hours in (0.5, 1.25, 2.75, 9.0):
        await factories.lead(db, [("start", base, "agent"), ("consent", base + dt.timedelta(hours=hours), "agent")])
    await factories.lead(db, [("start", base, "agent"), ("personal_data", base + dt.timedelta(hours=1), "manual"),
                              ("consent", base + dt.timedelta(hours=3), "manual")])
    stats = {s["to_step"]: s["median_hours"] for s in await admin.data("leads", "get_conversion_stats")}
    assert stats["consent"] == 2.75                                  # 0.5 1.25 [2.75] 3 9
    assert stats["personal_data"] == -2.0                            # entered 2 h before consent
    await db.execute("DELETE FROM lead_step_entries WHERE step = 'consent' AND hours_from_previous = 3")
    stats = {s["to_step"]: s["median_hours"] for s in await admin.data("leads", "get_conversion_stats")}
    assert stats["consent"] == (1.25 + 2.75) / 2 and stats["personal_data"] is None
    assert await differences(db, load_queries()) == []


async def test_reply_percentiles_exact_across_seconds_hours_and_changes(admin: Client, db) -> None:
    """The median and p90 read through the kept per-hour, per-second counts equal
    percentile_cont: ranks interpolated across two different seconds, replies in partial
    hours at the window's ends and in whole hours, and after replies are deleted, re-timed
    and moved out of the window."""
    conversation_id = await factories.conversation(db)
    base = now() - dt.timedelta(days=2)
    replies = []
    # Delays 1.5 2.25 2.75 3 9 s; the last two in the window's first, partial hour.
    times = [base, base + dt.timedelta(hours=1), base + dt.timedelta(hours=5, minutes=7),
             now() - dt.timedelta(days=7) + dt.timedelta(minutes=1), now() - dt.timedelta(days=7, seconds=-40)]
    for at, delay in zip(times, (1.5, 2.25, 2.75, 3.0, 9.0)):
        await factories.message(db, conversation_id, "user", at)
        replies.append(await factories.message(db, conversation_id, "agent", at + dt.timedelta(seconds=delay)))
    current = (await admin.data("dashboard", "get_agent_performance"))["current"]["first_response_seconds"]
    assert current["count"] == 5
    assert current["median"] == 2.75                                   # 1.5 2.25 [2.75] 3 9
    assert current["p90"] == pytest.approx(3 + 0.6 * (9 - 3))         # position 3.6: seconds 3 and 9
    await assert_reply_percentiles_exact(admin, db, 7)

    await db.execute("DELETE FROM messages WHERE id = $1", replies[3])            # the 3 s reply
    await db.execute("UPDATE messages SET response_seconds = 2.5 WHERE id = $1", replies[0])
    current = (await admin.data("dashboard", "get_agent_performance"))["current"]["first_response_seconds"]
    assert current["median"] == pytest.approx((2.5 + 2.75) / 2)       # 2.25 [2.5 2.75] 9
    await assert_reply_percentiles_exact(admin, db, 7)

    await db.execute("UPDATE messages SET created_at = created_at - interval '3 days' WHERE id = $1", replies[4])
    performance = await admin.data("dashboard", "get_agent_performance")
    assert performance["current"]["first_response_seconds"]["p90"] == pytest.approx(2.5 + 0.8 * 0.25)
    assert performance["previous"]["first_response_seconds"]["median"] == 9.0
    await assert_reply_percentiles_exact(admin, db, 7)
    await assert_reply_percentiles_exact(admin, db, 1)
    assert await differences(db, load_queries()) == []


def verify(dsn: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_DATABASE_DSN": dsn}
    return subprocess.run([sys.executable, "-m", "wsd", "verify-aggregates"], env=env,
                          capture_output=True, text=True, timeout=120)


async def test_verify_aggregates_names_a_corrupted_kept_row(db, postgres: str) -> None:
    # A minute into an hour: the user message and the reply 5 s later share a quarter-hour.
    at = now().replace(minute=1, second=0, microsecond=0) - dt.timedelta(days=1)
    lead_id = await factories.lead(db, [("start", at, "agent"), ("consent", at + dt.timedelta(hours=2), "agent")])
    conversation_id = await factories.conversation(db)
    await factories.message(db, conversation_id, "user", at)
    await factories.message(db, conversation_id, "agent", at + dt.timedelta(seconds=5))
    await db.execute("INSERT INTO requirements (lead_id, app_type) VALUES ($1, 'web_app')", lead_id)
    done = verify(postgres)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "match" in done.stdout

    await db.execute("UPDATE activity_counts SET events = events + 1 WHERE kind = 'messages'")
    await db.execute("UPDATE step_interval_counts SET leads = 0 WHERE step = 'consent'")
    await db.execute("UPDATE row_counts SET n = 5 WHERE table_name = 'requirements'")
    await db.execute("UPDATE reply_delay_counts SET replies = replies + 1")
    done = verify(postgres)
    assert done.returncode == 1
    assert "activity_count [messages " in done.stdout and "kept 3 events" in done.stdout
    assert "step_interval_count [consent hour 2]: kept 0, recomputed 1" in done.stdout
    assert "requirement_item_name [row count requirements]: kept 5, recomputed 1" in done.stdout
    assert "conversion_stats median_hours [consent]: kept None, recomputed 2.0" in done.stdout
    assert " second 5]: kept 2, recomputed 1" in done.stdout
    assert "agent_performance median [" in done.stdout and "kept None, recomputed 5.0" in done.stdout
