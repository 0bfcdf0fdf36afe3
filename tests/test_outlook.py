"""meetings.* against a fake Microsoft Graph: exact requests, faults, recovery and delta sync."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any, AsyncIterator

import pytest

from tests.conftest import Client, open_client, start_daemon
from tests.fake_graph import CLIENT_ID, CLIENT_SECRET, MAILBOX, TENANT, FakeGraph
from tests.test_meetings import at, booking, lead_at, next_weekday

HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
UTC = dt.timezone.utc


def outlook_settings(fake: FakeGraph) -> dict[str, Any]:
    return {"enabled": True, "tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "mailbox": MAILBOX, "graph_url": f"{fake.base_url}/v1.0", "login_url": fake.base_url,
            "timeout_seconds": 1.0, "retry_seconds": 0.2, "max_attempts": 3}


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeGraph]:
    graph = FakeGraph(page_size=2)
    await graph.start()
    yield graph
    await graph.stop()


@pytest.fixture(scope="module")
def outlook_daemon(postgres, fake, tmp_path_factory) -> Any:
    daemon = start_daemon(tmp_path_factory.mktemp("outlook"), postgres, outlook=outlook_settings(fake))
    yield daemon
    daemon.stop()


@pytest.fixture
async def client(outlook_daemon, fake, db) -> AsyncIterator[Client]:
    fake.reset()
    async with open_client(outlook_daemon.url) as connection:
        yield Client(connection)


async def eventually(check, seconds: float = 10) -> Any:
    """Polls `check` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def stored(db, meeting_id: str) -> dict:
    return dict(await db.fetchrow("SELECT * FROM meetings WHERE id = $1", uuid.UUID(meeting_id)))


async def synced(db, meeting_id: str) -> bool:
    return bool((await stored(db, meeting_id))["sync_status"] == "synced")


async def booked_while_graph_is_down(url: str, graph: FakeGraph, db, start: dt.datetime) -> str:
    """A meeting booked through the daemon at `url` while Graph answers 503: it stays pending
    for a worker. Graph is left down; the caller says when it comes back."""
    lead_id, user_id = await lead_at(db, "bant")
    graph.down = True
    async with open_client(url) as connection:
        meeting = await Client(connection).data("meetings", "create_meeting",
                                                booking(lead_id, user_id, start))
    assert meeting["sync_status"] == "pending"
    return str(meeting["id"])


async def test_create_sends_the_exact_event_and_syncs(client: Client, fake: FakeGraph, db) -> None:
    fake.expire_tokens()          # so this test sees the token request too
    lead_id, user_id = await lead_at(db, "bant")
    start = at(next_weekday(), 10)
    meeting = await client.data("meetings", "create_meeting", booking(lead_id, user_id, start))
    assert meeting["sync_status"] == "synced"
    [event] = fake.events.values()
    assert meeting["outlook_event_id"] == event.id
    [create] = fake.calls("POST", "/events")
    assert create["path"] == f"/v1.0/users/{MAILBOX}/events"
    assert create["json"] == {
        "subject": "Reunión de seguimiento",
        "body": {"contentType": "text",
                 "content": f"Reunión con cliente@empresa.com (wsd meeting {meeting['id']})"},
        "start": {"dateTime": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": (start + HOUR).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "attendees": [{"emailAddress": {"address": "cliente@empresa.com"}, "type": "required"}],
        "transactionId": meeting["id"],
    }
    assert create["headers"]["Authorization"].startswith("Bearer ")
    assert fake.token_requests == [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                    "scope": "https://graph.microsoft.com/.default",
                                    "grant_type": "client_credentials"}]
    row = await stored(db, meeting["id"])
    assert (row["sync_status"], row["sync_version"], row["synced_version"], row["outlook_change_key"]) == (
        "synced", 1, 1, event.change_key)


async def test_throttled_create_is_retried_into_one_event(client: Client, fake: FakeGraph, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    fake.fail_next(1, "429", retry_after="0.3")
    started = time.monotonic()
    meeting = await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(next_weekday(), 11)))
    assert meeting["sync_status"] == "synced" and time.monotonic() - started >= 0.3
    assert len(fake.calls("POST", "/events")) == 2 and len(fake.events) == 1


@pytest.mark.parametrize("fault", ["timeout", "drop", "503"])
async def test_a_lost_or_failed_call_is_retried_without_a_duplicate(client: Client, fake: FakeGraph, db, fault) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    fake.fail_next(1, fault, retry_after="0.05" if fault == "503" else None)
    meeting = await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(next_weekday(), 12)))
    assert meeting["sync_status"] == "synced"
    assert len(fake.events) == 1 and len(fake.calls("POST", "/events")) == 2


async def test_graph_down_leaves_pending_then_the_worker_syncs_once(client: Client, fake: FakeGraph, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    fake.down = True
    meeting = await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(next_weekday(), 13)))
    # Graph back at once, before anything else is awaited: the worker's retries (0.2 s, then
    # doubling, 3 attempts) must not run out first on a loaded machine.
    fake.down = False
    assert meeting["sync_status"] == "pending" and meeting["outlook_event_id"] is None
    assert "503" in meeting["last_error"] or "ServiceNotAvailable" in meeting["last_error"]

    async def synced():
        row = await stored(db, meeting["id"])
        return row if row["sync_status"] == "synced" else None
    row = await eventually(synced)
    assert len(fake.events) == 1 and row["outlook_event_id"] in fake.events
    view = await client.data("meetings", "get_all_meetings")
    assert view[0]["sync_status"] == "synced"


async def test_a_refused_create_fails_with_the_graph_code(client: Client, fake: FakeGraph, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    fake.fail_next(1, "400")
    meeting = await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(next_weekday(), 14)))
    assert meeting["sync_status"] == "failed"
    assert meeting["last_error"].startswith("ErrorInvalidRequest")
    assert fake.events == {}
    # The next calendar sync retries failed meetings.
    result = await client.data("meetings", "sync_outlook_calendar")
    assert result["pushed"] == 1 and len(fake.events) == 1
    assert (await stored(db, meeting["id"]))["sync_status"] == "synced"


async def test_token_expiry_mid_run_fetches_a_new_token_once(client: Client, fake: FakeGraph, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    first = await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(next_weekday(), 9)))
    tokens_before = len(fake.token_requests)
    fake.expire_tokens()
    second = await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(next_weekday(), 15)))
    assert (first["sync_status"], second["sync_status"]) == ("synced", "synced")
    assert len(fake.token_requests) == tokens_before + 1
    assert len(fake.events) == 2


async def test_update_and_cancel_reach_outlook(client: Client, fake: FakeGraph, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    start = at(next_weekday(), 10)
    meeting = await client.data("meetings", "create_meeting", booking(lead_id, user_id, start))
    moved = await client.data("meetings", "update_meeting", {
        "meeting_id": meeting["id"], "subject": "Demo del producto",
        "start_time": (start + 2 * HOUR).isoformat(), "end_time": (start + 3 * HOUR).isoformat()})
    assert moved["sync_status"] == "synced"
    [patch] = fake.calls("PATCH")
    assert patch["path"] == f"/v1.0/users/{MAILBOX}/events/{meeting['outlook_event_id']}"
    assert patch["json"]["subject"] == "Demo del producto" and "attendees" not in patch["json"]
    assert patch["json"]["start"] == {"dateTime": (start + 2 * HOUR).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                                      "timeZone": "UTC"}
    event = fake.events[meeting["outlook_event_id"]]
    assert (event.subject, event.start) == ("Demo del producto", start + 2 * HOUR)
    cancelled = await client.data("meetings", "cancel_meeting", {"meeting_id": meeting["id"]})
    assert (cancelled["status"], cancelled["sync_status"]) == ("cancelled", "synced")
    [cancel] = fake.calls("POST", "/cancel")
    assert cancel["json"] == {"comment": "La reunión fue cancelada."}
    assert fake.events == {}
    again = await client.data("meetings", "cancel_meeting", {"meeting_id": meeting["id"]})
    assert again["status"] == "cancelled" and len(fake.calls("POST", "/cancel")) == 1


async def test_cancel_falls_back_to_delete_when_not_the_organizer(client: Client, fake: FakeGraph, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    meeting = await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(next_weekday(), 16)))
    fake.events[meeting["outlook_event_id"]].organizer = "jefe@empresa.example"
    cancelled = await client.data("meetings", "cancel_meeting", {"meeting_id": meeting["id"]})
    assert cancelled["sync_status"] == "synced"
    assert len(fake.calls("POST", "/cancel")) == 1 and len(fake.calls("DELETE")) == 1
    assert fake.events == {}


async def test_a_request_waits_for_the_pusher_that_holds_its_meeting(client: Client, fake: FakeGraph, db) -> None:
    """The worker or a sync round may claim a meeting between a write's commit and the
    request's own push: the reply waits for that push instead of answering `pending`."""
    lead_id, user_id = await lead_at(db, "bant")
    meeting = await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(next_weekday(), 15)))
    # Another pusher's claim, lapsing in 1 s (as if it held the meeting and then finished).
    await db.execute("UPDATE meetings SET sync_claimed_until = now() + interval '1 second' WHERE id = $1",
                     uuid.UUID(meeting["id"]))
    cancelled = await client.data("meetings", "cancel_meeting", {"meeting_id": meeting["id"]})
    assert (cancelled["status"], cancelled["sync_status"]) == ("cancelled", "synced")
    assert fake.events == {}


async def test_delta_sync_pages_moves_deletions_and_outlook_events(client: Client, fake: FakeGraph, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    day = next_weekday()
    created = [await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(day, hour)))
               for hour in (9, 11, 13)]
    lunch = fake.person_creates("Comida con cliente", at(day, 14, 30), at(day, 16), show_as="busy")
    fake.person_creates("Libre", at(day, 17), at(day, 17, 30), show_as="free")
    first = await client.data("meetings", "sync_outlook_calendar")
    assert first == {"created": 2, "updated": 0, "cancelled": 0, "pushed": 0, "unchanged": 3, "full_resync": False}
    assert len(fake.calls("GET", "/calendarView/delta")) == 3          # 5 events, 2 a page
    first_call = fake.calls("GET", "/calendarView/delta")[0]["query"]
    assert first_call["startDateTime"].endswith("Z") and first_call["endDateTime"].endswith("Z")

    # A person moves one meeting and deletes another in Outlook.
    moved_to = at(day, 16)
    fake.person_moves(created[0]["outlook_event_id"], moved_to, moved_to + HOUR)
    fake.person_deletes(created[1]["outlook_event_id"])
    fake.person_deletes(lunch)
    second = await client.data("meetings", "sync_outlook_calendar")
    assert second == {"created": 0, "updated": 1, "cancelled": 2, "pushed": 0, "unchanged": 0, "full_resync": False}
    second_round = fake.calls("GET", "/calendarView/delta")[3:]
    assert "$deltatoken" in second_round[0]["query"] and len(second_round) == 2     # 3 changes, 2 a page
    row = await stored(db, created[0]["id"])
    assert (row["start_time"], row["end_time"], row["sync_status"]) == (moved_to, moved_to + HOUR, "synced")
    assert (await stored(db, created[1]["id"]))["status"] == "cancelled"
    busy = await db.fetch("SELECT subject FROM outlook_busy ORDER BY start_time")
    assert [r["subject"] for r in busy] == ["Libre"]
    metrics = await client.data("dashboard", "get_real_time_metrics")
    assert metrics["outlook"]["last_success_at"] is not None and metrics["outlook"]["pending_meetings"] == 0


async def test_a_lost_delta_link_means_a_full_resync(client: Client, fake: FakeGraph, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    day = next_weekday()
    kept = await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(day, 9)))
    dropped = await client.data("meetings", "create_meeting", booking(lead_id, user_id, at(day, 11)))
    await client.data("meetings", "sync_outlook_calendar")
    fake.invalidate_delta_links()
    fake.person_deletes(dropped["outlook_event_id"])
    result = await client.data("meetings", "sync_outlook_calendar")
    assert result["full_resync"] is True and result["cancelled"] == 1
    assert (await stored(db, dropped["id"]))["status"] == "cancelled"
    assert (await stored(db, kept["id"]))["status"] == "scheduled"
    again = await client.data("meetings", "sync_outlook_calendar")
    assert again["full_resync"] is False


async def test_slots_avoid_outlook_busy_blocks(client: Client, fake: FakeGraph, db) -> None:
    day = next_weekday()
    fake.person_creates("Comité", at(day, 9), at(day, 12), show_as="busy")
    fake.person_creates("Quizá", at(day, 13), at(day, 14), show_as="tentative")
    fake.person_creates("Vacaciones", at(day, 16), at(day, 18), show_as="oof")
    fake.person_creates("Libre", at(day, 12), at(day, 13), show_as="free")
    reply = await client.data("meetings", "get_available_slots", {"date": day.isoformat(), "duration": 60})
    assert [s["start"][11:16] for s in reply["slots"]] == ["12:00", "14:00", "14:30", "15:00"]
    assert (reply["outlook_checked"], reply["warning"]) == (True, None)
    [schedule] = fake.calls("POST", "/calendar/getSchedule")
    assert schedule["json"]["schedules"] == [MAILBOX]
    fake.down = True
    degraded = await client.data("meetings", "get_available_slots", {"date": day.isoformat(), "duration": 60})
    fake.down = False
    assert degraded["outlook_checked"] is False and "Outlook" in degraded["warning"]
    assert len(degraded["slots"]) == 17                       # starts 09:00 to 17:00 every 30 min


async def test_sync_errors_become_upstream_error_and_unavailable(client: Client, fake: FakeGraph, db) -> None:
    fake.fail_next(1, "403")
    error = await client.error("meetings", "sync_outlook_calendar")
    assert error["code"] == "upstream_error" and error["details"]["graph_code"] == "ErrorAccessDenied"
    fake.down = True
    error = await client.error("meetings", "sync_outlook_calendar")
    fake.down = False
    assert error["code"] == "unavailable"


async def test_a_meeting_left_pending_by_a_crash_is_pushed(client: Client, fake: FakeGraph, db) -> None:
    # As if wsd died right after committing: the row is pending and no Graph call was made.
    lead_id, user_id = await lead_at(db, "meeting")
    start = at(next_weekday(), 10)
    meeting_id = await db.fetchval(
        "INSERT INTO meetings (lead_id, user_id, subject, start_time, end_time, attendee_email, mailbox, "
        "sync_status, sync_version) VALUES ($1, $2, 'Recuperada', $3, $4, 'a@b.example', $5, 'pending', 1) "
        "RETURNING id", lead_id, user_id, start, start + HOUR, MAILBOX)

    await eventually(lambda: synced(db, str(meeting_id)))
    [event] = fake.events.values()
    assert event.transaction_id == str(meeting_id) and event.subject == "Recuperada"
