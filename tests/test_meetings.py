"""meetings.* with Outlook disabled (the default): every action on the database alone."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo


from tests import factories
from tests.conftest import Client

UTC = dt.timezone.utc
MADRID = ZoneInfo("Europe/Madrid")
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def next_weekday(weekday: int = 0, weeks_ahead: int = 1) -> dt.date:
    """A Monday (weekday 0) at least a week ahead, in Madrid."""
    today = dt.datetime.now(MADRID).date()
    return today + dt.timedelta(days=(weekday - today.weekday()) % 7 + 7 * weeks_ahead)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), MADRID)


async def lead_at(db, step: str) -> tuple[uuid.UUID, uuid.UUID]:
    path = [("start", now() - DAY, "agent")]
    steps = ["consent", "personal_data", "bant", "requirements", "meeting", "completed"]
    for s in steps[:steps.index(step) + 1] if step != "start" else []:
        path.append((s, now() - DAY + HOUR * (len(path)), "agent"))
    lead_id = await factories.lead(db, path)
    return lead_id, await db.fetchval("SELECT user_id FROM lead_qualifications WHERE id = $1", lead_id)


def booking(lead_id, user_id, start: dt.datetime, minutes: int = 60, **extra) -> dict:
    return {"user_id": str(user_id), "lead_qualification_id": str(lead_id), "subject": "Reunión de seguimiento",
            "start_time": start.isoformat(), "end_time": (start + dt.timedelta(minutes=minutes)).isoformat(),
            "attendee_email": "cliente@empresa.com", **extra}


async def test_create_meeting_moves_the_lead_to_meeting(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    start = at(next_weekday(), 10)
    meeting = await admin.data("meetings", "create_meeting", booking(lead_id, user_id, start))
    assert (meeting["lead_id"], meeting["user_id"], meeting["status"], meeting["sync_status"]) == (
        str(lead_id), str(user_id), "scheduled", "disabled")
    assert dt.datetime.fromisoformat(meeting["start_time"]) == start
    assert dt.datetime.fromisoformat(meeting["end_time"]) == start + HOUR
    assert meeting["outlook_event_id"] is None
    row = await db.fetchrow("SELECT current_step::text, furthest_step::text FROM lead_qualifications WHERE id = $1",
                            lead_id)
    assert tuple(row) == ("meeting", "meeting")
    last = await db.fetchrow("SELECT from_step::text, to_step::text, source FROM lead_step_history "
                             "WHERE lead_id = $1 ORDER BY id DESC LIMIT 1", lead_id)
    assert tuple(last) == ("bant", "meeting", "meeting")


async def test_a_completed_lead_stays_completed(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "completed")
    await admin.data("meetings", "create_meeting", booking(lead_id, user_id, at(next_weekday(), 10)))
    assert await db.fetchval("SELECT current_step::text FROM lead_qualifications WHERE id = $1", lead_id) == "completed"


async def test_create_meeting_validation(admin: Client, viewer: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    other_lead, other_user = await lead_at(db, "start")
    start = at(next_weekday(), 10)
    cases = [
        (booking(lead_id, user_id, start, minutes=-30), "invalid_payload", "end_time"),
        (booking(lead_id, user_id, start, minutes=4), "invalid_payload", "end_time"),
        (booking(lead_id, user_id, start, minutes=8 * 60 + 1), "invalid_payload", "end_time"),
        (booking(lead_id, user_id, now() - HOUR), "invalid_payload", "start_time"),
        (booking(lead_id, user_id, start, attendee_email="not-an-email"), "invalid_payload", "attendee_email"),
        (booking(lead_id, user_id, start, start_time="2030-01-15T10:00:00"), "invalid_payload", "start_time"),
        (booking(lead_id, user_id, start, start_time="mañana"), "invalid_payload", "start_time"),
        (booking(lead_id, user_id, start, subject=""), "invalid_payload", "subject"),
        (booking(lead_id, user_id, start, room="A"), "invalid_payload", "room"),
        (booking(uuid.uuid4(), user_id, start), "not_found", None),
        (booking(lead_id, uuid.uuid4(), start), "not_found", None),
        (booking(lead_id, other_user, start), "invalid_payload", "user_id"),
    ]
    for payload, code, field in cases:
        error = await admin.error("meetings", "create_meeting", payload)
        assert error["code"] == code, (payload, error)
        if field:
            assert error["details"]["field"] == field, (payload, error)
    assert (await viewer.error("meetings", "create_meeting", booking(lead_id, user_id, start)))["code"] == "forbidden"
    assert await db.fetchval("SELECT count(*) FROM meetings") == 0
    assert await db.fetchval("SELECT current_step::text FROM lead_qualifications WHERE id = $1", lead_id) == "bant"
    del other_lead


async def test_overlapping_meetings_conflict(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    start = at(next_weekday(), 10)
    first = await admin.data("meetings", "create_meeting", booking(lead_id, user_id, start))
    for offset, minutes in ((30, 60), (-30, 45), (0, 15), (-60, 180)):
        error = await admin.error("meetings", "create_meeting",
                                  booking(lead_id, user_id, start + dt.timedelta(minutes=offset), minutes))
        assert error["code"] == "conflict" and error["details"]["meeting_id"] == first["id"]
    # Back to back is fine.
    await admin.data("meetings", "create_meeting", booking(lead_id, user_id, start + HOUR, 30))
    await admin.data("meetings", "create_meeting", booking(lead_id, user_id, start - HOUR, 60))
    assert await db.fetchval("SELECT count(*) FROM meetings") == 3


async def test_update_and_cancel(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "meeting")
    start = at(next_weekday(), 10)
    meeting = await admin.data("meetings", "create_meeting", booking(lead_id, user_id, start))
    other = await admin.data("meetings", "create_meeting", booking(lead_id, user_id, start + 2 * HOUR))
    moved = await admin.data("meetings", "update_meeting", {
        "meeting_id": meeting["id"], "start_time": (start + 30 * dt.timedelta(minutes=1)).isoformat(),
        "end_time": (start + 90 * dt.timedelta(minutes=1)).isoformat()})      # overlaps only itself
    assert dt.datetime.fromisoformat(moved["start_time"]) == start + dt.timedelta(minutes=30)
    renamed = await admin.data("meetings", "update_meeting", {"meeting_id": meeting["id"], "subject": "Demo"})
    assert renamed["subject"] == "Demo" and renamed["start_time"] == moved["start_time"]
    error = await admin.error("meetings", "update_meeting", {
        "meeting_id": meeting["id"], "start_time": (start + 2 * HOUR).isoformat(),
        "end_time": (start + 3 * HOUR).isoformat()})
    assert error["code"] == "conflict" and error["details"]["meeting_id"] == other["id"]
    error = await admin.error("meetings", "update_meeting", {"meeting_id": meeting["id"],
                                                             "end_time": (start - HOUR).isoformat()})
    assert error["code"] == "invalid_payload" and error["details"]["field"] == "end_time"
    assert (await admin.error("meetings", "update_meeting", {"meeting_id": meeting["id"]}))["code"] == "invalid_payload"
    assert (await admin.error("meetings", "update_meeting", {"meeting_id": str(uuid.uuid4()),
                                                             "subject": "x"}))["code"] == "not_found"
    cancelled = await admin.data("meetings", "cancel_meeting", {"meeting_id": meeting["id"]})
    assert cancelled["status"] == "cancelled"
    again = await admin.data("meetings", "cancel_meeting", {"meeting_id": meeting["id"]})
    assert again == cancelled
    error = await admin.error("meetings", "update_meeting", {"meeting_id": meeting["id"], "subject": "Otra"})
    assert error["code"] == "conflict"
    assert (await admin.error("meetings", "cancel_meeting", {"meeting_id": str(uuid.uuid4())}))["code"] == "not_found"
    # The freed time can be booked again.
    await admin.data("meetings", "create_meeting", booking(lead_id, user_id, start))


async def test_get_all_meetings_filters(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "meeting")
    today = dt.datetime.now(MADRID).date()
    monday = today - dt.timedelta(days=today.weekday())
    times = {
        "today_late": at(today, 23, 30), "today_early": at(today, 0, 15),
        "this_week": at(monday + dt.timedelta(days=6), 12) if today.weekday() != 6 else at(monday, 12),
        "next_week": at(monday + dt.timedelta(days=7), 9), "last_week": at(monday - dt.timedelta(days=1), 9),
    }
    ids = {name: await factories.meeting(db, lead_id, user_id, start, minutes=10) for name, start in times.items()}
    await db.execute("UPDATE meetings SET status = 'completed' WHERE id = $1", ids["last_week"])

    async def names(payload):
        found = [m["id"] for m in await admin.data("meetings", "get_all_meetings", payload)]
        return [name for i in found for name, meeting_id in ids.items() if str(meeting_id) == i]

    assert await names({"filter": "today"}) == ["today_early", "today_late"]
    assert set(await names({"filter": "this_week"})) == {"today_early", "today_late", "this_week"}
    # `completed`: stored so, or scheduled and already over (issue 14: nothing produced it).
    over = sorted((name for name, start in times.items() if start + dt.timedelta(minutes=10) <= now()),
                  key=times.get)
    assert await names({"filter": "by_status", "status": "completed"}) == over
    assert await names(None) == sorted(times, key=times.get)
    first = await admin.request("meetings", "get_all_meetings", {"limit": 2})
    rest = await admin.request("meetings", "get_all_meetings", {"limit": 10, "cursor": first["payload"]["next_cursor"]})
    assert len(first["payload"]["data"]) == 2 and len(rest["payload"]["data"]) == 3
    for payload, field in (({"filter": "tomorrow"}, "filter"), ({"filter": "by_status", "status": "done"}, "status"),
                           ({"status": "over"}, "status")):
        error = await admin.error("meetings", "get_all_meetings", payload)
        assert error["code"] == "invalid_payload"
        assert error["details"]["field"] == field


async def test_by_status_and_status_with_every_filter(admin: Client, db) -> None:
    """The seed's own `{"filter": "by_status"}` answers: every meeting, scheduled first, then
    completed, then cancelled, each by start; `status` alone or beside `today`/`this_week`
    means both conditions."""
    lead_id, user_id = await lead_at(db, "meeting")
    today = dt.datetime.now(MADRID).date()
    monday = today - dt.timedelta(days=today.weekday())
    spec = {  # name: (start, stored status)
        "last_week_done": (at(monday - dt.timedelta(days=3), 9), "scheduled"),  # over: completed
        "last_week_cancelled": (at(monday - dt.timedelta(days=2), 9), "cancelled"),
        "today_cancelled": (at(today, 0, 5), "cancelled"),
        "today_late": (at(today, 23, 40), "scheduled"),
        "next_week": (at(monday + dt.timedelta(days=8), 9), "scheduled"),
        "next_week_cancelled": (at(monday + dt.timedelta(days=7), 9), "cancelled"),
    }
    ids = {name: await factories.meeting(db, lead_id, user_id, start, minutes=10, status=status)
           for name, (start, status) in spec.items()}
    by_id = {str(meeting_id): name for name, meeting_id in ids.items()}

    async def names(payload):
        return [by_id[m["id"]] for m in await admin.data("meetings", "get_all_meetings", payload)]

    late_over = at(today, 23, 50) <= now()  # run in the day's last ten minutes
    scheduled = ["next_week"] if late_over else ["today_late", "next_week"]
    completed = ["last_week_done", "today_late"] if late_over else ["last_week_done"]
    cancelled = ["last_week_cancelled", "today_cancelled", "next_week_cancelled"]
    page = await admin.request("meetings", "get_all_meetings", {"filter": "by_status"})
    assert page["type"] == "success" and page["payload"]["next_cursor"] is None
    assert [by_id[m["id"]] for m in page["payload"]["data"]] == scheduled + completed + cancelled
    assert [m["status"] for m in page["payload"]["data"]] == (
        ["scheduled"] * len(scheduled) + ["completed"] * len(completed) + ["cancelled"] * 3)
    assert await names({"filter": "by_status", "status": "cancelled"}) == cancelled
    assert await names({"status": "scheduled"}) == sorted(scheduled, key=lambda n: spec[n][0])
    assert await names({"status": "cancelled"}) == cancelled
    assert await names({"filter": "today", "status": "cancelled"}) == ["today_cancelled"]
    assert await names({"filter": "today", "status": "scheduled"}) == ([] if late_over else ["today_late"])
    assert await names({"filter": "this_week", "status": "completed"}) == (["today_late"] if late_over else [])
    assert await names({"filter": "this_week", "status": "cancelled"}) == ["today_cancelled"]
    # Pages of by_status follow its order across the groups, cursor and all.
    seen, cursor = [], None
    while True:
        reply = await admin.request("meetings", "get_all_meetings", {"filter": "by_status", "limit": 2, "cursor": cursor})
        seen += [by_id[m["id"]] for m in reply["payload"]["data"]]
        cursor = reply["payload"]["next_cursor"]
        if cursor is None:
            break
    assert seen == scheduled + completed + cancelled
    # A cursor of one order is refused by the other, not misread.
    plain = (await admin.request("meetings", "get_all_meetings", {"limit": 1}))["payload"]["next_cursor"]
    error = await admin.error("meetings", "get_all_meetings", {"filter": "by_status", "cursor": plain})
    assert (error["code"], error["details"]["field"]) == ("invalid_payload", "cursor")


async def test_calendar_view_groups_by_local_date(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "meeting")
    day = dt.date(2030, 1, 15)
    early = await factories.meeting(db, lead_id, user_id, at(day, 0, 30), minutes=15)   # 23:30 UTC the day before
    late = await factories.meeting(db, lead_id, user_id, at(day + DAY, 23, 30), minutes=15)
    gone = await factories.meeting(db, lead_id, user_id, at(day, 12), status="cancelled")
    view = await admin.data("meetings", "get_calendar_view", {"start_date": "2030-01-14", "end_date": "2030-01-17"})
    assert list(view) == ["2030-01-14", "2030-01-15", "2030-01-16", "2030-01-17"]
    assert [m["id"] for m in view["2030-01-15"]] == [str(early)]
    assert [m["id"] for m in view["2030-01-16"]] == [str(late)]
    assert view["2030-01-14"] == [] and view["2030-01-17"] == []
    assert str(gone) not in str(view)
    one = await admin.data("meetings", "get_calendar_view", {"start_date": "2030-01-15", "end_date": "2030-01-15"})
    assert list(one) == ["2030-01-15"]
    year = await admin.data("meetings", "get_calendar_view", {"start_date": "2028-01-01", "end_date": "2028-12-31"})
    assert len(year) == 366
    for payload in ({"start_date": "2030-01-17", "end_date": "2030-01-14"},
                    {"start_date": "2030-01-01", "end_date": "2031-01-02"},   # 367 dates
                    {"start_date": "2030-02-30", "end_date": "2030-03-01"}, {"start_date": "2030-01-01"}):
        assert (await admin.error("meetings", "get_calendar_view", payload))["code"] == "invalid_payload"


async def test_available_slots_on_a_normal_and_a_full_day(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "meeting")
    monday = next_weekday(0)
    await factories.meeting(db, lead_id, user_id, at(monday, 10), minutes=60)
    reply = await admin.data("meetings", "get_available_slots", {"date": monday.isoformat(), "duration": 60})
    starts = [s["start"][11:16] for s in reply["slots"]]
    # 09:00–18:00 every 30 min, none overlapping 10:00–11:00: 09:00 and from 11:00 to 17:00.
    assert starts == ["09:00"] + [f"{h:02d}:{m:02d}" for h in range(11, 17) for m in (0, 30)] + ["17:00"]
    assert reply["slots"][0] == {"start": at(monday, 9).isoformat(), "end": at(monday, 10).isoformat()}
    assert (reply["timezone"], reply["outlook_checked"], reply["warning"]) == ("Europe/Madrid", None, None)
    tuesday = monday + DAY
    await factories.meeting(db, lead_id, user_id, at(tuesday, 9), minutes=8 * 60)
    await factories.meeting(db, lead_id, user_id, at(tuesday, 17), minutes=30)
    full = await admin.data("meetings", "get_available_slots", {"date": tuesday.isoformat(), "duration": 30})
    assert [s["start"][11:16] for s in full["slots"]] == ["17:30"]
    saturday = monday + 5 * DAY
    assert (await admin.data("meetings", "get_available_slots", {"date": saturday.isoformat(), "duration": 30}))["slots"] == []
    for duration in (14, 481, "60"):
        error = await admin.error("meetings", "get_available_slots", {"date": monday.isoformat(), "duration": duration})
        assert error["code"] == "invalid_payload" and error["details"]["field"] == "duration"


async def test_sync_without_outlook_is_unavailable(admin: Client, db) -> None:
    error = await admin.error("meetings", "sync_outlook_calendar")
    assert error["code"] == "unavailable" and "disabled" in error["message"]
