"""conversations.update_agent_status, end to end: socket, database, NOTIFY and event."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import orjson

from tests import factories
from tests.conftest import Client, conversation_locked


async def test_update_agent_status_switches_and_returns_the_row(admin: Client, db) -> None:
    conversation_id = await factories.conversation(db)
    before = await db.fetchval("SELECT updated_at FROM conversations WHERE id = $1", conversation_id)
    data = await admin.data("conversations", "update_agent_status",
                            {"conversation_id": str(conversation_id), "enabled": False})
    row = await db.fetchrow("SELECT agent_enabled, updated_at FROM conversations WHERE id = $1",
                            conversation_id)
    assert data["id"] == str(conversation_id)
    assert data["agent_enabled"] is False and row["agent_enabled"] is False
    assert data["updated_at"] == row["updated_at"].isoformat()
    assert row["updated_at"] > before
    data = await admin.data("conversations", "update_agent_status",
                            {"conversation_id": str(conversation_id), "enabled": True})
    assert data["agent_enabled"] is True


async def test_only_real_switches_are_recorded(admin: Client, db) -> None:
    conversation_id = await factories.conversation(db)
    for enabled in (False, False, True):
        await admin.data("conversations", "update_agent_status",
                         {"conversation_id": str(conversation_id), "enabled": enabled})
    rows = await db.fetch("SELECT enabled FROM agent_status_changes WHERE conversation_id = $1 "
                          "ORDER BY id", conversation_id)
    assert [r["enabled"] for r in rows] == [False, True]


async def test_notify_reaches_a_listener(admin: Client, db, postgres) -> None:
    conversation_id = await factories.conversation(db)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await db.add_listener("wsd_agent_status", lambda *args: heard.put_nowait(args[3]))
    await admin.data("conversations", "update_agent_status",
                     {"conversation_id": str(conversation_id), "enabled": False})
    payload = orjson.loads(await asyncio.wait_for(heard.get(), 5))
    assert payload == {"conversation_id": str(conversation_id), "enabled": False}


async def test_other_clients_get_an_agent_status_event(admin: Client, viewer: Client, db) -> None:
    conversation_id = await factories.conversation(db)
    await admin.data("conversations", "update_agent_status",
                     {"conversation_id": str(conversation_id), "enabled": False})
    expected = {"type": "event", "topic": "agent_status",
                "payload": {"conversation_id": str(conversation_id), "enabled": False}}
    # Events of earlier tests' writes may still be on their way: wait for this one.
    while (event := await viewer.receive()) != expected:
        assert event["type"] == "event"


async def test_unknown_conversation_is_not_found(admin: Client, db) -> None:
    missing = uuid.uuid4()
    error = await admin.error("conversations", "update_agent_status",
                              {"conversation_id": str(missing), "enabled": False})
    assert error == {"code": "not_found", "message": "no such conversation",
                     "details": {"conversation_id": str(missing)}}


async def test_invalid_payloads_name_the_field(admin: Client, db) -> None:
    conversation_id = str(await factories.conversation(db))
    cases = [
        ({"conversation_id": conversation_id, "enabled": "false"}, "enabled"),
        ({"conversation_id": conversation_id, "enabled": 0}, "enabled"),
        ({"conversation_id": conversation_id, "enabled": None}, "enabled"),
        ({"conversation_id": conversation_id}, "enabled"),
        ({"conversation_id": "conv-id", "enabled": True}, "conversation_id"),
        ({"conversation_id": 12, "enabled": True}, "conversation_id"),
        ({"enabled": True}, "conversation_id"),
        ({"conversation_id": conversation_id, "enabled": True, "force": True}, "force"),
    ]
    for payload, field in cases:
        error = await admin.error("conversations", "update_agent_status", payload)
        assert error["code"] == "invalid_payload", payload
        assert error["details"] == {"field": field}, payload
    assert (await admin.error("conversations", "update_agent_status"))["code"] == "invalid_payload"
    assert await db.fetchval("SELECT agent_enabled FROM conversations WHERE id = $1",
                             uuid.UUID(conversation_id)) is True
    assert await db.fetchval("SELECT count(*) FROM agent_status_changes") == 0


async def test_slow_request_does_not_hold_up_a_fast_one(admin: Client, db, postgres) -> None:
    slow_id, fast_id = await factories.conversation(db), await factories.conversation(db)
    async with conversation_locked(postgres, slow_id):
        slow = await admin.send("conversations", "update_agent_status",
                                {"conversation_id": str(slow_id), "enabled": False})
        fast = await admin.send("conversations", "update_agent_status",
                                {"conversation_id": str(fast_id), "enabled": False})
        first = await admin.next_reply()
        assert first["id"] == fast and first["type"] == "success"
    second = await admin.reply_to(slow)
    assert second["type"] == "success" and second["payload"]["data"]["agent_enabled"] is False


async def test_in_flight_requests_per_connection_are_bounded(admin: Client, db, postgres) -> None:
    conversation_id = await factories.conversation(db)
    payload = {"conversation_id": str(conversation_id), "enabled": False}
    async with conversation_locked(postgres, conversation_id):
        blocked = [await admin.send("conversations", "update_agent_status", payload) for _ in range(4)]
        over = await admin.reply_to(await admin.send("conversations", "update_agent_status", payload))
        assert over["payload"]["code"] == "rate_limited"
        assert over["payload"]["details"] == {"limit": 4}
    for request_id in blocked:
        assert (await admin.reply_to(request_id))["type"] == "success"


async def test_agent_history_names_who_switched_and_why(admin: Client, viewer: Client, db, postgres) -> None:
    conversation_id = await factories.conversation(db)
    await admin.data("conversations", "update_agent_status",
                     {"conversation_id": str(conversation_id), "enabled": False, "reason": "pide hablar con ventas"})
    # The AI agent's worker, straight into PostgreSQL: once naming itself, once not.
    worker = await asyncpg.connect(postgres)
    try:
        async with worker.transaction():
            await worker.execute("SET LOCAL wsd.actor = 'agent-worker-2'")
            await worker.execute("SET LOCAL wsd.reason = 'cliente satisfecho'")
            await worker.execute("UPDATE conversations SET agent_enabled = true WHERE id = $1", conversation_id)
        async with worker.transaction():
            await worker.execute("UPDATE conversations SET agent_enabled = false WHERE id = $1", conversation_id)
        # A setting of an earlier transaction does not leak into the next one.
        await worker.execute("UPDATE conversations SET agent_enabled = true WHERE id = $1", conversation_id)
    finally:
        await worker.close()
    history = await viewer.data("conversations", "get_agent_history", {"conversation_id": str(conversation_id)})
    assert [(h["enabled"], h["actor"], h["actor_role"], h["reason"]) for h in history] == [
        (False, "test-admin", "admin", "pide hablar con ventas"),
        (True, "agent-worker-2", None, "cliente satisfecho"),
        (False, "agent", None, None),
        (True, "agent", None, None)]
    stored = await db.fetch("SELECT changed_at FROM agent_status_changes WHERE conversation_id = $1 "
                            "ORDER BY changed_at, id", conversation_id)
    assert [dt.datetime.fromisoformat(h["at"]) for h in history] == [r["changed_at"] for r in stored]


async def test_agent_history_of_an_unknown_conversation_is_not_found(viewer: Client, db) -> None:
    missing = str(uuid.uuid4())
    error = await viewer.error("conversations", "get_agent_history", {"conversation_id": missing})
    assert (error["code"], error["details"]) == ("not_found", {"conversation_id": missing})
    quiet = await factories.conversation(db)
    assert await viewer.data("conversations", "get_agent_history", {"conversation_id": str(quiet)}) == []


async def test_a_reason_is_short_text(admin: Client, db) -> None:
    conversation_id = str(await factories.conversation(db))
    for reason in ("", "x" * 501, 7):
        error = await admin.error("conversations", "update_agent_status",
                                  {"conversation_id": conversation_id, "enabled": False, "reason": reason})
        assert (error["code"], error["details"]) == ("invalid_payload", {"field": "reason"})
