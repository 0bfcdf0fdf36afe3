"""export.*: each list as CSV in chunks over the WebSocket, equal to the JSON rows of the
same read, with the read's role checks, one export at a time per caller, on the trail."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import os
import subprocess
from typing import Any

import asyncpg
import orjson

from tests import factories
from tests.conftest import ADMIN_TOKEN, ROOT, Client, open_client
from tests.test_meetings import at, next_weekday

UTC = dt.timezone.utc
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
FORMULA = ("=", "+", "-", "@", "\t", "\r")


async def export(client: Client, action: str, payload: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The CSV text an export streams, and its final reply."""
    request_id = await client.send("export", action, payload or {})
    text = []
    while True:
        message = await client.receive()
        if message.get("id") != request_id:
            continue
        if message["type"] != "chunk":
            return "".join(text), message
        text.append(message["payload"]["data"])


def value_at(row: dict[str, Any], column: str) -> Any:
    value: Any = row
    for key in column.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def expected_cell(value: Any) -> str:
    """What a JSON row's scalar value must read as in the CSV."""
    text = "" if value is None else ("true" if value else "false") if isinstance(value, bool) else str(value)
    return "'" + text if text.startswith(FORMULA) else text


def assert_round_trip(text: str, rows: list[dict[str, Any]]) -> list[str]:
    """The CSV parsed back equals the JSON rows, cell by cell (objects as JSON text); the header."""
    header, *lines = parsed(text)
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows):
        assert len(line) == len(header)
        for column, got in zip(header, line):
            value = value_at(row, column)
            if isinstance(value, (dict, list)):
                assert orjson.loads(got) == value, column
            else:
                assert got == expected_cell(value), column
    return header


def parsed(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


async def awkward_leads(db) -> list[Any]:
    """Leads whose fields hold quotes, commas, newlines, accents and formula-looking text."""
    now = dt.datetime.now(UTC)
    path = [("start", now - 2 * DAY, "agent"), ("consent", now - 2 * DAY + HOUR, "agent"),
            ("personal_data", now - 2 * DAY + 2 * HOUR, "agent"), ("bant", now - 2 * DAY + 3 * HOUR, "agent")]
    first = await factories.lead(db, path, full_name='Ana "La Jefa", Ruíz', email="+ana@ejemplo.example",
                                 company='=HYPERLINK("http://x.example","clic")', phone="-1234")
    await factories.bant(db, first, budget="@SUM(A1:A9)", need="línea 1\nlínea 2, con coma",
                         timeline="\tTabulado")
    await factories.requirements(db, first, app_type='Ñandú, "app"\r\nmóvil')
    second = await factories.lead(db, path[:2], full_name="José Müller", company="Ωmega; Ltd.")
    third = await factories.lead(db, path, full_name="Zoë Brontë", company="Plain")
    return [first, second, third]


async def test_leads_export_round_trips_to_the_json_rows(admin: Client, db) -> None:
    await awkward_leads(db)
    for payload in ({}, {"step": "bant"}, {"search": "ruíz"}, {"filter": {"reached": "bant", "search": "ruíz"}}):
        rows = await admin.data("leads", "get_all_leads", {**payload, "limit": 1000})
        text, reply = await export(admin, "leads", payload)
        assert reply["type"] == "success", reply
        header = assert_round_trip(text, rows)
        assert header[:3] == ["id", "user_id", "conversation_id"] and "user.email" in header
        assert reply["payload"]["data"] == {"filename": "leads.csv", "content_type": "text/csv; charset=utf-8",
                                            "rows": len(rows)}
    rows = await admin.data("leads", "get_all_leads", {"step": "bant"})
    assert len(rows) == 2
    text, _ = await export(admin, "leads", {"step": "bant"})
    header, *lines = parsed(text)
    [record] = [dict(zip(header, line)) for line in lines if line[header.index("user.full_name")].startswith("Ana")]
    assert record["user.full_name"] == 'Ana "La Jefa", Ruíz'
    assert record["user.email"] == "'+ana@ejemplo.example"
    assert record["user.company"] == '\'=HYPERLINK("http://x.example","clic")'
    assert record["bant_data.need"] == "línea 1\nlínea 2, con coma"
    assert record["bant_data.timeline"] == "'\tTabulado"
    assert record["requirements.app_type"] == 'Ñandú, "app"\r\nmóvil'
    assert text.endswith("\r\n") and '"Ana ""La Jefa"", Ruíz"' in text  # RFC 4180 quoting


async def test_the_byte_order_mark_is_optional(admin: Client, db) -> None:
    await awkward_leads(db)
    plain, _ = await export(admin, "leads")
    marked, _ = await export(admin, "leads", {"bom": True})
    assert not plain.startswith("\ufeff") and marked == "\ufeff" + plain
    error = (await export(admin, "leads", {"bom": "yes"}))[1]["payload"]
    assert (error["code"], error["details"]) == ("invalid_payload", {"field": "bom"})


async def test_abandoned_meetings_and_trail_exports_match_their_reads(admin: Client, db) -> None:
    leads = await awkward_leads(db)
    await db.execute("UPDATE lead_qualifications SET updated_at = now() - interval '30 days', "
                     "last_activity_at = now() - interval '30 days'")
    user_id = await db.fetchval("SELECT user_id FROM lead_qualifications WHERE id = $1", leads[0])
    await factories.meeting(db, leads[0], user_id, at(next_weekday(), 10))
    await factories.meeting(db, leads[0], user_id, at(next_weekday(), 12), status="cancelled")
    await db.execute("UPDATE meetings SET subject = '=1+1, \"hoy\"' WHERE status = 'cancelled'")
    await admin.data("leads", "update_lead_step", {"lead_id": str(leads[2]), "new_step": "requirements"})
    cases = [("abandoned_leads", "leads", "get_abandoned_leads", {"days": 7}),
             ("meetings", "meetings", "get_all_meetings", {}),
             ("meetings", "meetings", "get_all_meetings", {"filter": "by_status", "status": "cancelled"}),
             ("trail", "trail", "get_trail", {"action": "update_lead_step"})]
    for name, resource, action, payload in cases:
        rows = await admin.data(resource, action, payload)
        assert rows, name
        text, reply = await export(admin, name, payload)
        assert reply["type"] == "success", reply
        assert_round_trip(text, rows)


async def test_a_viewer_exports_what_it_can_read_and_nothing_else(viewer: Client, daemon, db) -> None:
    await awkward_leads(db)
    text, reply = await export(viewer, "leads")
    assert reply["type"] == "success" and len(parsed(text)) == 4
    text, reply = await export(viewer, "trail")
    assert (text, reply["payload"]["code"]) == ("", "forbidden")
    async with open_client(daemon.url, token=None) as connection:
        anonymous = Client(connection)
        text, reply = await export(anonymous, "leads")
        assert (text, reply["payload"]["code"]) == ("", "unauthorized")
    text, reply = await export(viewer, "users")
    assert (text, reply["payload"]["code"]) == ("", "unknown_action")


async def test_one_export_at_a_time_per_caller(admin: Client, daemon, db, postgres) -> None:
    await awkward_leads(db)
    locker = await asyncpg.connect(postgres)
    try:
        await locker.execute("BEGIN")
        await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # the first export waits
        first = await admin.send("export", "leads", {})
        await asyncio.sleep(0.3)
        async with open_client(daemon.url) as connection:   # the same token, another connection
            other = Client(connection)
            text, reply = await export(other, "leads")
            assert (text, reply["payload"]["code"]) == ("", "rate_limited")
        await locker.execute("ROLLBACK")
    finally:
        await locker.close()
    while (message := await admin.receive())["type"] == "chunk" or message.get("id") != first:
        pass
    assert message["type"] == "success"
    text, reply = await export(admin, "leads")   # the next one runs
    assert reply["type"] == "success"


async def test_each_export_is_on_the_trail(admin: Client, db) -> None:
    await awkward_leads(db)
    await export(admin, "leads", {"search": "Ruíz", "step": "bant"})
    [entry] = await admin.data("trail", "get_trail", {"action": "export.leads"})
    assert (entry["actor"], entry["resource"], entry["outcome"]) == ("test-admin", "export", "completed (1 rows)")
    assert entry["payload"] == {"step": "bant", "search": "***", "filter": None}


async def test_wsd_cli_writes_the_csv_to_stdout(admin: Client, daemon, db) -> None:
    await awkward_leads(db)
    text, _ = await export(admin, "leads", {"step": "bant"})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_TOKEN": ADMIN_TOKEN}
    done = await asyncio.to_thread(
        subprocess.run, [str(ROOT / "bin" / "wsd-cli"), "--url", daemon.url, "export", "leads", '{"step": "bant"}'],
        env=env, capture_output=True, timeout=60, cwd=ROOT / "tests")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == text
    assert orjson.loads(done.stderr)["payload"]["data"]["rows"] == 2
