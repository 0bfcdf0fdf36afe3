"""leads.*: exact answers on a small hand-built pipeline whose right answers are worked out here.

The six leads (times relative to now; h = hours after the lead's creation):
  A  created 10 d ago  start 0h → consent 24h → personal_data 48h          (last activity 8 d ago)
  B  created 5 d ago   start 0 → consent 10 → personal_data 20 → bant 30 → requirements 40,
                       then moved back to consent by hand at 50h
  C  created 3 d ago   every step 2 h apart, completed at 12h
  D  created 20 d ago  start only, but a message 12 h ago
  E  created 7 d + 1 min ago, start only       F  created 7 d − 1 min ago, start only
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import orjson
import pytest

from tests import factories
from tests.conftest import Client, open_client, start_daemon

STEPS = ["start", "consent", "personal_data", "bant", "requirements", "meeting", "completed"]
DAY, HOUR, MINUTE = dt.timedelta(days=1), dt.timedelta(hours=1), dt.timedelta(minutes=1)


def walk(created: dt.datetime, *moves: tuple[str, float, str]) -> list[tuple[str, dt.datetime, str]]:
    return [("start", created, "agent")] + [(step, created + hours * HOUR, source)
                                            for step, hours, source in moves]


@pytest.fixture
async def pipeline(db) -> dict[str, uuid.UUID]:
    now = dt.datetime.now(dt.timezone.utc)
    ids: dict[str, uuid.UUID] = {}
    ids["A"] = await factories.lead(db, walk(now - 10 * DAY, ("consent", 24, "agent"),
                                             ("personal_data", 48, "agent")),
                                    full_name="Ana López", email="ana_lopez@acme.example",
                                    company="Acme Corp")
    b_user = await factories.user(db, full_name="Bruno Díaz", email="bruno@globex.example",
                                  company="Globex", created_at=now - 5 * DAY)
    b_conversation = await factories.conversation(db, b_user)
    for minutes, role in ((0, "user"), (1, "agent"), (2, "user")):
        await factories.message(db, b_conversation, role, now - 5 * DAY + minutes * MINUTE)
    ids["B"] = await factories.lead(db, walk(now - 5 * DAY, ("consent", 10, "agent"),
                                             ("personal_data", 20, "agent"), ("bant", 30, "agent"),
                                             ("requirements", 40, "agent"), ("consent", 50, "manual")),
                                    user_id=b_user, conversation_id=b_conversation)
    ids["B_conversation"] = b_conversation
    await factories.bant(db, ids["B"])
    ids["B_requirements"] = await factories.requirements(
        db, ids["B"], features=["Sistema de autenticación", "Chat en vivo"], integrations=["PayPal"])
    ids["B_meeting"] = await factories.meeting(db, ids["B"], b_user, now + 2 * DAY)
    ids["C"] = await factories.lead(db, walk(now - 3 * DAY, *[(step, 2 * i, "agent")
                                                              for i, step in enumerate(STEPS) if i]),
                                    full_name="Carla Ruiz", company="Initech")
    d_user = await factories.user(db, full_name="Diego Mora", created_at=now - 20 * DAY)
    d_conversation = await factories.conversation(db, d_user)
    ids["D"] = await factories.lead(db, walk(now - 20 * DAY), user_id=d_user,
                                    conversation_id=d_conversation)
    await factories.message(db, d_conversation, "user", now - 12 * HOUR)
    ids["E"] = await factories.lead(db, walk(now - 7 * DAY - MINUTE), full_name="Eva Sanz")
    ids["F"] = await factories.lead(db, walk(now - 7 * DAY + MINUTE), full_name="Félix Gil")
    return ids


async def test_get_all_leads_first_page_shape_and_order(admin: Client, pipeline) -> None:
    reply = await admin.request("leads", "get_all_leads")
    assert reply["type"] == "success" and reply["payload"]["next_cursor"] is None
    leads = reply["payload"]["data"]
    assert [lead["id"] for lead in leads] == [str(pipeline[k]) for k in "CBFEAD"]
    b = leads[1]
    assert b["user_id"] and b["conversation_id"] == str(pipeline["B_conversation"])
    assert (b["current_step"], b["consent"]) == ("consent", True)
    assert b["user"] == {"full_name": "Bruno Díaz", "email": "bruno@globex.example",
                         "phone": "+1234567890", "company": "Globex"}
    assert b["bant_data"] == {"budget": "10000-50000", "authority": "decision_maker",
                              "need": "urgent", "timeline": "3_months"}
    assert b["requirements"] == {"id": str(pipeline["B_requirements"]), "app_type": "web_app",
                                 "deadline": "2024-06-01"}
    a = leads[4]
    assert a["bant_data"] is None and a["requirements"] is None
    assert leads[0]["completed_at"] is not None and a["completed_at"] is None


async def test_get_all_leads_pages_have_no_gaps_or_duplicates(admin: Client, pipeline, db) -> None:
    first = await admin.request("leads", "get_all_leads", {"limit": 2})
    assert [lead["id"] for lead in first["payload"]["data"]] == [str(pipeline[k]) for k in "CB"]
    # A lead created after the first page must not shift the following pages.
    await factories.lead(db, walk(dt.datetime.now(dt.timezone.utc)))
    seen, cursor = [], first["payload"]["next_cursor"]
    while cursor:
        reply = await admin.request("leads", "get_all_leads", {"limit": 2, "cursor": cursor})
        seen += [lead["id"] for lead in reply["payload"]["data"]]
        cursor = reply["payload"]["next_cursor"]
    assert seen == [str(pipeline[k]) for k in "FEAD"]


async def test_default_page_size_is_a_setting(pipeline, postgres, tmp_path) -> None:
    """`[limits] default_page_size` pages get_all_leads and get_abandoned_leads when the payload
    gives no limit (the seed's `{}` included); next_cursor says that more follow."""
    daemon = start_daemon(tmp_path, postgres, sections={"limits": {"default_page_size": 3}})
    try:
        async with open_client(daemon.url) as connection:
            client = Client(connection)
            page = await client.request("leads", "get_all_leads", {})
            nulled = await client.request("leads", "get_all_leads", {"limit": None})
            rest = await client.request("leads", "get_all_leads", {"cursor": page["payload"]["next_cursor"]})
            asked = await client.request("leads", "get_all_leads", {"limit": 6})
            abandoned = await client.request("leads", "get_abandoned_leads", {"days": 1})
    finally:
        daemon.stop()
    assert [lead["id"] for lead in page["payload"]["data"]] == [str(pipeline[k]) for k in "CBF"]
    assert nulled["payload"] == page["payload"] and page["payload"]["next_cursor"] is not None
    assert [lead["id"] for lead in rest["payload"]["data"]] == [str(pipeline[k]) for k in "EAD"]
    assert rest["payload"]["next_cursor"] is None
    assert len(asked["payload"]["data"]) == 6 and asked["payload"]["next_cursor"] is None
    assert len(abandoned["payload"]["data"]) == 3 and abandoned["payload"]["next_cursor"] is not None


async def test_get_all_leads_filters(admin: Client, pipeline) -> None:
    async def ids(payload):
        return [lead["id"] for lead in await admin.data("leads", "get_all_leads", payload)]

    assert await ids({"step": "start"}) == [str(pipeline[k]) for k in "FED"]
    assert await ids({"step": "meeting"}) == []
    assert await ids({"search": "ACME"}) == [str(pipeline["A"])]            # company, any case
    assert await ids({"search": "bruno@glob"}) == [str(pipeline["B"])]       # email
    assert await ids({"search": "carla ruiz"}) == [str(pipeline["C"])]       # name
    assert await ids({"search": "a_l"}) == [str(pipeline["A"])]              # _ is literal
    assert await ids({"search": "%"}) == []                                  # % is literal
    assert await ids({"search": "lópez", "step": "personal_data"}) == [str(pipeline["A"])]


@pytest.mark.parametrize("payload, field", [
    ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"limit": "10"}, "limit"),
    ({"step": "qualified"}, "step"), ({"search": "x" * 201}, "search"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": 5}, "cursor"), ({"page": 2}, "page"),
])
async def test_get_all_leads_rejects_bad_payloads(admin: Client, payload, field) -> None:
    error = await admin.error("leads", "get_all_leads", payload)
    assert error["code"] == "invalid_payload" and error["details"]["field"] == field


async def test_get_lead_pipeline(admin: Client, pipeline) -> None:
    columns = await admin.data("leads", "get_lead_pipeline")
    assert [c["step"] for c in columns] == STEPS
    assert {c["step"]: c["count"] for c in columns} == {
        "start": 3, "consent": 1, "personal_data": 1, "bant": 0, "requirements": 0,
        "meeting": 0, "completed": 1}
    start = columns[0]["leads"]
    # Most recently updated first: F (7 d − 1 min), E (7 d + 1 min), D (20 d).
    assert [lead["id"] for lead in start] == [str(pipeline[k]) for k in "FED"]
    assert start[0]["full_name"] == "Félix Gil" and start[0]["consent"] is False
    assert columns[3]["leads"] == []


async def test_pipeline_shows_at_most_20_leads_per_step(admin: Client, db) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    for i in range(23):
        await factories.lead(db, walk(now - i * MINUTE))
    start = (await admin.data("leads", "get_lead_pipeline"))[0]
    assert start["count"] == 23 and len(start["leads"]) == 20


async def test_get_lead_pipeline_on_an_empty_database(admin: Client, db) -> None:
    columns = await admin.data("leads", "get_lead_pipeline")
    assert columns == [{"step": step, "count": 0, "leads": []} for step in STEPS]


async def test_get_lead_with_complete_data(admin: Client, pipeline) -> None:
    lead = await admin.data("leads", "get_lead_with_complete_data", {"lead_id": str(pipeline["B"])})
    assert lead["id"] == str(pipeline["B"]) and lead["current_step"] == "consent"
    assert lead["user"]["full_name"] == "Bruno Díaz"
    conversation = lead["conversation"]
    assert conversation["id"] == str(pipeline["B_conversation"])
    assert (conversation["agent_enabled"], conversation["status"], conversation["message_count"]) == (
        True, "open", 3)
    assert conversation["last_message_at"] is not None
    assert lead["bant_data"]["authority"] == "decision_maker"
    requirements = lead["requirements"]
    assert requirements["id"] == str(pipeline["B_requirements"])
    assert [f["name"] for f in requirements["features"]] == ["Sistema de autenticación", "Chat en vivo"]
    assert [(i["name"], i["description"]) for i in requirements["integrations"]] == [("PayPal", "about PayPal")]
    assert [m["id"] for m in lead["meetings"]] == [str(pipeline["B_meeting"])]
    assert [(h["from_step"], h["to_step"], h["source"]) for h in lead["step_history"]] == [
        (None, "start", "agent"), ("start", "consent", "agent"), ("consent", "personal_data", "agent"),
        ("personal_data", "bant", "agent"), ("bant", "requirements", "agent"),
        ("requirements", "consent", "manual")]


async def test_get_lead_with_complete_data_of_a_bare_lead_and_errors(admin: Client, pipeline) -> None:
    lead = await admin.data("leads", "get_lead_with_complete_data", {"lead_id": str(pipeline["E"])})
    assert (lead["conversation"], lead["bant_data"], lead["requirements"], lead["meetings"]) == (
        None, None, None, [])
    missing = uuid.uuid4()
    error = await admin.error("leads", "get_lead_with_complete_data", {"lead_id": str(missing)})
    assert error == {"code": "not_found", "message": "no such lead", "details": {"lead_id": str(missing)}}
    for payload in ({"lead_id": "lead-qualification-id"}, {}, {"lead_id": str(missing), "x": 1}):
        assert (await admin.error("leads", "get_lead_with_complete_data", payload))["code"] == "invalid_payload"


async def test_update_lead_step_moves_and_records_history(admin: Client, pipeline, db) -> None:
    lead_id = str(pipeline["A"])
    heard: asyncio.Queue[str] = asyncio.Queue()
    await db.add_listener("wsd_changes", lambda *args: heard.put_nowait(args[3]))
    lead = await admin.data("leads", "update_lead_step", {"lead_id": lead_id, "new_step": "bant"})
    assert lead["id"] == lead_id and lead["current_step"] == "bant" and lead["user"]["company"] == "Acme Corp"
    assert orjson.loads(await asyncio.wait_for(heard.get(), 5)) == {"topic": "leads"}
    history = await db.fetch("SELECT from_step::text, to_step::text, source FROM lead_step_history "
                             "WHERE lead_id = $1 ORDER BY id", pipeline["A"])
    assert [tuple(h) for h in history][-1] == ("personal_data", "bant", "manual")
    # The same step again changes nothing and writes no history.
    again = await admin.data("leads", "update_lead_step", {"lead_id": lead_id, "new_step": "bant"})
    assert again["updated_at"] == lead["updated_at"]
    assert await db.fetchval("SELECT count(*) FROM lead_step_history WHERE lead_id = $1",
                             pipeline["A"]) == len(history)
    done = await admin.data("leads", "update_lead_step", {"lead_id": lead_id, "new_step": "completed"})
    assert done["completed_at"] is not None
    back = await admin.data("leads", "update_lead_step", {"lead_id": lead_id, "new_step": "consent"})
    assert back["completed_at"] is None and back["current_step"] == "consent"
    assert await db.fetchval("SELECT furthest_step::text FROM lead_qualifications WHERE id = $1",
                             pipeline["A"]) == "completed"
    await assert_step_counts_match(db)


async def assert_step_counts_match(db) -> None:
    """The trigger-kept lead_step_counts equal a count over the leads themselves."""
    kept = await db.fetch("SELECT c.step::text, c.current, c.furthest FROM lead_step_counts AS c "
                          "ORDER BY c.step")
    counted = await db.fetch("""
        SELECT s.step::text,
               (SELECT count(*) FROM lead_qualifications WHERE current_step = s.step) AS current,
               (SELECT count(*) FROM lead_qualifications WHERE furthest_step = s.step) AS furthest
          FROM unnest(enum_range(NULL::lead_step)) AS s(step) ORDER BY s.step""")
    assert [tuple(r) for r in kept] == [tuple(r) for r in counted]


async def test_step_counts_follow_concurrent_moves(admin: Client, pipeline, db) -> None:
    moves = [("A", "meeting"), ("B", "completed"), ("C", "start"), ("D", "bant"), ("E", "consent"),
             ("F", "completed"), ("A", "consent"), ("D", "start")]
    # Four moves in flight at once (the test daemon's per-connection bound): they run concurrently.
    sent = [await admin.send("leads", "update_lead_step", {"lead_id": str(pipeline[k]), "new_step": s})
            for k, s in moves[:4]]
    for request_id in sent:
        assert (await admin.reply_to(request_id))["type"] == "success"
    for key, step in moves[4:]:
        await admin.data("leads", "update_lead_step", {"lead_id": str(pipeline[key]), "new_step": step})
    await assert_step_counts_match(db)
    pipeline_counts = {c["step"]: c["count"] for c in await admin.data("leads", "get_lead_pipeline")}
    assert pipeline_counts == {"start": 2, "consent": 2, "personal_data": 0, "bant": 0,
                               "requirements": 0, "meeting": 0, "completed": 2}


async def test_update_lead_step_errors(admin: Client, viewer: Client, pipeline, db) -> None:
    lead_id = str(pipeline["A"])
    error = await admin.error("leads", "update_lead_step", {"lead_id": lead_id, "new_step": "won"})
    assert error["code"] == "invalid_payload" and error["details"] == {"field": "new_step"}
    missing = str(uuid.uuid4())
    assert (await admin.error("leads", "update_lead_step",
                              {"lead_id": missing, "new_step": "bant"}))["code"] == "not_found"
    assert (await viewer.error("leads", "update_lead_step",
                               {"lead_id": lead_id, "new_step": "bant"}))["code"] == "forbidden"
    assert await db.fetchval("SELECT current_step::text FROM lead_qualifications WHERE id = $1",
                             pipeline["A"]) == "personal_data"
    assert await db.fetchval("SELECT count(*) FROM lead_step_history WHERE source = 'manual'") == 1


async def test_get_conversion_stats(admin: Client, pipeline) -> None:
    stats = await admin.data("leads", "get_conversion_stats")
    got = [(s["from_step"], s["to_step"], s["reached_from"], s["reached_to"], round(s["rate"], 4),
            round(s["median_hours"], 4)) for s in stats]
    assert got == [
        ("start", "consent", 6, 3, 0.5, 10.0),              # A 24 h, B 10 h, C 2 h
        ("consent", "personal_data", 3, 3, 1.0, 10.0),      # B moved back still counts
        ("personal_data", "bant", 3, 2, 0.6667, 6.0),       # B 10 h, C 2 h
        ("bant", "requirements", 2, 2, 1.0, 6.0),
        ("requirements", "meeting", 2, 1, 0.5, 2.0),
        ("meeting", "completed", 1, 1, 1.0, 2.0),
    ]


async def test_get_conversion_stats_empty(admin: Client, db) -> None:
    stats = await admin.data("leads", "get_conversion_stats")
    assert [(s["reached_from"], s["reached_to"], s["rate"], s["median_hours"]) for s in stats] == [
        (0, 0, 0, None)] * 6


async def test_get_abandoned_leads_cut_off_at_seven_days(admin: Client, pipeline) -> None:
    reply = await admin.request("leads", "get_abandoned_leads")
    leads = reply["payload"]["data"]
    assert [lead["id"] for lead in leads] == [str(pipeline["A"]), str(pipeline["E"])]
    assert [lead["days_inactive"] for lead in leads] == [8, 7]
    assert leads[0]["user"]["full_name"] == "Ana López" and leads[0]["last_activity_at"]
    assert reply["payload"]["next_cursor"] is None


async def test_get_abandoned_leads_days_and_pages(admin: Client, pipeline) -> None:
    assert await admin.data("leads", "get_abandoned_leads", {"days": 9}) == []
    first = await admin.request("leads", "get_abandoned_leads", {"days": 1, "limit": 3})
    second = await admin.request("leads", "get_abandoned_leads",
                                 {"days": 1, "limit": 3, "cursor": first["payload"]["next_cursor"]})
    ids = [lead["id"] for page in (first, second) for lead in page["payload"]["data"]]
    # D had a message 12 h ago; C is completed.
    assert ids == [str(pipeline[k]) for k in "AEFB"]
    assert second["payload"]["next_cursor"] is None
    for days in (0, 366, "7"):
        error = await admin.error("leads", "get_abandoned_leads", {"days": days})
        assert error["code"] == "invalid_payload" and error["details"]["field"] == "days"


async def test_a_new_message_rescues_an_abandoned_lead(admin: Client, pipeline, db) -> None:
    conversation_id = await factories.conversation(db)
    await db.execute("UPDATE lead_qualifications SET conversation_id = $1 WHERE id = $2",
                     conversation_id, pipeline["E"])
    await factories.message(db, conversation_id, "user", dt.datetime.now(dt.timezone.utc))
    leads = await admin.data("leads", "get_abandoned_leads")
    assert [lead["id"] for lead in leads] == [str(pipeline["A"])]


async def test_opposite_moves_in_parallel_never_deadlock(daemon, db) -> None:
    from tests.conftest import open_client

    now = dt.datetime.now(dt.timezone.utc)
    leads = [await factories.lead(db, walk(now - DAY, ("consent", 1, "agent"), ("personal_data", 2, "agent"),
                                           ("bant", 3, "agent")))
             for _ in range(8)]
    async with open_client(daemon.url) as first, open_client(daemon.url) as second:
        clients = [Client(first), Client(second)]

        async def churn(client: Client, offset: int) -> list[str]:
            outcomes = []
            for round_ in range(6):
                sent = [await client.send("leads", "update_lead_step", {
                            "lead_id": str(lead_id),
                            "new_step": ("consent", "requirements")[(round_ + i + offset) % 2]})
                        for i, lead_id in enumerate(leads[offset * 4:offset * 4 + 4])]
                outcomes += [(await client.reply_to(r))["type"] for r in sent]
            return outcomes

        results = await asyncio.gather(churn(clients[0], 0), churn(clients[1], 1))
    assert all(outcome == "success" for outcomes in results for outcome in outcomes)
    await assert_step_counts_match(db)
