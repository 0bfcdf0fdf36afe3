"""The trail: one entry per committed write through wsd, naming the caller, personal fields
masked; none for a write that did not commit. trail.get_trail, the lead document's trail,
retention."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tests import factories
from tests.conftest import ROOT, Client
from tests.test_meetings import at, booking, next_weekday

UTC = dt.timezone.utc
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
NAME, EMAIL, PHONE, COMPANY = "Ana Belén Ruiz", "ana.ruiz@cliente.example", "+34600111222", "Ruiz Textil SL"
ATTENDEE = "ana.privada@cliente.example"


@dataclass
class Setup:
    """One write, ready to send: the lead it touches, a payload that commits and one that
    fails (and so must leave no entry)."""
    lead_id: uuid.UUID
    ok: dict[str, Any]
    failing: dict[str, Any]


async def _lead(db) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A lead at `bant` of a person whose name, email, phone and company are known."""
    user_id = await factories.user(db, full_name=NAME, email=EMAIL, company=COMPANY, phone=PHONE)
    conversation_id = await factories.conversation(db, user_id)
    now = dt.datetime.now(UTC)
    lead_id = await factories.lead(db, [("start", now - DAY, "agent"), ("consent", now - DAY + HOUR, "agent"),
                                        ("personal_data", now - DAY + 2 * HOUR, "agent"),
                                        ("bant", now - DAY + 3 * HOUR, "agent")],
                                   user_id=user_id, conversation_id=conversation_id)
    return lead_id, user_id, conversation_id


async def _agent_switch(db) -> Setup:
    lead_id, _, conversation_id = await _lead(db)
    return Setup(lead_id, {"conversation_id": str(conversation_id), "enabled": False, "reason": "pide una persona"},
                 {"conversation_id": str(uuid.uuid4()), "enabled": False})


async def _step_move(db) -> Setup:
    lead_id, _, _ = await _lead(db)
    return Setup(lead_id, {"lead_id": str(lead_id), "new_step": "requirements"},
                 {"lead_id": str(uuid.uuid4()), "new_step": "requirements"})


async def _booking(db) -> Setup:
    lead_id, user_id, _ = await _lead(db)
    start = at(next_weekday(), 10)
    return Setup(lead_id, booking(lead_id, user_id, start, attendee_email=ATTENDEE),
                 booking(uuid.uuid4(), user_id, start, attendee_email=ATTENDEE))


async def _meeting_change(db) -> Setup:
    lead_id, user_id, _ = await _lead(db)
    meeting_id = await factories.meeting(db, lead_id, user_id, at(next_weekday(), 11))
    return Setup(lead_id, {"meeting_id": str(meeting_id), "subject": "Demo"},
                 {"meeting_id": str(uuid.uuid4()), "subject": "Demo"})


async def _meeting_cancel(db) -> Setup:
    lead_id, user_id, _ = await _lead(db)
    meeting_id = await factories.meeting(db, lead_id, user_id, at(next_weekday(), 12))
    return Setup(lead_id, {"meeting_id": str(meeting_id)}, {"meeting_id": str(uuid.uuid4())})


async def _package(db) -> Setup:
    lead_id, _, _ = await _lead(db)
    package = {"app_type": "web_app", "features": [{"name": "Chat", "description": "en vivo"}]}
    return Setup(lead_id, {"lead_qualification_id": str(lead_id), **package},
                 {"lead_qualification_id": str(uuid.uuid4()), **package})


async def _requirements_change(db) -> Setup:
    lead_id, _, _ = await _lead(db)
    requirements_id = await factories.requirements(db, lead_id)
    return Setup(lead_id, {"requirements_id": str(requirements_id), "app_type": "mobile_app"},
                 {"requirements_id": str(uuid.uuid4()), "app_type": "mobile_app"})


async def _new_item(db) -> Setup:
    lead_id, _, _ = await _lead(db)
    requirements_id = await factories.requirements(db, lead_id, features=["Chat"], integrations=["Stripe"])
    # The failing one names an item the requirements already have: a conflict, rolled back.
    return Setup(lead_id, {"requirements_id": str(requirements_id), "name": "Pagos", "description": "x"},
                 {"requirements_id": str(requirements_id), "name": "chat", "description": "x"})


async def _new_integration(db) -> Setup:
    setup = await _new_item(db)
    setup.failing = {**setup.failing, "name": "stripe"}
    return setup


WRITES = {
    ("conversations", "update_agent_status"): _agent_switch,
    ("leads", "update_lead_step"): _step_move,
    ("meetings", "create_meeting"): _booking,
    ("meetings", "update_meeting"): _meeting_change,
    ("meetings", "cancel_meeting"): _meeting_cancel,
    ("requirements", "create_requirement_package"): _package,
    ("requirements", "update_requirements"): _requirements_change,
    ("requirements", "add_feature"): _new_item,
    ("requirements", "add_integration"): _new_integration,
}


def test_every_write_action_is_covered() -> None:
    from wsd.handlers import ALL_TABLES

    writes = {(table.resource, action.name) for table in ALL_TABLES for action in table.actions if action.writes}
    # sync_outlook_calendar is held by test_a_write_outside_postgresql_is_on_the_trail_once_done.
    assert writes - set(WRITES) == {("meetings", "sync_outlook_calendar")}


@pytest.mark.parametrize("write", list(WRITES), ids=lambda w: f"{w[0]}.{w[1]}")
async def test_an_entry_exists_exactly_when_the_write_committed(admin: Client, db, write) -> None:
    resource, action = write
    setup = await WRITES[write](db)
    error = await admin.error(resource, action, setup.failing)
    assert error["code"] in {"not_found", "conflict"}
    assert await db.fetchval("SELECT count(*) FROM trail_entries") == 0

    await admin.data(resource, action, setup.ok)
    entries = await db.fetch("SELECT * FROM trail_entries")
    assert len(entries) == 1
    entry = {**entries[0], "ids": orjson.loads(entries[0]["ids"]), "payload": orjson.loads(entries[0]["payload"])}
    assert (entry["actor"], entry["actor_role"], entry["resource"], entry["action"], entry["outcome"]) == \
        ("test-admin", "admin", resource, action, "committed")
    assert entry["lead_id"] == setup.lead_id
    for key, value in setup.ok.items():
        if key.endswith("_id"):
            assert entry["ids"][key] == value
    text = orjson.dumps(dict(entry), default=str).decode()
    for personal in (NAME, EMAIL, PHONE, COMPANY, ATTENDEE):
        assert personal not in text
    if "attendee_email" in setup.ok:
        assert entry["payload"]["attendee_email"] == "***"


async def test_a_viewer_refused_a_write_leaves_no_entry(viewer: Client, db) -> None:
    setup = await _step_move(db)
    assert (await viewer.error("leads", "update_lead_step", setup.ok))["code"] == "forbidden"
    assert await db.fetchval("SELECT count(*) FROM trail_entries") == 0


async def test_an_idempotent_retry_adds_no_second_entry(admin: Client, db) -> None:
    setup = await _booking(db)
    payload = {**setup.ok, "idempotency_key": "booking-1"}
    first = await admin.data("meetings", "create_meeting", payload)
    assert await admin.data("meetings", "create_meeting", payload) == first
    entries = await db.fetch("SELECT ids->>'id' AS id, payload ? 'idempotency_key' AS keyed FROM trail_entries")
    assert [(e["id"], e["keyed"]) for e in entries] == [(first["id"], False)]


async def test_a_write_outside_postgresql_is_on_the_trail_once_done(admin: Client, db) -> None:
    # Outlook is disabled in the test daemon: the sync fails and leaves no entry.
    assert (await admin.error("meetings", "sync_outlook_calendar"))["code"] == "unavailable"
    assert await db.fetchval("SELECT count(*) FROM trail_entries") == 0


async def test_get_trail_pages_newest_first_and_filters(admin: Client, viewer: Client, db) -> None:
    first = await _step_move(db)
    second = await _agent_switch(db)
    await admin.data("leads", "update_lead_step", first.ok)
    await admin.data("conversations", "update_agent_status", second.ok)
    await admin.data("leads", "update_lead_step", {**first.ok, "new_step": "meeting"})

    everything = await admin.request("trail", "get_trail", {"limit": 2})
    page = everything["payload"]
    assert [e["action"] for e in page["data"]] == ["update_lead_step", "update_agent_status"]
    assert page["data"][0]["payload"]["new_step"] == "meeting"
    rest = await admin.request("trail", "get_trail", {"limit": 2, "cursor": page["next_cursor"]})
    assert [e["payload"].get("new_step") for e in rest["payload"]["data"]] == ["requirements"]
    assert rest["payload"]["next_cursor"] is None

    by_lead = await admin.data("trail", "get_trail", {"lead_id": str(second.lead_id)})
    assert [(e["action"], e["lead_id"]) for e in by_lead] == [("update_agent_status", str(second.lead_id))]
    assert [e["action"] for e in await admin.data("trail", "get_trail", {"action": "leads.update_lead_step"})] == \
        ["update_lead_step"] * 2
    assert await admin.data("trail", "get_trail", {"actor": "someone-else"}) == []
    assert len(await admin.data("trail", "get_trail", {"actor": "test-admin"})) == 3
    later = dt.datetime.now(UTC) + HOUR
    assert await admin.data("trail", "get_trail", {"since": later.isoformat()}) == []
    assert len(await admin.data("trail", "get_trail", {"until": later.isoformat()})) == 3
    error = await admin.error("trail", "get_trail", {"since": "2024-01-01T00:00:00"})
    assert (error["code"], error["details"]) == ("invalid_payload", {"field": "since"})

    assert (await viewer.error("trail", "get_trail"))["code"] == "forbidden"


async def test_the_lead_document_carries_its_trail_for_admins(admin: Client, viewer: Client, db) -> None:
    setup = await _step_move(db)
    other = await _step_move(db)
    await admin.data("leads", "update_lead_step", setup.ok)
    await admin.data("leads", "update_lead_step", other.ok)
    document = await admin.data("leads", "get_lead_with_complete_data", {"lead_id": str(setup.lead_id)})
    assert [(e["actor"], e["action"], e["payload"]["new_step"]) for e in document["trail"]] == \
        [("test-admin", "update_lead_step", "requirements")]
    seen = await viewer.data("leads", "get_lead_with_complete_data", {"lead_id": str(setup.lead_id)})
    assert seen["trail"] is None


async def test_trail_purge_forgets_older_entries(admin: Client, db, daemon) -> None:
    setup = await _step_move(db)
    await admin.data("leads", "update_lead_step", setup.ok)
    await admin.data("leads", "update_lead_step", {**setup.ok, "new_step": "meeting"})
    await db.execute("UPDATE trail_entries SET at = at - interval '40 days' "
                     "WHERE payload->>'new_step' = 'requirements'")
    done = subprocess.run([sys.executable, "-m", "wsd", "trail", "purge", "--older-than", "30",
                           "--config", str(daemon.config_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "purged 1 trail entry older than 30 days" in done.stdout
    assert [r["p"] for r in await db.fetch("SELECT payload->>'new_step' AS p FROM trail_entries")] == ["meeting"]


async def test_live_answers_follow_the_subscribers_role(admin: Client, viewer: Client, db) -> None:
    from tests.test_live import settle, subscribe

    setup = await _step_move(db)
    lead = {"lead_id": str(setup.lead_id)}
    as_admin = await subscribe(admin, "leads", "get_lead_with_complete_data", lead)
    as_viewer = await subscribe(viewer, "leads", "get_lead_with_complete_data", lead)
    trail = await subscribe(admin, "trail", "get_trail", {"lead_id": str(setup.lead_id)})
    assert (as_admin["data"]["trail"], as_viewer["data"]["trail"], trail["data"]) == ([], None, [])
    await admin.data("leads", "update_lead_step", setup.ok)
    await settle(admin, 1.0)
    await settle(viewer, 1.0)
    pushed = {u["subscription"]: u["payload"]["data"] for u in admin.updates + viewer.updates}
    assert [e["action"] for e in pushed[as_admin["subscription"]]["trail"]] == ["update_lead_step"]
    assert pushed[as_viewer["subscription"]]["trail"] is None
    assert [e["action"] for e in pushed[trail["subscription"]]] == ["update_lead_step"]
