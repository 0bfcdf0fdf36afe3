"""Issue 14's findings, each as the request that showed it and the answer it must get now."""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pytest

from tests import factories
from tests.conftest import Client
from tests.test_meetings import DAY, HOUR, MADRID, at, booking, lead_at, next_weekday, now
from tests.test_requirements import PACKAGE, new_lead


async def invalid_field(client: Client, resource: str, action: str, payload: dict) -> str | None:
    error = await client.error(resource, action, payload)
    assert error["code"] == "invalid_payload", error
    return error["details"]["field"]


@pytest.mark.parametrize("action, payload, field", [
    ("get_calendar_view", {"start_date": "9999-12-30", "end_date": "9999-12-31"}, "start_date"),
    ("get_calendar_view", {"start_date": "2026-01-01", "end_date": "9999-12-31"}, "end_date"),
    ("get_available_slots", {"date": "9999-12-31", "duration": 30}, "date"),
    ("get_available_slots", {"date": "0001-01-01", "duration": 30}, "date"),
])
async def test_far_dates_are_refused_not_internal(admin: Client, action, payload, field) -> None:
    assert await invalid_field(admin, "meetings", action, payload) == field


@pytest.mark.parametrize("action", ["get_all_leads", "get_abandoned_leads"])
async def test_a_forged_cursor_in_year_9999_names_the_cursor(admin: Client, action) -> None:
    forged = base64.urlsafe_b64encode(orjson.dumps(
        ["9999-12-31T23:59:59-12:00", "00000000-0000-0000-0000-000000000000"])).decode()
    assert await invalid_field(admin, "leads", action, {"cursor": forged}) == "cursor"


async def raw_reply(client: Client) -> str:
    """The next frame that is a reply, as text (change events may come first)."""
    while True:
        raw = await client.connection.recv()
        assert isinstance(raw, str)
        if orjson.loads(raw)["type"] in ("success", "error"):
            return raw


async def test_a_huge_request_id_comes_back_digit_for_digit(admin: Client) -> None:
    await admin.connection.send('{"resource":"leads","action":"get_lead_pipeline","id":12345678901234567890123}')
    raw = await raw_reply(admin)
    assert '"id":12345678901234567890123' in raw and orjson.loads(raw)["type"] == "success"


async def test_a_huge_limit_is_out_of_range_not_a_float(admin: Client) -> None:
    await admin.connection.send('{"resource":"leads","action":"get_all_leads","id":"x",'
                                '"payload":{"limit":99999999999999999999}}')
    reply = orjson.loads(await raw_reply(admin))
    assert reply["payload"]["code"] == "invalid_payload" and "float" not in reply["payload"]["message"]
    assert reply["payload"]["details"]["field"] == "limit"


async def test_an_empty_search_box_lists_every_lead(admin: Client, db) -> None:
    lead_id = await new_lead(db)
    for search in ("", "   "):
        assert [lead["id"] for lead in await admin.data("leads", "get_all_leads", {"search": search})] == [str(lead_id)]


async def test_blank_subject_and_app_type_are_refused(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    start = at(next_weekday(), 10)
    assert await invalid_field(admin, "meetings", "create_meeting",
                               booking(lead_id, user_id, start, subject="   ")) == "subject"
    assert await invalid_field(admin, "requirements", "create_requirement_package",
                               {"lead_qualification_id": str(lead_id), **PACKAGE, "app_type": " \t "}) == "app_type"
    package = await admin.data("requirements", "create_requirement_package",
                               {"lead_qualification_id": str(lead_id), **PACKAGE, "app_type": "  web  "})
    assert package["app_type"] == "web"
    assert await invalid_field(admin, "requirements", "update_requirements",
                               {"requirements_id": package["id"], "app_type": "  "}) == "app_type"
    meeting = await admin.data("meetings", "create_meeting", booking(lead_id, user_id, start, subject=" Demo "))
    assert meeting["subject"] == "Demo"
    assert await invalid_field(admin, "meetings", "update_meeting",
                               {"meeting_id": meeting["id"], "subject": "\u00a0"}) == "subject"


async def test_an_email_with_a_trailing_newline_is_refused_by_the_payload_check(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    payload = booking(lead_id, user_id, at(next_weekday(), 10), attendee_email="a@b.com\n")
    assert await invalid_field(admin, "meetings", "create_meeting", payload) == "attendee_email"


async def test_nul_characters_are_refused_with_their_field(admin: Client, db) -> None:
    lead_id = await new_lead(db)
    payload = {"lead_qualification_id": str(lead_id), **PACKAGE,
               "features": [{"name": "ok"}, {"name": "bad\u0000name"}]}
    assert await invalid_field(admin, "requirements", "create_requirement_package", payload) == "features[1].name"


async def test_names_fold_unicode_spaces_the_same_in_a_package_and_in_add_feature(admin: Client, db) -> None:
    lead_id = await new_lead(db)
    package = await admin.data("requirements", "create_requirement_package",
                               {"lead_qualification_id": str(lead_id), **PACKAGE})
    error = await admin.error("requirements", "add_feature",
                              {"requirements_id": package["id"], "name": "Chat\u00a0en\u2003VIVO"})
    assert error["code"] == "conflict"
    padded = "  " + "n" * 200 + "   "
    created = await admin.data("requirements", "add_feature", {"requirements_id": package["id"], "name": padded})
    assert created["name"] == "n" * 200


async def test_a_finished_meeting_is_completed_and_cannot_be_cancelled(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "meeting")
    past = await factories.meeting(db, lead_id, user_id, now() - 3 * HOUR)
    started = await factories.meeting(db, lead_id, user_id, now() - 10 * dt.timedelta(minutes=1))
    completed = await admin.data("meetings", "get_all_meetings", {"filter": "by_status", "status": "completed"})
    assert [m["id"] for m in completed] == [str(past)]
    for meeting_id in (past, started):
        error = await admin.error("meetings", "cancel_meeting", {"meeting_id": str(meeting_id)})
        assert error["code"] == "conflict", error
        error = await admin.error("meetings", "update_meeting", {"meeting_id": str(meeting_id), "subject": "x"})
        assert error["code"] == "conflict", error


@pytest.mark.parametrize("local_day, hour", [(0, 2), (0, 17), (5, 10), (6, 12)])
async def test_booking_outside_working_hours_is_refused(admin: Client, db, local_day, hour) -> None:
    """Monday 02:00, Monday 17:00–18:30 (past closing), Saturday and Sunday: no slot there."""
    lead_id, user_id = await lead_at(db, "bant")
    start = at(next_weekday(local_day), hour)
    slots = await admin.data("meetings", "get_available_slots", {"date": start.date().isoformat(), "duration": 90})
    assert start.isoformat() not in [slot["start"] for slot in slots["slots"]]
    assert await invalid_field(admin, "meetings", "create_meeting", booking(lead_id, user_id, start, 90)) == "start_time"


async def test_booking_within_min_notice_is_refused(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    soon = (now() + HOUR).astimezone(MADRID)
    assert await invalid_field(admin, "meetings", "create_meeting", booking(lead_id, user_id, soon, 30)) == "start_time"


async def test_booking_over_a_stored_outlook_event_is_a_conflict_like_the_slots_say(admin: Client, db) -> None:
    lead_id, user_id = await lead_at(db, "bant")
    start = at(next_weekday(), 11)
    # Outlook is off in the test daemon, so its mailbox is "" (config.outlook.mailbox).
    await db.execute("INSERT INTO outlook_busy (mailbox, event_id, subject, start_time, end_time, show_as) "
                     "VALUES ('', 'evt-1', 'Dentist', $1, $2, 'busy')", start, start + HOUR)
    slots = await admin.data("meetings", "get_available_slots", {"date": start.date().isoformat(), "duration": 60})
    assert start.isoformat() not in [slot["start"] for slot in slots["slots"]]
    error = await admin.error("meetings", "create_meeting", booking(lead_id, user_id, start + 30 * dt.timedelta(minutes=1)))
    assert error["code"] == "conflict" and error["details"]["outlook_event_id"] == "evt-1"


async def test_lead_documents_carry_agent_enabled(admin: Client, db) -> None:
    conversation_id = await factories.conversation(db)
    await db.execute("UPDATE conversations SET agent_enabled = false WHERE id = $1", conversation_id)
    user_id = await db.fetchval("SELECT user_id FROM conversations WHERE id = $1", conversation_id)
    lead_id = await factories.lead(db, [("start", now() - DAY, "agent")], user_id=user_id,
                                   conversation_id=conversation_id)
    [lead] = await admin.data("leads", "get_all_leads")
    assert lead["id"] == str(lead_id) and lead["agent_enabled"] is False
    [start_column] = [column for column in await admin.data("leads", "get_lead_pipeline") if column["step"] == "start"]
    assert start_column["leads"][0]["agent_enabled"] is False
    await factories.lead(db, [("start", now() - DAY, "agent")])
    assert [lead["agent_enabled"] for lead in await admin.data("leads", "get_all_leads")] == [None, False]
