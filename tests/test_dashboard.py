"""dashboard.*: each metric's definition checked on hand-built data with known answers."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests import factories
from tests.conftest import Client, open_client, start_daemon
from wsd.clock import hour_floor, local_day_bounds

STEPS = ["start", "consent", "personal_data", "bant", "requirements", "meeting", "completed"]
UTC = dt.timezone.utc
MADRID = ZoneInfo("Europe/Madrid")   # the test daemon's business.timezone
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def local(day: dt.date, hour: int, minute: int, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), zone).astimezone(UTC)


async def test_everything_is_zero_on_an_empty_database(admin: Client, db) -> None:
    assert await admin.data("dashboard", "get_dashboard_stats") == {
        "total_users": 0, "active_conversations": 0, "meetings_today": 0,
        "leads_by_step": {step: 0 for step in STEPS}}
    assert await admin.data("dashboard", "get_conversion_funnel") == [
        {"step": step, "reached": 0, "rate_from_previous": 0, "rate_from_start": 0} for step in STEPS]
    timeline = await admin.data("dashboard", "get_activity_timeline")
    assert len(timeline["buckets"]) == 24 and timeline["recent"] == []
    assert all(sum(v for k, v in b.items() if k != "hour") == 0 for b in timeline["buckets"])
    performance = await admin.data("dashboard", "get_agent_performance")
    for period in ("current", "previous"):
        numbers = performance[period]
        assert (numbers["conversations_handled"], numbers["handoffs"], numbers["agent_messages"],
                numbers["meetings_booked"], numbers["completion_rate"], numbers["handled_leads"]) == (0, 0, 0, 0, 0, 0)
        assert numbers["first_response_seconds"] == {"count": 0, "average": None, "median": None, "p90": None}
        assert numbers["leads_advanced"] == 0


async def test_dashboard_stats_counts_by_definition(admin: Client, db) -> None:
    open_recent = await factories.conversation(db)
    await factories.message(db, open_recent, "user", now() - HOUR)
    closed_recent = await factories.conversation(db, status="closed")
    await factories.message(db, closed_recent, "user", now() - HOUR)
    open_old = await factories.conversation(db)
    await factories.message(db, open_old, "user", now() - 25 * HOUR)
    lead_id = await factories.lead(db, [("start", now() - DAY, "agent"), ("consent", now(), "agent")])
    user_id = await db.fetchval("SELECT user_id FROM lead_qualifications WHERE id = $1", lead_id)
    today = dt.datetime.now(MADRID).date()
    counted = [local(today, 0, 30, MADRID), local(today, 23, 30, MADRID)]   # 00:30 local is yesterday in UTC
    not_counted = [local(today - DAY, 23, 30, MADRID), local(today + DAY, 0, 30, MADRID)]
    for start in counted + not_counted:
        await factories.meeting(db, lead_id, user_id, start, minutes=20)
    await factories.meeting(db, lead_id, user_id, local(today, 12, 0, MADRID), status="cancelled")
    stats = await admin.data("dashboard", "get_dashboard_stats")
    assert stats == {"total_users": 4, "active_conversations": 1, "meetings_today": 2,
                     "leads_by_step": {**{step: 0 for step in STEPS}, "consent": 1}}


def zone_where_today_is_not_utc_today() -> ZoneInfo:
    """Kiritimati (UTC+14) is already tomorrow from 10:00 UTC; Pago Pago (UTC−11) is still
    yesterday before 11:00 UTC."""
    return ZoneInfo("Pacific/Kiritimati" if now().hour >= 10 else "Pacific/Pago_Pago")


async def test_meetings_today_uses_the_business_time_zone(postgres, db, tmp_path: Path) -> None:
    zone = zone_where_today_is_not_utc_today()
    local_today, utc_today = dt.datetime.now(zone).date(), now().date()
    assert local_today != utc_today
    lead_id = await factories.lead(db, [("start", now(), "agent")])
    user_id = await db.fetchval("SELECT user_id FROM lead_qualifications WHERE id = $1", lead_id)
    await factories.meeting(db, lead_id, user_id, local(local_today, 12, 0, zone))   # local today
    # A meeting on UTC's today that falls on another local date: a UTC count would take it.
    on_utc_today = next(at for at in (dt.datetime.combine(utc_today, dt.time(h), UTC) for h in range(24))
                        if at.astimezone(zone).date() != local_today)
    await factories.meeting(db, lead_id, user_id, on_utc_today, minutes=30)
    daemon = start_daemon(tmp_path, postgres, timezone=zone.key)
    try:
        async with open_client(daemon.url) as connection:
            stats = await Client(connection).data("dashboard", "get_dashboard_stats")
    finally:
        daemon.stop()
    assert stats["meetings_today"] == 1


async def test_local_day_bounds_on_daylight_saving_days() -> None:
    spring_start, spring_end = local_day_bounds(dt.date(2026, 3, 29), MADRID)
    assert (spring_start.isoformat(), (spring_end - spring_start)) == ("2026-03-28T23:00:00+00:00", 23 * HOUR)
    autumn_start, autumn_end = local_day_bounds(dt.date(2026, 10, 25), MADRID)
    assert (autumn_start.isoformat(), (autumn_end - autumn_start)) == ("2026-10-24T22:00:00+00:00", 25 * HOUR)


async def test_funnel_counts_the_furthest_step_reached(admin: Client, db) -> None:
    t = now() - 10 * DAY
    await factories.lead(db, [("start", t, "agent"), ("consent", t + HOUR, "agent"),
                              ("personal_data", t + 2 * HOUR, "agent"), ("bant", t + 3 * HOUR, "agent"),
                              ("consent", t + 4 * HOUR, "manual")])           # moved back by hand
    await factories.lead(db, [("start", t, "agent"), ("consent", t + HOUR, "agent")])
    await factories.lead(db, [("start", t, "agent")])
    await factories.lead(db, [("start", t, "agent")])
    funnel = await admin.data("dashboard", "get_conversion_funnel")
    assert [(f["step"], f["reached"], round(f["rate_from_previous"], 4), round(f["rate_from_start"], 4))
            for f in funnel] == [
        ("start", 4, 1.0, 1.0), ("consent", 2, 0.5, 0.5), ("personal_data", 1, 0.5, 0.25),
        ("bant", 1, 1.0, 0.25), ("requirements", 0, 0.0, 0.0), ("meeting", 0, 0, 0.0),
        ("completed", 0, 0, 0.0)]
    stats = await admin.data("dashboard", "get_dashboard_stats")
    assert stats["leads_by_step"]["consent"] == 2 and stats["leads_by_step"]["bant"] == 0


async def wait_clear_of_an_hour_boundary() -> None:
    """Buckets move on the hour; a test placing events on bucket edges must not straddle it."""
    current = now()
    if current.minute == 59 and current.second >= 50:
        await asyncio.sleep(61 - current.second)


async def test_activity_timeline_buckets_on_hour_boundaries(admin: Client, db) -> None:
    await wait_clear_of_an_hour_boundary()
    window_start = hour_floor(now(), MADRID) - 23 * HOUR
    conversation_id = await factories.conversation(db)
    tiny = dt.timedelta(microseconds=1)
    for at in (window_start - tiny,                       # before the window: not counted
               window_start,                              # first bucket
               window_start + 5 * HOUR - tiny,            # still bucket 4
               window_start + 5 * HOUR,                   # bucket 5
               window_start + 5 * HOUR + 30 * dt.timedelta(minutes=1)):
        await factories.message(db, conversation_id, "user", at)
    lead_id = await factories.lead(db, [("start", window_start + 2 * HOUR, "agent"),
                                        ("consent", window_start + 3 * HOUR, "agent")])
    user_id = await db.fetchval("SELECT user_id FROM lead_qualifications WHERE id = $1", lead_id)
    meeting_id = await factories.meeting(db, lead_id, user_id, now() + DAY)
    await admin.data("conversations", "update_agent_status",
                     {"conversation_id": str(conversation_id), "enabled": False})
    timeline = await admin.data("dashboard", "get_activity_timeline")
    buckets = timeline["buckets"]
    assert [dt.datetime.fromisoformat(b["hour"]) for b in buckets] == [
        window_start + i * HOUR for i in range(24)]
    def column(name: str) -> dict[int, int]:
        return {i: b[name] for i, b in enumerate(buckets) if b[name]}
    assert column("messages") == {0: 1, 4: 1, 5: 2}
    assert column("new_leads") == {2: 1}
    assert column("step_changes") == {3: 1}
    assert column("meetings_created") == {23: 1} and column("agent_toggles") == {23: 1}
    recent = timeline["recent"]
    assert [e["kind"] for e in recent[:2]] == ["agent_toggle", "meeting_created"]
    assert recent[0]["ids"] == {"conversation_id": str(conversation_id), "enabled": False}
    assert recent[1]["ids"] == {"meeting_id": str(meeting_id), "lead_id": str(lead_id)}
    assert sorted(e["kind"] for e in recent) == sorted(
        ["agent_toggle", "meeting_created", "new_lead", "step_change"] + ["message"] * 4)


async def test_agent_performance_on_known_reply_delays(admin: Client, db) -> None:
    base = now() - 2 * DAY
    lead_id = await factories.lead(db, [("start", base, "agent"), ("consent", base + HOUR, "agent"),
                                        ("personal_data", base + 2 * HOUR, "agent"),
                                        ("consent", base + 3 * HOUR, "manual")])
    conversation_id = await factories.conversation(db)
    await db.execute("UPDATE lead_qualifications SET conversation_id = $1 WHERE id = $2",
                     conversation_id, lead_id)
    for i, delay in enumerate(range(1, 11)):                    # replies after 1..10 s
        asked = base + i * dt.timedelta(minutes=10)
        await factories.message(db, conversation_id, "user", asked)
        await factories.message(db, conversation_id, "agent", asked + dt.timedelta(seconds=delay))
    # A reply after a human's message is not a first response to the user.
    later = base + 3 * HOUR
    await factories.message(db, conversation_id, "user", later)
    await factories.message(db, conversation_id, "human", later + dt.timedelta(seconds=30))
    await factories.message(db, conversation_id, "agent", later + dt.timedelta(seconds=40))
    for enabled, at in ((False, base), (True, base + HOUR), (False, base + 2 * HOUR)):
        await db.execute("INSERT INTO agent_status_changes (conversation_id, enabled, changed_at) "
                         "VALUES ($1, $2, $3)", conversation_id, enabled, at)
    user_id = await db.fetchval("SELECT user_id FROM lead_qualifications WHERE id = $1", lead_id)
    await factories.meeting(db, lead_id, user_id, now() + DAY)
    # A lead the agent never wrote to, and an agent conversation in the previous week.
    await factories.lead(db, [("start", base, "agent"), ("consent", base + HOUR, "manual")])
    old_conversation = await factories.conversation(db)
    week_before = now() - 10 * DAY
    await factories.message(db, old_conversation, "user", week_before)
    await factories.message(db, old_conversation, "agent", week_before + dt.timedelta(seconds=4))

    performance = await admin.data("dashboard", "get_agent_performance")
    current, previous = performance["current"], performance["previous"]
    assert performance["days"] == 7
    assert (current["conversations_handled"], current["agent_messages"], current["handoffs"]) == (1, 11, 2)
    replies = current["first_response_seconds"]
    assert replies["count"] == 10
    assert replies["average"] == pytest.approx(5.5)
    assert replies["median"] == pytest.approx(5.5)
    assert replies["p90"] == pytest.approx(9.1)          # continuous: 9 + 0.1 × (10 − 9)
    assert current["leads_advanced"] == 2            # consent, personal_data; not the manual move
    assert (current["meetings_booked"], current["handled_leads"], current["completion_rate"]) == (1, 1, 0)
    assert (previous["conversations_handled"], previous["agent_messages"]) == (1, 1)
    assert previous["first_response_seconds"]["median"] == pytest.approx(4)
    assert dt.datetime.fromisoformat(previous["until"]) == dt.datetime.fromisoformat(current["since"])
    short = await admin.data("dashboard", "get_agent_performance", {"days": 1})
    assert short["current"]["agent_messages"] == 0 and short["previous"]["agent_messages"] == 11
    for days in (0, 91, "7", None):
        error = await admin.error("dashboard", "get_agent_performance", {"days": days})
        assert error["code"] == "invalid_payload" and error["details"]["field"] == "days"


async def test_real_time_metrics(admin: Client, db) -> None:
    conversation_id = await factories.conversation(db)
    await factories.message(db, conversation_id, "user", now() - dt.timedelta(minutes=1))
    await factories.message(db, conversation_id, "user", now() - dt.timedelta(minutes=6))
    await factories.lead(db, [("start", now(), "agent")])
    for _ in range(5):
        await admin.error("nothing", "here")
        await admin.data("dashboard", "get_dashboard_stats")
    metrics = await admin.data("dashboard", "get_real_time_metrics")
    assert metrics["connections"] >= 1
    assert metrics["requests_last_minute"] >= 5
    assert metrics["requests_per_second"] == pytest.approx(metrics["requests_last_minute"] / 60, abs=0.001)
    assert 0 < metrics["p50_ms"] <= metrics["p95_ms"] < 5000
    assert (metrics["messages_last_5_minutes"], metrics["new_leads_last_5_minutes"]) == (1, 1)
    assert metrics["pool"]["max"] == 5 and 1 <= metrics["pool"]["size"] <= 5
    assert 0 <= metrics["pool"]["idle"] <= metrics["pool"]["size"]
    assert metrics["uptime_seconds"] > 0 and metrics["outlook"] is None
    # docs/protocol.md names every figure the reply carries, nested ones included.
    import re
    from tests.conftest import ROOT
    text = (ROOT / "docs" / "protocol.md").read_text()
    documented = text[text.index("- Real-time metrics:"):text.index("Caching: the four aggregates")]
    words = set(re.findall(r"[a-z_0-9]+", documented))
    assert set(metrics) <= words, set(metrics) - words
    for key in ("pool", "cache", "live"):
        assert set(metrics[key]) <= words, (key, set(metrics[key]) - words)
    assert isinstance(metrics["slow_clients_dropped"], int) and set(metrics["live"]) == {
        "queries", "subscriptions", "reruns", "reruns_delayed", "updates_sent"}
    assert metrics["instance"].rsplit(":", 1)[1].isdigit()


async def test_cache_single_flight_ttl_and_invalidation(postgres, db, tmp_path: Path) -> None:
    lead_id = await factories.lead(db, [("start", now(), "agent")])
    daemon = start_daemon(tmp_path, postgres, cache_ttl=60.0, max_inflight_per_connection=100)
    try:
        async with open_client(daemon.url) as connection:
            client = Client(connection)
            before = (await client.data("dashboard", "get_real_time_metrics"))["cache"]
            sent = [await client.send("dashboard", "get_dashboard_stats") for _ in range(100)]
            replies = [await client.reply_to(request_id) for request_id in sent]
            assert all(r["payload"]["data"]["leads_by_step"]["start"] == 1 for r in replies)
            after = (await client.data("dashboard", "get_real_time_metrics"))["cache"]
            assert after["computed"] - before["computed"] == 1          # the SQL ran once
            assert (after["hits"] + after["joined"]) - (before["hits"] + before["joined"]) == 99

            # A write to a topic the answer does not depend on keeps the cached answer.
            computed = after["computed"]
            await factories.requirements(db, lead_id)
            await asyncio.sleep(0.3)
            assert (await client.data("dashboard", "get_dashboard_stats"))["leads_by_step"]["start"] == 1
            metrics = (await client.data("dashboard", "get_real_time_metrics"))["cache"]
            assert metrics["computed"] == computed
            # A write through wsd is visible on the very next request.
            await client.data("leads", "update_lead_step", {"lead_id": str(lead_id), "new_step": "bant"})
            stats = await client.data("dashboard", "get_dashboard_stats")
            assert (stats["leads_by_step"]["start"], stats["leads_by_step"]["bant"]) == (0, 1)
            # A write straight into PostgreSQL (the AI agent's) raises its topic by trigger,
            # which drops the cached answer too.
            await factories.lead(db, [("start", now(), "agent")])
            deadline = time.monotonic() + 5
            while (await client.data("dashboard", "get_dashboard_stats"))["leads_by_step"]["start"] != 1:
                assert time.monotonic() < deadline, "the notification did not drop the cache"
                await asyncio.sleep(0.05)
    finally:
        daemon.stop()


async def test_a_conversation_counts_as_handled_in_the_period_the_agent_took_it_on(admin: Client, db) -> None:
    conversation_id = await factories.conversation(db)
    for days_ago in (10, 1):                 # taken on in the previous week, still going this week
        asked = now() - days_ago * DAY
        await factories.message(db, conversation_id, "user", asked)
        await factories.message(db, conversation_id, "agent", asked + dt.timedelta(seconds=2))
    performance = await admin.data("dashboard", "get_agent_performance")
    assert (performance["current"]["conversations_handled"], performance["current"]["agent_messages"]) == (0, 1)
    assert (performance["previous"]["conversations_handled"], performance["previous"]["agent_messages"]) == (1, 1)
