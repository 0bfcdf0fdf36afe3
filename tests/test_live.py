"""Live queries: subscribe to a read action, get its new answer pushed when it changes."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests import factories
from tests.conftest import Client, open_client, start_daemon
from tests.test_meetings import at, booking, lead_at, next_weekday
from tests.test_reliability import eventually, stalled_client
from wsd.topics import TABLE_TOPICS

UTC = dt.timezone.utc


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


async def subscribe(client: Client, resource: str, action: str, payload: Any = None) -> dict[str, Any]:
    """Subscribes and returns {"subscription", "data", ...}; fails the test on an error."""
    return await client.data("live", "subscribe", {"resource": resource, "action": action,
                                                   **({"payload": payload} if payload is not None else {})})


async def settle(client: Client, seconds: float = 0.6) -> None:
    """Reads whatever arrives for `seconds` (updates land in client.updates)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await client.next_reply(seconds)
    except TimeoutError:
        pass


async def next_update(client: Client, subscription: str, timeout: float = 1.0) -> dict[str, Any]:
    """The next update of `subscription`, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for update in client.updates:
            if update["subscription"] == subscription:
                client.updates.remove(update)
                return update["payload"]
        left = deadline - time.monotonic()
        assert left > 0, f"no update of {subscription} within {timeout} s"
        try:
            await client.next_reply(left)
        except TimeoutError:
            pass


async def update_where(client: Client, subscription: str, check: Any, timeout: float = 1.0) -> dict[str, Any]:
    """The first update of `subscription` within `timeout` whose data passes `check` (a
    direct SQL write of several statements may push an answer per statement on the way)."""
    deadline = time.monotonic() + timeout
    while True:
        update = await next_update(client, subscription, max(0.01, deadline - time.monotonic()))
        if check(update["data"]):
            return update


def timeless(answer: Any) -> Any:
    """An answer without the `since`/`until` of windows that end now, for comparing two calls."""
    if isinstance(answer, dict):
        return {k: timeless(v) for k, v in answer.items() if k not in ("since", "until")}
    if isinstance(answer, list):
        return [timeless(v) for v in answer]
    return answer


async def test_a_write_through_wsd_pushes_the_new_stats(admin: Client, db, daemon) -> None:
    lead_id = await factories.lead(db, [("start", now(), "agent")])
    first = await subscribe(admin, "dashboard", "get_dashboard_stats")
    assert first["data"] == await admin.data("dashboard", "get_dashboard_stats")
    assert first["data"]["leads_by_step"]["start"] == 1
    await settle(admin)
    admin.updates.clear()
    async with open_client(daemon.url) as other:
        await Client(other).data("leads", "update_lead_step", {"lead_id": str(lead_id), "new_step": "bant"})
    update = await next_update(admin, first["subscription"])
    assert update["data"]["leads_by_step"]["start"] == 0 and update["data"]["leads_by_step"]["bant"] == 1


async def test_changes_hints_only_to_a_connection_that_asked(admin: Client, viewer: Client, db) -> None:
    """`changes` hints are opt-in (live.hints): a client that did not ask reads no hint frame,
    however much the data moves; `enabled: false` turns them off again."""
    assert await viewer.data("live", "hints") == {"hints": True}
    error = await admin.error("live", "hints", {"enabled": "yes"})
    assert (error["code"], error["details"]["field"]) == ("invalid_payload", "enabled")
    await settle(admin)
    await settle(viewer)
    admin.events.clear()
    viewer.events.clear()
    hint = {"type": "event", "topic": "changes", "payload": {"topic": "leads"}}
    await factories.lead(db, [("start", now(), "agent")])

    async def hinted() -> bool:
        await settle(viewer, 0.2)
        return hint in viewer.events
    await eventually(hinted, 5)
    await settle(admin)
    assert [e for e in admin.events if e["topic"] == "changes"] == []
    assert await viewer.data("live", "hints", {"enabled": False}) == {"hints": False}
    await settle(viewer)
    viewer.events.clear()
    await factories.lead(db, [("start", now(), "agent")])
    await settle(viewer, 1.0)
    assert [e for e in viewer.events if e["topic"] == "changes"] == []


async def test_a_plain_sql_write_pushes_the_new_stats(admin: Client, db) -> None:
    first = await subscribe(admin, "dashboard", "get_dashboard_stats")
    await settle(admin)
    admin.updates.clear()
    await factories.lead(db, [("start", now(), "agent")])   # the AI agent's way: straight SQL
    expected = first["data"]["leads_by_step"]["start"] + 1
    update = await update_where(admin, first["subscription"],
                                lambda data: data["leads_by_step"]["start"] == expected)
    assert update["data"]["total_users"] == first["data"]["total_users"] + 1


async def test_an_unchanged_answer_pushes_nothing_and_unsubscribe_stops_pushes(admin: Client, db) -> None:
    user_id = await factories.user(db)
    first = await subscribe(admin, "dashboard", "get_dashboard_stats")
    await settle(admin)
    reruns = (await admin.data("dashboard", "get_real_time_metrics"))["live"]["reruns"]
    await db.execute("UPDATE users SET phone = '+34 600 000 000' WHERE id = $1", user_id)  # topic users
    await eventually(lambda: _reruns(admin, reruns + 1), 3)
    await settle(admin)
    assert [u for u in admin.updates if u["subscription"] == first["subscription"]] == []
    assert await admin.data("live", "unsubscribe", {"subscription": first["subscription"]}) == {
        "subscription": first["subscription"]}
    await factories.user(db)
    await settle(admin, 1.0)
    assert [u for u in admin.updates if u["subscription"] == first["subscription"]] == []
    error = await admin.error("live", "unsubscribe", {"subscription": first["subscription"]})
    assert error["code"] == "not_found"


async def _reruns(client: Client, at_least: int) -> bool:
    return (await client.data("dashboard", "get_real_time_metrics"))["live"]["reruns"] >= at_least


async def test_a_burst_of_writes_is_a_few_reruns_and_the_final_state(admin: Client, db) -> None:
    first = await subscribe(admin, "leads", "get_lead_pipeline")
    await settle(admin)
    before = (await admin.data("dashboard", "get_real_time_metrics"))["live"]["reruns"]
    started = time.monotonic()
    for _ in range(1000):
        await db.execute("INSERT INTO users (full_name, email) VALUES ('Burst', gen_random_uuid() || '@burst.example')")
        await db.execute("INSERT INTO lead_qualifications (user_id) SELECT id FROM users "
                         "WHERE full_name = 'Burst' ORDER BY created_at DESC, id LIMIT 1")
    burst_seconds = time.monotonic() - started
    await settle(admin, 1.0)
    reruns = (await admin.data("dashboard", "get_real_time_metrics"))["live"]["reruns"] - before
    # At most one re-run per 200 ms while the burst lasted, plus the trailing one.
    assert 1 <= reruns <= burst_seconds / 0.2 + 3, (reruns, burst_seconds)
    mine = [u for u in admin.updates if u["subscription"] == first["subscription"]]
    assert mine and len(mine) <= reruns
    start = next(column for column in mine[-1]["payload"]["data"] if column["step"] == "start")
    assert start["count"] == 1000


async def test_what_a_subscription_accepts_and_refuses(admin: Client, viewer: Client, db, daemon) -> None:
    lead_id = await factories.lead(db, [("start", now(), "agent")])
    for _ in range(2):
        await factories.lead(db, [("start", now(), "agent")])
    # The same errors as a direct call.
    for client in (admin, viewer):
        assert (await client.error("live", "subscribe", {"resource": "leads", "action": "nope"}))["code"] == \
            "unknown_action"
        bad = {"resource": "leads", "action": "get_lead_with_complete_data", "payload": {"lead_id": "x"}}
        direct = await client.error("leads", "get_lead_with_complete_data", {"lead_id": "x"})
        assert await client.error("live", "subscribe", bad) == direct
    # A write action is refused, for admins and viewers alike.
    write = {"resource": "leads", "action": "update_lead_step",
             "payload": {"lead_id": str(lead_id), "new_step": "bant"}}
    for client in (admin, viewer):
        error = await client.error("live", "subscribe", write)
        assert error["code"] == "invalid_payload" and error["details"]["field"] == "action"
    assert (await admin.error("live", "subscribe", {"resource": "leads"}))["code"] == "invalid_payload"
    assert (await admin.error("live", "resubscribe", {}))["code"] == "unknown_action"
    # Not logged in: nothing.
    async with open_client(daemon.url, token=None) as anonymous:
        error = await Client(anonymous).error("live", "subscribe", {"resource": "dashboard",
                                                                    "action": "get_dashboard_stats"})
        assert error["code"] == "unauthorized"
    # A paged action subscribes to the page its payload names.
    page = await subscribe(viewer, "leads", "get_all_leads", {"limit": 2})
    direct = await viewer.request("leads", "get_all_leads", {"limit": 2})
    assert page["data"] == direct["payload"]["data"] and page["next_cursor"] == direct["payload"]["next_cursor"]
    assert len(page["data"]) == 2 and page["next_cursor"] is not None
    # The limit per connection.
    for _ in range(99):
        await subscribe(viewer, "leads", "get_lead_pipeline")
    error = await viewer.error("live", "subscribe", {"resource": "leads", "action": "get_lead_pipeline"})
    assert error["code"] == "rate_limited" and error["details"] == {"limit": 100}


async def test_the_listener_terminated_then_the_missed_change_arrives(admin: Client, db, daemon) -> None:
    first = await subscribe(admin, "leads", "get_lead_pipeline")
    await settle(admin)
    admin.updates.clear()
    pid = await db.fetchval("SELECT pid FROM pg_stat_activity WHERE application_name = 'wsd-listener' "
                            "AND datname = current_database()")
    await db.execute("SELECT pg_terminate_backend($1)", pid)
    await factories.lead(db, [("start", now(), "agent")])   # while nobody listens
    update = await next_update(admin, first["subscription"], 10)
    start = next(column for column in update["data"] if column["step"] == "start")
    assert start["count"] == 1


async def test_a_stalled_subscriber_does_not_delay_others(postgres, db, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres, send_timeout_seconds=3.0)
    try:
        for _ in range(400):  # a page of ~300 KB: a few updates overflow the kernel's buffers
            await factories.lead(db, [("start", now(), "agent")], company="X" * 200)
        stalled = await stalled_client(daemon.url)
        await stalled.send('{"resource":"live","action":"subscribe","id":1,'
                           '"payload":{"resource":"leads","action":"get_all_leads","payload":{"limit":1000}}}')
        async with open_client(daemon.url) as connection:
            healthy = Client(connection)
            first = await subscribe(healthy, "dashboard", "get_dashboard_stats")
            await asyncio.sleep(0.5)
            rss_before = daemon.rss_kib()
            for added in range(1, 21):
                await factories.lead(db, [("start", now(), "agent")], company="Y" * 200)
                expected = first["data"]["leads_by_step"]["start"] + added
                await update_where(healthy, first["subscription"],
                                   lambda data: data["leads_by_step"]["start"] == expected, 2.0)
            assert daemon.rss_kib() - rss_before < 10 * 1024
        await eventually(lambda: "slow client dropped" in daemon.log(), 10)
        await stalled.close()
    finally:
        daemon.stop()


# -- every write raises every topic whose answers it changes --------------------------------------

async def _reads(lead_id: uuid.UUID, day: dt.date) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Every read action (bar the per-process runtime metrics), with a payload that shows
    the hand-built lead."""
    return {
        "stats": ("dashboard", "get_dashboard_stats", {}),
        "funnel": ("dashboard", "get_conversion_funnel", {}),
        "timeline": ("dashboard", "get_activity_timeline", {}),
        "performance": ("dashboard", "get_agent_performance", {}),
        "all_leads": ("leads", "get_all_leads", {}),
        "pipeline": ("leads", "get_lead_pipeline", {}),
        "lead": ("leads", "get_lead_with_complete_data", {"lead_id": str(lead_id)}),
        "conversion": ("leads", "get_conversion_stats", {}),
        "abandoned": ("leads", "get_abandoned_leads", {"days": 1}),
        "requirements": ("requirements", "get_requirements_by_lead", {"lead_id": str(lead_id)}),
        "popular_features": ("requirements", "get_popular_features", {}),
        "popular_integrations": ("requirements", "get_popular_integrations", {}),
        "meetings": ("meetings", "get_all_meetings", {}),
        "calendar": ("meetings", "get_calendar_view", {"start_date": day.isoformat(),
                                                       "end_date": (day + dt.timedelta(days=1)).isoformat()}),
        "slots": ("meetings", "get_available_slots", {"date": day.isoformat(), "duration": 60}),
    }


async def test_every_write_pushes_every_answer_it_changes(admin: Client, db, daemon) -> None:
    lead_id, user_id = await lead_at(db, "requirements")
    conversation_id = await factories.conversation(db, user_id)
    await db.execute("UPDATE lead_qualifications SET conversation_id = $1 WHERE id = $2", conversation_id, lead_id)
    old = now() - dt.timedelta(days=3)
    await db.execute("UPDATE lead_qualifications SET last_activity_at = $1 WHERE id = $2", old, lead_id)
    day = next_weekday()
    reads = await _reads(lead_id, day)
    subscriptions = {name: (await subscribe(admin, *read))["subscription"] for name, read in reads.items()}
    writes: list[tuple[str, str, Any]] = [
        ("conversations", "update_agent_status", {"conversation_id": str(conversation_id), "enabled": False}),
        ("leads", "update_lead_step", {"lead_id": str(lead_id), "new_step": "bant"}),
        ("requirements", "create_requirement_package", {"lead_qualification_id": str(lead_id),
                                                        "app_type": "web_app", "features": [{"name": "Chat"}]}),
        ("requirements", "update_requirements", lambda made: {"requirements_id": made["requirements"]["id"],
                                                              "app_type": "mobile_app"}),
        ("requirements", "add_feature", lambda made: {"requirements_id": made["requirements"]["id"], "name": "Pagos"}),
        ("requirements", "add_integration", lambda made: {"requirements_id": made["requirements"]["id"],
                                                          "name": "Stripe"}),
        ("meetings", "create_meeting", booking(lead_id, user_id, at(day, 10))),
        ("meetings", "update_meeting", lambda made: {"meeting_id": made["meeting"]["id"],
                                                     "start_time": at(day, 12).isoformat(),
                                                     "end_time": at(day, 13).isoformat()}),
        ("meetings", "cancel_meeting", lambda made: {"meeting_id": made["meeting"]["id"]}),
    ]
    made: dict[str, Any] = {}
    await settle(admin)
    for resource, action, payload in writes:
        before = {name: await admin.data(*read) for name, read in reads.items()}
        admin.updates.clear()
        result = await admin.data(resource, action, payload(made) if callable(payload) else payload)
        if action == "create_requirement_package":
            made["requirements"] = result
        if action == "create_meeting":
            made["meeting"] = result
        await settle(admin, 0.8)
        after = {name: await admin.data(*read) for name, read in reads.items()}
        changed = {name for name in reads if timeless(before[name]) != timeless(after[name])}
        assert changed, f"{action} changed no answer"
        await settle(admin, 0.5)
        pushed = {}
        for update in admin.updates:
            pushed[update["subscription"]] = update["payload"]["data"]
        for name in changed:
            assert subscriptions[name] in pushed, f"{action} changed {name} but pushed nothing"
            assert timeless(pushed[subscriptions[name]]) == timeless(after[name]), \
                f"{action}: {name} pushed a stale answer"
    assert "lead" in changed and "slots" in changed  # the last write (cancel) frees the slot again


async def test_every_table_raises_the_topic_the_code_declares(db) -> None:
    rows = await db.fetch("SELECT c.relname, t.tgname, encode(t.tgargs, 'escape') AS topic FROM pg_trigger AS t "
                          "JOIN pg_class AS c ON c.oid = t.tgrelid WHERE t.tgname LIKE '%\\_topic'")
    installed: dict[str, set[str]] = {}
    for row in rows:
        installed.setdefault(row["relname"], set()).add(row["topic"].rstrip("\\000"))
    assert installed == {table: {topic} for table, topic in TABLE_TOPICS.items()}
    assert len(rows) == 4 * len(TABLE_TOPICS)   # insert, update, delete, truncate
