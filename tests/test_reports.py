"""Reporting periods on the aggregates (issue 25): without `period` every answer is the
seed's, byte for byte (against the daemon as it was before periods existed); with one, the
figures are those of the period's leads and events; bad periods are `invalid_payload`."""

from __future__ import annotations

import datetime as dt
import random
import re
import subprocess
import tarfile
import io
import uuid
from pathlib import Path
from typing import Any, AsyncIterator
from zoneinfo import ZoneInfo

import asyncpg
import orjson
import pytest

from tests import factories
from tests.conftest import ROOT, Client, Daemon, open_client, start_daemon
from wsd.steps import STEPS

# The last commit before reporting periods: its daemon answers the seed's shapes.
BASE_COMMIT = "1c3c0b6d37024adda36bb4cd680485ce26128ee2"
MADRID = ZoneInfo("Europe/Madrid")
AGGREGATES = [("dashboard", "get_dashboard_stats"), ("dashboard", "get_conversion_funnel"),
              ("dashboard", "get_activity_timeline"), ("dashboard", "get_agent_performance"),
              ("leads", "get_conversion_stats"), ("leads", "get_lead_pipeline"),
              ("requirements", "get_popular_features"), ("requirements", "get_popular_integrations")]
FEATURES = ("Chat en vivo", "Pagos", "Mapa", "Informes")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def seed(db: asyncpg.Connection, leads: int, rng: random.Random) -> list[uuid.UUID]:
    """Leads created over the last 120 days, each walked some way down the funnel (some moved
    back), with conversations, messages, requirements and meetings."""
    ids = []
    for n in range(leads):
        created = now() - dt.timedelta(days=rng.uniform(0, 120))
        conversation = await factories.conversation(db, agent_enabled=rng.random() < 0.7)
        path = [("start", created, "agent")]
        at = created
        for step in STEPS[1:rng.randint(1, len(STEPS))]:
            at = min(at + dt.timedelta(hours=rng.uniform(1, 200)), now() - dt.timedelta(minutes=1))
            path.append((step, at, "agent"))
        if len(path) > 2 and rng.random() < 0.2:
            path.append((path[-2][0], at + dt.timedelta(seconds=1), "manual"))
        lead_id = await factories.lead(db, path, conversation_id=conversation, full_name=f"Cliente {n}")
        await factories.message(db, conversation, "user", created)
        await factories.message(db, conversation, "agent", created + dt.timedelta(seconds=rng.uniform(1, 9)))
        if rng.random() < 0.6:
            await factories.requirements(db, lead_id, features=rng.sample(FEATURES, rng.randint(1, 3)),
                                         integrations=rng.sample(("Stripe", "Slack"), rng.randint(0, 2)))
        ids.append(lead_id)
    return ids


@pytest.fixture
async def seeded(db: asyncpg.Connection) -> list[uuid.UUID]:
    return await seed(db, 60, random.Random(25))


@pytest.fixture(scope="session")
def base_daemon(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The daemon of BASE_COMMIT on the same database (the new migration applied does not
    change what it reads)."""
    tree = tmp_path_factory.mktemp("base")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASE_COMMIT, "wsd"],
                             check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(tree, filter="data")
    running = start_daemon(tree, postgres, env={"PYTHONPATH": str(tree)})
    yield running
    running.stop()


async def raw_answer(url: str, resource: str, action: str, payload: Any = None) -> bytes:
    async with open_client(url) as connection:
        message: dict[str, Any] = {"resource": resource, "action": action, "id": 1}
        if payload is not None:
            message["payload"] = payload
        await connection.send(orjson.dumps(message).decode())
        while True:  # change hints of the seeding may come first
            answer = await connection.recv()
            raw = answer if isinstance(answer, bytes) else answer.encode()
            if orjson.loads(raw).get("id") == 1:
                return raw


def without_clock_reading(answer: bytes) -> bytes:
    """Agent performance's windows end at the instant of the request: its since/until cut
    out (in place, the rest of the bytes kept as they are)."""
    return re.sub(rb'"(since|until)":"[^"]+"', rb'"\1":"-"', answer)


async def test_without_a_period_every_answer_is_the_one_before_periods(
        daemon: Daemon, base_daemon: Daemon, seeded: list[uuid.UUID]) -> None:
    for resource, action in AGGREGATES:
        payloads: tuple[dict[str, Any] | None, ...] = (None, {})
        for payload in payloads:
            ours = without_clock_reading(await raw_answer(daemon.url, resource, action, payload))
            theirs = without_clock_reading(await raw_answer(base_daemon.url, resource, action, payload))
            assert b'"success"' in ours and ours == theirs, (resource, action)
    for payload in ({"days": 30}, {"days": 1}):
        assert (without_clock_reading(await raw_answer(daemon.url, "dashboard", "get_agent_performance", payload))
                == without_clock_reading(await raw_answer(base_daemon.url, "dashboard", "get_agent_performance",
                                                          payload)))
    for payload in ({"limit": 2},):
        assert (await raw_answer(daemon.url, "requirements", "get_popular_features", payload)
                == await raw_answer(base_daemon.url, "requirements", "get_popular_features", payload))


def local_bounds(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    since = dt.datetime.combine(first, dt.time(), MADRID)
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), MADRID)
    return since, until


async def test_period_funnels_count_the_periods_leads(admin: Client, db: asyncpg.Connection,
                                                      seeded: list[uuid.UUID]) -> None:
    today = now().astimezone(MADRID).date()
    first, last = today - dt.timedelta(days=29), today
    since, until = local_bounds(first, last)
    answer = await admin.data("dashboard", "get_conversion_funnel", {"period": "last_30_days", "compare": True})
    assert answer["mode"] == "cohort" and answer["period"]["from"] == first.isoformat()
    for row in answer["steps"]:
        expected = await db.fetchval(
            "SELECT count(*) FROM lead_qualifications WHERE created_at >= $1 AND created_at < $2 "
            "AND furthest_step >= $3::lead_step", since, until, row["step"])
        assert row["reached"] == expected, row
        assert row["filters"]["reached"] == {"created": {"from": first.isoformat(), "to": last.isoformat()},
                                             "reached": row["step"]}
    assert answer["steps"][0]["reached"] > 0
    previous_since, previous_until = local_bounds(first - dt.timedelta(days=30), first - dt.timedelta(days=1))
    previous_start = await db.fetchval(
        "SELECT count(*) FROM lead_qualifications WHERE created_at >= $1 AND created_at < $2",
        previous_since, previous_until)
    assert answer["previous"]["steps"][0]["reached"] == previous_start
    assert answer["change"]["steps"][0]["reached"]["absolute"] == answer["steps"][0]["reached"] - previous_start

    activity = await admin.data("dashboard", "get_conversion_funnel", {"period": "last_30_days", "mode": "activity"})
    for row in activity["steps"]:
        expected = await db.fetchval(
            "SELECT count(*) FROM lead_step_entries WHERE step = $3::lead_step AND entered_at >= $1 "
            "AND entered_at < $2", since, until, row["step"])
        assert row["entered"] == expected, row


async def test_every_aggregate_takes_a_period_and_compare(admin: Client, seeded: list[uuid.UUID]) -> None:
    today = now().astimezone(MADRID).date()
    for resource, action in AGGREGATES:
        for period in ("today", "last_7_days", "this_month", "this_quarter",
                       {"from": (today - dt.timedelta(days=365)).isoformat(), "to": today.isoformat()}):
            answer = await admin.data(resource, action, {"period": period, "compare": True})
            assert set(answer["period"]) == {"from", "to", "since", "until"}
            assert "previous" in answer and "change" in answer, (action, period)


async def test_timeline_buckets_follow_the_granularity(admin: Client, db: asyncpg.Connection,
                                                       seeded: list[uuid.UUID]) -> None:
    answer = await admin.data("dashboard", "get_activity_timeline", {"period": "last_90_days", "granularity": "week"})
    assert answer["granularity"] == "week"
    since = dt.datetime.fromisoformat(answer["period"]["since"])
    until = dt.datetime.fromisoformat(answer["period"]["until"])
    assert dt.datetime.fromisoformat(answer["buckets"][0]["start"]) == since
    assert all(dt.datetime.fromisoformat(b["start"]).astimezone(MADRID).weekday() == 0
               for b in answer["buckets"][1:])
    expected = await db.fetchval("SELECT count(*) FROM lead_qualifications WHERE created_at >= $1 "
                                 "AND created_at < $2", since, until)
    assert sum(b["new_leads"] for b in answer["buckets"]) == expected > 0
    day = await admin.data("dashboard", "get_activity_timeline", {"period": "today"})
    assert day["granularity"] == "hour" and len(day["buckets"]) in (23, 24, 25)


@pytest.mark.parametrize(("resource", "action", "payload", "field"), [
    ("dashboard", "get_conversion_funnel", {"period": {"from": "2026-03-10", "to": "2026-03-09"}}, "period.to"),
    ("dashboard", "get_conversion_funnel", {"period": {"from": "2025-01-01", "to": "2026-01-02"}}, "period.to"),
    ("dashboard", "get_conversion_funnel", {"period": "last_year"}, "period"),
    ("dashboard", "get_conversion_funnel", {"mode": "cohort"}, "mode"),
    ("dashboard", "get_dashboard_stats", {"compare": True}, "compare"),
    ("dashboard", "get_activity_timeline", {"period": "last_90_days", "granularity": "hour"}, "granularity"),
    ("dashboard", "get_agent_performance", {"period": "today", "days": 3}, "days"),
    ("dashboard", "get_real_time_metrics", {"period": "today"}, "period"),
    ("leads", "get_lead_with_complete_data", {"lead_id": str(uuid.uuid4()), "period": "today"}, "period"),
])
async def test_bad_periods_are_invalid_payload_naming_the_field(
        admin: Client, resource: str, action: str, payload: dict[str, Any], field: str) -> None:
    error = await admin.error(resource, action, payload)
    assert error["code"] == "invalid_payload", error
    assert error["details"]["field"] == field, error
    assert await admin.data("dashboard", "get_dashboard_stats") is not None  # the connection stays open


def counts_with_filters(answer: Any, path: str = "") -> list[tuple[str, int, dict[str, Any]]]:
    """Every (place, count, filter) of an answer: each `filters` entry names a count beside it."""
    found: list[tuple[str, int, dict[str, Any]]] = []
    if isinstance(answer, dict):
        for name, wanted in answer.get("filters", {}).items():
            if name in answer and isinstance(answer[name], int):
                found.append((f"{path}.{name}", answer[name], wanted))
            elif isinstance(answer.get("in_period"), dict) and name in answer["in_period"]:
                found.append((f"{path}.in_period.{name}", answer["in_period"][name], wanted))
            else:  # a map of counts (leads_by_step) with a map of filters
                for key, inner in wanted.items():
                    found.append((f"{path}.{name}.{key}", answer[name][key], inner))
        for key, value in answer.items():
            if key not in ("filters", "change"):
                found += counts_with_filters(value, f"{path}.{key}")
    elif isinstance(answer, list):
        for n, value in enumerate(answer):
            found += counts_with_filters(value, f"{path}[{n}]")
    return found


PERIOD_CALLS = [("dashboard", "get_dashboard_stats", {}), ("dashboard", "get_conversion_funnel", {}),
                ("dashboard", "get_conversion_funnel", {"mode": "activity"}),
                ("leads", "get_conversion_stats", {}), ("leads", "get_lead_pipeline", {}),
                ("requirements", "get_popular_features", {}), ("requirements", "get_popular_integrations", {})]


async def test_every_count_opens_exactly_its_leads(admin: Client, db: asyncpg.Connection,
                                                  seeded: list[uuid.UUID]) -> None:
    rng = random.Random(7)
    checked = 0
    for round_ in range(3):
        for resource, action, extra in PERIOD_CALLS:
            for period in ("last_7_days", "last_30_days", "this_quarter"):
                answer = await admin.data(resource, action, {"period": period, "compare": True, **extra})
                for place, count, wanted in counts_with_filters(answer):
                    reply = await admin.request("leads", "get_all_leads", {"filter": wanted, "limit": 1000})
                    assert reply["type"] == "success", reply
                    assert reply["payload"]["total"] == count, (action, period, place, wanted)
                    assert len(reply["payload"]["data"]) == count, (action, period, place)
                    checked += 1
        # Writes between rounds: step moves (forward and back) and a new lead today.
        for lead_id in rng.sample(seeded, 8):
            step = rng.choice(STEPS)
            await admin.data("leads", "update_lead_step", {"lead_id": str(lead_id), "new_step": step})
        new_lead = await factories.lead(db, [("start", now(), "agent"), ("consent", now(), "agent")],
                                        full_name=f"Nuevo {round_}")
        await factories.requirements(db, new_lead, features=["Pagos", " pagos extra "], integrations=["Slack"])
        for table in ("features", "integrations"):  # items added now to older requirements, and one removed
            await db.execute(f"INSERT INTO {table} (requirements_id, name) SELECT id, $1 FROM requirements "
                             "ORDER BY created_at LIMIT 5 ON CONFLICT DO NOTHING", rng.choice(FEATURES))
        await db.execute("DELETE FROM features WHERE id = (SELECT id FROM features ORDER BY created_at DESC LIMIT 1)")
    assert checked > 300


@pytest.mark.parametrize(("wanted", "field"), [
    ({"stage": "bant"}, "filter.stage"),
    ({"step": 3}, "filter.step"),
    ({"created": {"from": "2026-01-02", "to": "2026-01-01"}}, "filter.created.to"),
    ({"agent": True}, "filter.agent"),
    ({"wants_feature": ["Pagos"]}, "filter.wants_feature"),
    ({"wanted": {"from": "2026-01-01", "to": "2026-01-31"}}, "filter.wanted"),
])
async def test_bad_filters_are_invalid_payload_naming_the_field(admin: Client, wanted: dict[str, Any],
                                                                field: str) -> None:
    error = await admin.error("leads", "get_all_leads", {"filter": wanted})
    assert error["code"] == "invalid_payload" and error["details"]["field"] == field, error


async def test_step_durations_are_exact_and_open_their_leads(admin: Client, db: asyncpg.Connection,
                                                             seeded: list[uuid.UUID]) -> None:
    # Some agents switched off, through wsd (the leads' copy follows).
    conversations = await db.fetch("SELECT conversation_id FROM lead_qualifications LIMIT 15")
    for row in conversations:
        await admin.data("conversations", "update_agent_status",
                         {"conversation_id": str(row["conversation_id"]), "enabled": False})
    answer = await admin.data("leads", "get_step_durations")
    assert [row["step"] for row in answer] == list(STEPS)
    asked_at = now()
    for row in answer:
        threshold = row["stalled_after_hours"]
        for agent in ("on", "off"):
            part = row[f"agent_{agent}"]
            exact = await db.fetchrow(
                "SELECT count(*) AS leads, percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP ("
                "  ORDER BY extract(epoch FROM $3::timestamptz - lead_step_since(l.id, l.current_step, l.created_at)) / 3600) AS p,"
                " count(*) FILTER (WHERE lead_step_since(l.id, l.current_step, l.created_at)"
                "                  < $3::timestamptz - make_interval(secs => $4::float8 * 3600)) AS stalled"
                "  FROM lead_qualifications AS l LEFT JOIN conversations AS c ON c.id = l.conversation_id"
                " WHERE l.current_step = $1::lead_step AND coalesce(c.agent_enabled, false) = $2",
                row["step"], agent == "on", asked_at, threshold)
            assert part["leads"] == exact["leads"], (row["step"], agent)
            if exact["leads"]:
                # Measured a moment apart: the same ranks, a few milliseconds later.
                assert part["median_hours"] == pytest.approx(exact["p"][0], abs=0.01)
                assert part["p90_hours"] == pytest.approx(exact["p"][1], abs=0.01)
            else:
                assert part["median_hours"] is None
            assert part["stalled"] == (exact["stalled"] if threshold is not None else 0)
            for name in ("leads", "stalled"):
                reply = await admin.request("leads", "get_all_leads", {"filter": part["filters"][name]})
                assert reply["payload"]["total"] == part[name], (row["step"], agent, name)
        assert row["leads"] == row["agent_on"]["leads"] + row["agent_off"]["leads"]
    assert sum(row["leads"] for row in answer) == len(seeded)
    assert any(row["agent_off"]["leads"] for row in answer) and any(row["stalled"] for row in answer)


@pytest.fixture
def midnight_daemon(postgres: str, tmp_path: Path) -> Any:
    """A daemon whose business clock starts 3 s before the next local midnight (Madrid),
    with its safety re-run out of the way (an hour) so only the midnight re-run can move a
    window."""
    today = now().astimezone(MADRID).date()
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), MADRID)
    running = start_daemon(tmp_path, postgres, env={"WSD_CLOCK_START": (midnight - dt.timedelta(seconds=3)).isoformat()},
                           sections={"live": {"safety_rerun_seconds": 3600.0}})
    yield running, today
    running.stop()


async def test_a_live_last_7_days_moves_its_window_at_local_midnight(
        midnight_daemon: tuple[Daemon, dt.date], db: asyncpg.Connection) -> None:
    daemon, today = midnight_daemon
    # Created on the first day of the window before midnight: counted until midnight, not after.
    leaving = dt.datetime.combine(today - dt.timedelta(days=6), dt.time(12), MADRID)
    await factories.lead(db, [("start", leaving, "agent")], full_name="Se va")
    await factories.lead(db, [("start", now(), "agent")], full_name="Se queda")
    async with open_client(daemon.url) as connection:
        client = Client(connection)
        subscribed = await client.data("live", "subscribe", {
            "resource": "dashboard", "action": "get_conversion_funnel", "payload": {"period": "last_7_days"}})
        first = subscribed["data"]
        assert first["period"]["to"] == today.isoformat()
        assert first["steps"][0]["reached"] == 2
        while (message := await client.receive(timeout=10))["type"] != "update":
            pass  # midnight comes within 3 s; nothing else re-runs the query (change hints may come)
        moved = message["payload"]["data"]
        assert moved["period"]["from"] == (today - dt.timedelta(days=5)).isoformat()
        assert moved["period"]["to"] == (today + dt.timedelta(days=1)).isoformat()
        assert moved["steps"][0]["reached"] == 1


async def test_period_conversion_medians_are_percentile_cont(admin: Client, db: asyncpg.Connection,
                                                             seeded: list[uuid.UUID]) -> None:
    for period in ("last_30_days", "this_quarter", "last_90_days"):
        answer = await admin.data("leads", "get_conversion_stats", {"period": period})
        since = dt.datetime.fromisoformat(answer["period"]["since"])
        until = dt.datetime.fromisoformat(answer["period"]["until"])
        for pair in answer["pairs"]:
            exact = await db.fetchval(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY hours_from_previous) FROM lead_step_entries "
                "WHERE step = $1::lead_step AND entered_at >= $2 AND entered_at < $3 "
                "AND hours_from_previous IS NOT NULL", pair["to_step"], since, until)
            assert pair["median_hours"] == exact, (period, pair)  # bit for bit
        assert any(pair["median_hours"] is not None for pair in answer["pairs"])


async def test_a_figure_filter_totals_from_kept_counts_as_counting_would(
        admin: Client, db: asyncpg.Connection, seeded: list[uuid.UUID]) -> None:
    """A filter that is exactly one kept figure's (agent on/off, a step, no filter at all,
    the activity funnel's `entered`, a popular feature or integration by name, spelled as
    users type it) takes its total from the kept counts; the same filter with a search beside
    it (counted) must agree, and so must the leads listed."""
    today = dt.datetime.now(MADRID).date()
    days = {"from": (today - dt.timedelta(days=29)).isoformat(), "to": today.isoformat()}
    for wanted in ({"agent": "on"}, {"agent": "off"}, {"step": "start"}, {},
                   {"entered": {"step": "bant", **days}}, {"entered": {"step": "consent", **days}},
                   {"wants_feature": "  PAGOS "}, {"wants_feature": "Mapa"}, {"wants_integration": "stripe"}):
        kept = await admin.request("leads", "get_all_leads", {"filter": wanted, "limit": 1000})
        counted = await admin.request("leads", "get_all_leads", {"filter": {**wanted, "search": "@"}, "limit": 1000})
        assert kept["payload"]["total"] == counted["payload"]["total"] == len(kept["payload"]["data"]), wanted
        assert kept["payload"]["total"] > 0, wanted


async def test_a_time_in_step_filter_totals_from_kept_counts_as_counting_would(
        admin: Client, db: asyncpg.Connection, seeded: list[uuid.UUID]) -> None:
    """`stalled` with at most a step and an agent switch: the total comes from the kept
    per-day counts; the same filter with a search beside it (counted) must agree."""
    for wanted in ({"stalled": True}, {"stalled": False}, {"stalled": True, "agent": "on"},
                   {"stalled": False, "step": "start"}, {"stalled": True, "step": "bant", "agent": "off"}):
        kept = await admin.request("leads", "get_all_leads", {"filter": wanted, "limit": 1000})
        counted = await admin.request("leads", "get_all_leads", {"filter": {**wanted, "search": "@"}, "limit": 1000})
        assert kept["payload"]["total"] == counted["payload"]["total"] == len(kept["payload"]["data"]), wanted
    assert kept["payload"]["total"] > 0


async def test_a_filter_given_alone_is_read_from_its_own_rows_as_the_leads_would_give_it(
        admin: Client, db: asyncpg.Connection, seeded: list[uuid.UUID]) -> None:
    """A step-entry, meeting, item or search filter given alone takes its own reading
    (single_filter_leads);
    beside `reached: start` (every lead) it goes through the general one. Both give the same
    leads in the same order and the same total, and paging by cursor walks the same list."""
    leads = await db.fetch("SELECT id, user_id FROM lead_qualifications WHERE id = ANY($1) ORDER BY id", seeded)
    for n, lead in enumerate(leads[:12]):
        start = now() + dt.timedelta(days=1 + n) if n % 3 == 0 else now() - dt.timedelta(days=1 + n)
        await factories.meeting(db, lead["id"], lead["user_id"], start, status="cancelled" if n % 3 == 2 else "scheduled")
        if n % 4 == 0:  # a second meeting of the same status: the lead is listed once
            await factories.meeting(db, lead["id"], lead["user_id"], start + dt.timedelta(hours=2),
                                    status="cancelled" if n % 3 == 2 else "scheduled")
    today = dt.datetime.now(MADRID).date()
    days = {"from": (today - dt.timedelta(days=60)).isoformat(), "to": today.isoformat()}
    for wanted in ({"entered": {"step": "consent", **days}}, {"entered": {"step": "completed", **days}},
                   {"meeting": "scheduled"}, {"meeting": "completed"}, {"meeting": "cancelled"},
                   {"wants_feature": "pagos"}, {"wants_feature": "Mapa", "wanted": days},
                   {"wants_integration": "Slack"}, {"wants_integration": "STRIPE", "wanted": days},
                   {"search": "cliente 1"}, {"search": "nadie"}):
        alone = await admin.request("leads", "get_all_leads", {"filter": wanted, "limit": 1000})
        general = await admin.request("leads", "get_all_leads", {"filter": {**wanted, "reached": "start"}, "limit": 1000})
        listed = [lead["id"] for lead in alone["payload"]["data"]]
        assert listed == [lead["id"] for lead in general["payload"]["data"]], wanted
        assert alone["payload"]["total"] == general["payload"]["total"] == len(listed), wanted
        paged, cursor = [], None
        while True:
            page = (await admin.request("leads", "get_all_leads", {"filter": wanted, "limit": 3, "cursor": cursor}))["payload"]
            assert page["total"] == len(listed)
            paged += [lead["id"] for lead in page["data"]]
            if (cursor := page["next_cursor"]) is None:
                break
        assert paged == listed, wanted
        assert len(listed) > 0 or wanted == {"search": "nadie"}, wanted
