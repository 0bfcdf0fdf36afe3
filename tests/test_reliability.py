"""The runtime under the faults an operator meets: PostgreSQL dying and coming back, wsd killed,
clients that stop reading, floods of refused handshakes, a crashing worker, every limit.

Each test runs real processes: a wsd daemon, an embedded PostgreSQL, real sockets.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import asyncpg
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests import factories
from tests.conftest import (ADMIN_TOKEN, VIEWER_TOKEN, Client, Daemon, conversation_locked, open_client,
                            start_daemon)
from tests.fake_graph import FakeGraph
from tests.test_meetings import at, booking, lead_at, next_weekday
from tests.test_outlook import booked_while_graph_is_down, outlook_settings, synced
from wsd.database import EmbeddedPostgres

MIB = 1024


async def eventually(check: Callable[[], Any], seconds: float = 10, every: float = 0.05) -> Any:
    """Polls `check` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(every)


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def log_events(daemon: Daemon, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines whose event is `event`."""
    lines = []
    for line in daemon.log().splitlines():
        if line.startswith("{"):
            entry = orjson.loads(line)
            if entry.get("event") == event:
                lines.append(entry)
    return lines


def notify_many(count: int) -> str:
    """SQL for `count` distinct agent-switch notifications delivered in one commit: each one an
    event to every client (change hints are coalesced per topic; these are not)."""
    return ("SELECT pg_notify('wsd_agent_status', json_build_object('conversation_id', gen_random_uuid(),"
            f" 'enabled', n % 2 = 0)::text) FROM generate_series(1, {count:d}) AS n")


async def stalled_client(url: str) -> Any:
    """A WebSocket client that never reads: a tiny receive buffer, and no recv() calls."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = url.split("//")[1].split("/")[0].split(":")
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return await connect(url, sock=sock, additional_headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                         compression=None, max_queue=1, ping_interval=None)


# -- PostgreSQL going away -----------------------------------------------------------------------

async def test_postgres_killed_and_restarted_under_load(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    dsn = await server.start()
    daemon = start_daemon(tmp_path, dsn, database={"acquire_timeout_seconds": 1.0})
    db = await asyncpg.connect(dsn)
    try:
        requirements = []
        for _ in range(20):
            lead_id = await factories.lead(db, [("start", factories_now(), "agent")])
            requirements.append(await factories.requirements(db, lead_id))
        acknowledged: list[tuple[uuid.UUID, str]] = []
        outcomes: dict[str, int] = {}
        readiness: list[tuple[float, int]] = []
        stop = asyncio.Event()

        async def writer(index: int) -> None:
            async with open_client(daemon.url) as connection:
                client = Client(connection)
                n = 0
                while not stop.is_set():
                    n += 1
                    name = f"feature {index}-{n}"
                    reply = await client.request("requirements", "add_feature",
                                                 {"requirements_id": str(requirements[index]), "name": name})
                    code = "ok" if reply["type"] == "success" else reply["payload"]["code"]
                    outcomes[code] = outcomes.get(code, 0) + 1
                    if code == "ok":
                        acknowledged.append((requirements[index], name))
                    await asyncio.sleep(0.02)

        async def watch_readiness() -> None:
            while not stop.is_set():
                asked_at = time.monotonic()
                readiness.append((asked_at, (await asyncio.to_thread(daemon.http, "/readyz"))[0]))
                await asyncio.sleep(0.1)

        async with open_client(daemon.url) as events_connection:
            events = Client(events_connection)
            assert await events.data("live", "hints") == {"hints": True}
            writers = [asyncio.create_task(writer(i)) for i in range(20)]
            watcher = asyncio.create_task(watch_readiness())
            await asyncio.sleep(1.0)
            await db.close()
            os.kill(postmaster_pid(tmp_path / "pg"), signal.SIGKILL)
            killed_at = time.monotonic()
            await eventually(lambda: any(t > killed_at and s == 503 for t, s in readiness), 5)
            await asyncio.sleep(killed_at + 3.0 - time.monotonic())  # down for 3 s
            restarting_at = time.monotonic()
            await eventually(lambda: asyncio.to_thread(_try_restart, server), 20, every=0.5)
            restarted_at = time.monotonic()
            await eventually(lambda: readiness and readiness[-1][0] > restarted_at and readiness[-1][1] == 200, 15)
            ok_before = outcomes.get("ok", 0)
            await eventually(lambda: outcomes.get("ok", 0) > ok_before + 20, 10)
            stop.set()
            await asyncio.gather(*writers, watcher)
            # Notifications resume: a write after the restart reaches the event listener.
            events.events.clear()
            await events.data("requirements", "add_feature",
                              {"requirements_id": str(requirements[0]), "name": "after the restart"})

            async def requirements_hinted() -> bool:
                await _drain_events(events)
                return any(e["topic"] == "changes" and e["payload"]["topic"] == "requirements"
                           for e in events.events)
            await eventually(requirements_hinted, 5)
        assert outcomes.get("unavailable", 0) > 0 and set(outcomes) <= {"ok", "unavailable"}, outcomes
        # /readyz told the truth: never ready while PostgreSQL was down (after the listener and
        # the probe had a moment to notice), ready again after it came back.
        down = [s for t, s in readiness if killed_at + 1.5 < t < restarting_at]
        assert down and set(down) == {503}, down
        db = await asyncpg.connect(dsn)
        stored_names = {(r["requirements_id"], r["name"]) for r in await db.fetch(
            "SELECT requirements_id, name FROM features")}
        assert set(acknowledged) <= stored_names
        assert len(acknowledged) > 100
    finally:
        await db.close()
        daemon.stop()
        await server.stop()


def factories_now() -> Any:
    import datetime as dt
    return dt.datetime.now(dt.timezone.utc)


def _try_restart(server: EmbeddedPostgres) -> bool:
    try:
        server.restart()
    except Exception:
        return False
    return True


async def _drain_events(client: Client) -> bool:
    """Reads what has arrived for up to 0.2 s; True once an event was seen."""
    try:
        while True:
            message = await client.receive(0.2)
            if message.get("type") == "event":
                client.events.append(message)
    except TimeoutError:
        pass
    return bool(client.events)


async def test_listener_connection_terminated_is_reopened(daemon: Daemon, admin: Client, db) -> None:
    pid = await db.fetchval("SELECT pid FROM pg_stat_activity WHERE application_name = 'wsd-listener' "
                            "AND datname = current_database()")
    assert pid is not None
    await db.execute("SELECT pg_terminate_backend($1)", pid)
    await eventually(lambda: db.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'wsd-listener' AND pid <> $1 "
        "AND datname = current_database()", pid), 10)
    await eventually(lambda: daemon.http("/readyz")[0] == 200, 5)
    await admin.data("live", "hints", {"enabled": True})
    admin.events.clear()
    conversation_id = await factories.conversation(db)
    await db.execute("UPDATE conversations SET status = 'closed' WHERE id = $1", conversation_id)
    hint = {"type": "event", "topic": "changes", "payload": {"topic": "conversations"}}

    async def hinted() -> bool:
        await _drain_events(admin)
        return hint in admin.events
    await eventually(hinted, 5)


async def test_embedded_postgres_killed_is_restarted(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, "", database={"data_dir": "pgdata"})
    try:
        first = postmaster_pid(tmp_path / "pgdata")
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: log_events(daemon, "embedded PostgreSQL restarted"), 30)
        assert postmaster_pid(tmp_path / "pgdata") != first
        await eventually(lambda: daemon.http("/readyz")[0] == 200, 10)
        async with open_client(daemon.url) as connection:
            assert len(await Client(connection).data("leads", "get_lead_pipeline")) == 7
        [died] = log_events(daemon, "embedded PostgreSQL is not running; restarting it")
        assert died["level"] == "error" and died["attempt"] == 1
    finally:
        assert daemon.stop() == 0
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists(), "a clean stop stops PostgreSQL"


async def test_embedded_postgres_dying_past_the_restart_budget_exits_1(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, "", database={"data_dir": "pgdata", "embedded_restarts": 0})
    os.kill(postmaster_pid(tmp_path / "pgdata"), signal.SIGKILL)
    assert await asyncio.to_thread(daemon.process.wait, 30) == 1
    [fatal] = log_events(daemon, "stopping: a part of wsd cannot be recovered")
    assert "embedded PostgreSQL died" in fatal["error"]


async def test_wsd_killed_then_started_again_adopts_and_stops_postgres(tmp_path: Path) -> None:
    first = start_daemon(tmp_path, "", database={"data_dir": "pgdata"})
    postmaster = postmaster_pid(tmp_path / "pgdata")
    first.process.kill()
    first.process.wait(10)
    assert alive(postmaster), "PostgreSQL outlives a wsd killed with -9"
    second = start_daemon(tmp_path, "", database={"data_dir": "pgdata"})
    try:
        assert postmaster_pid(tmp_path / "pgdata") == postmaster, "the running server is adopted"
        [stale] = log_events(second, "embedded PostgreSQL had handles of processes that are gone")
        assert stale["stale_pids"] == [first.process.pid]
        async with open_client(second.url) as connection:
            assert len(await Client(connection).data("leads", "get_lead_pipeline")) == 7
    finally:
        assert second.stop() == 0
    await eventually(lambda: not alive(postmaster), 10)


# -- clients that stop reading -------------------------------------------------------------------

async def test_a_stalled_reader_is_bounded_and_dropped(postgres, db, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres, send_timeout_seconds=2.0)
    try:
        async with open_client(daemon.url) as healthy_connection:
            healthy = Client(healthy_connection)
            await db.execute(notify_many(2_000))  # warm up the event path before measuring
            await asyncio.sleep(1.0)
            rss_before = daemon.rss_kib()
            stalled = await stalled_client(daemon.url)
            await db.execute(notify_many(40_000))
            pipeline = await healthy.data("leads", "get_lead_pipeline")
            assert len(pipeline) == 7
            [dropped] = await eventually(lambda: log_events(daemon, "slow client dropped"), 10)
            assert dropped["caller"] == "test-admin" and dropped["events_dropped"] > 1_000
            assert dropped["behind_seconds"] >= 2.0
            growth = daemon.rss_kib() - rss_before
            assert growth < 10 * MIB, f"RSS grew {growth} KiB"
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        await stalled.recv()
            assert len(await healthy.data("leads", "get_lead_pipeline")) == 7
        assert "Traceback" not in daemon.log()
    finally:
        daemon.stop()


async def test_sigterm_with_a_stalled_client_exits_within_the_grace(postgres, db, tmp_path: Path) -> None:
    grace = 1.0
    daemon = start_daemon(tmp_path, postgres, shutdown_grace_seconds=grace)
    conversation_id = await factories.conversation(db)
    try:
        stalled = await stalled_client(daemon.url)
        await db.execute(notify_many(20_000))
        async with conversation_locked(postgres, conversation_id), open_client(daemon.url) as connection:
            client = Client(connection)
            request_id = await client.send("conversations", "update_agent_status",
                                           {"conversation_id": str(conversation_id), "enabled": False})
            await asyncio.sleep(0.3)
            started = time.monotonic()
            daemon.process.terminate()
            reply = await client.reply_to(request_id)
            assert reply["type"] == "error"
            assert reply["payload"]["code"] == "unavailable"
            assert reply["payload"]["details"] == {"reason": "shutting_down", "outcome": "unknown"}
            status = await asyncio.to_thread(daemon.process.wait, 30)
            elapsed = time.monotonic() - started
        assert status == 0
        assert elapsed < grace + 2, f"exit took {elapsed:.2f} s"
        [cut] = log_events(daemon, "request cut off at shutdown")
        assert cut["action"] == "update_agent_status"
        await stalled.close()
    finally:
        daemon.stop()
    assert await db.fetchval("SELECT agent_enabled FROM conversations WHERE id = $1", conversation_id)


# -- floods ---------------------------------------------------------------------------------------

async def _refused_handshakes(port: int, count: int, concurrency: int = 50) -> dict[bytes, int]:
    statuses: dict[bytes, int] = {}
    requests = [
        (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         b"Origin: http://elsewhere.test\r\nAuthorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n"),
        (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n"),
    ]

    async def one(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(requests[index % 2])
        status = (await reader.readline()).split(b" ")[1]
        statuses[status] = statuses.get(status, 0) + 1
        writer.close()
        await writer.wait_closed()

    async def worker(start: int) -> None:
        for index in range(start, count, concurrency):
            await one(index)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return statuses


async def test_refused_handshakes_leave_memory_flat(daemon: Daemon) -> None:
    await _refused_handshakes(daemon.port, 2_000)
    rss_before = daemon.rss_kib()
    statuses = await _refused_handshakes(daemon.port, 20_000)
    assert statuses == {b"403": 10_000, b"426": 10_000}, statuses
    growth = daemon.rss_kib() - rss_before
    assert growth < 3 * MIB, f"RSS grew {growth} KiB over 20,000 refused handshakes"


# -- background work -----------------------------------------------------------------------------

async def test_a_crashing_outlook_worker_is_logged_and_restarted(postgres, db, tmp_path: Path) -> None:
    graph = FakeGraph()
    await graph.start()
    daemon = None
    try:
        graph.down = True
        daemon = start_daemon(tmp_path, postgres, outlook=outlook_settings(graph))
        meeting_id = await booked_while_graph_is_down(daemon.url, graph, db, at(next_weekday(), 10))
        graph.faults = [("malformed", None)] * 2
        graph.down = False
        await eventually(lambda: synced(db, meeting_id), 30)
        crashes = [e for e in log_events(daemon, "background task crashed") if e["task"] == "outlook worker"]
        assert len(crashes) == 2, crashes
        assert "KeyError" in crashes[0]["exception"] and "Traceback" in crashes[0]["exception"]
        assert len(graph.events) == 1
    finally:
        if daemon is not None:
            daemon.stop()
        await graph.stop()


# -- limits ---------------------------------------------------------------------------------------

async def test_every_limit_answers_with_its_code(postgres, db, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres, max_connections=4, max_connections_per_token=2,
                          max_unauthenticated=1, max_messages_before_login=3,
                          database={"pool_max_size": 1, "acquire_timeout_seconds": 0.5},
                          auth={"max_failures_per_minute": 3}, sections={"limits": {"max_package_items": 3}})
    try:
        # Connections per token, then in all.
        async with open_client(daemon.url) as a1, open_client(daemon.url) as a2:
            with pytest.raises(InvalidStatus) as refused:
                async with open_client(daemon.url):
                    pass
            assert refused.value.response.status_code == 429
            async with open_client(daemon.url, VIEWER_TOKEN), open_client(daemon.url, VIEWER_TOKEN):
                with pytest.raises(InvalidStatus) as full:
                    async with open_client(daemon.url, VIEWER_TOKEN):
                        pass
                assert full.value.response.status_code == 503
            # Pool acquire timeout: the only connection is held by a write waiting on a lock.
            conversation_id = await factories.conversation(db)
            async with conversation_locked(postgres, conversation_id):
                busy = Client(a1)
                held = await busy.send("conversations", "update_agent_status",
                                       {"conversation_id": str(conversation_id), "enabled": False})
                await asyncio.sleep(0.2)
                error = await Client(a2).error("leads", "get_lead_pipeline")
                assert error["code"] == "unavailable" and error["details"]["reason"] == "TimeoutError"
            assert (await busy.reply_to(held))["type"] == "success"
            # Items per requirement package.
            lead_id = await factories.lead(db, [("start", factories_now(), "agent")])
            error = await Client(a1).error("requirements", "create_requirement_package", {
                "lead_qualification_id": str(lead_id), "app_type": "web_app",
                "features": [{"name": f"f{i}"} for i in range(3)], "integrations": [{"name": "CRM"}]})
            assert error["code"] == "invalid_payload" and error["details"] == {"field": "features", "limit": 3}
        # Sockets waiting to log in, and their messages.
        async with open_client(daemon.url, token=None) as waiting:
            with pytest.raises(InvalidStatus) as crowded:
                async with open_client(daemon.url, token=None):
                    pass
            assert crowded.value.response.status_code == 503
            pending = Client(waiting)
            for _ in range(2):
                assert (await pending.error("leads", "get_lead_pipeline"))["code"] == "unauthorized"
            await pending.send("leads", "get_lead_pipeline")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await pending.receive()
            assert closed.value.rcvd.code == 1008
        # Listen backlog.
        listing = subprocess.run(["ss", "-ltnH", f"sport = :{daemon.port}"], capture_output=True, text=True)
        assert re.split(r"\s+", listing.stdout.strip())[2] == "511", listing.stdout
        # /readyz is answered from the probe's last result, not a query per request.
        commits = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        before = await db.fetchval(commits)
        for _ in range(200):
            assert (await asyncio.to_thread(daemon.http, "/readyz"))[0] == 200
        # A query per request would be ≥ 200 commits; the probe and background tasks make a
        # few dozen at most while 200 requests run on a loaded machine.
        assert await db.fetchval(commits) - before < 100
        # Failed authentications per address: after 3, even a good token is refused for a minute.
        for _ in range(3):
            with pytest.raises(InvalidStatus) as wrong:
                async with open_client(daemon.url, token="wrong-token-text"):
                    pass
            assert wrong.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as throttled:
            async with open_client(daemon.url):
                pass
        assert throttled.value.response.status_code == 429
        refusals = log_events(daemon, "handshake refused")
        assert {e["reason"] for e in refusals} >= {"max_connections_per_token", "max_connections",
                                                   "max_unauthenticated", "invalid_token"}
        assert "wrong-token-text" not in daemon.log() and ADMIN_TOKEN not in daemon.log()
    finally:
        daemon.stop()


async def test_failed_logins_from_one_address_are_throttled(postgres, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres, auth={"max_failures_per_minute": 3})
    try:
        async with open_client(daemon.url, token=None) as waiting, \
                open_client(daemon.url, token=None) as guessing:
            guesser = Client(guessing)
            for _ in range(3):
                assert (await guesser.error("auth", "login", {"token": "guess"}))["code"] == "unauthorized"
            with pytest.raises(ConnectionClosed) as closed:
                await guesser.receive()
            assert closed.value.rcvd.code == 1008
            # Another socket from the same address, even with the right token, waits a minute.
            client = Client(waiting)
            error = await client.error("auth", "login", {"token": ADMIN_TOKEN})
            assert error["code"] == "rate_limited" and error["details"] == {"retry_after_seconds": 60}
            with pytest.raises(ConnectionClosed) as closed:
                await client.receive()
            assert closed.value.rcvd.code == 1008
        with pytest.raises(InvalidStatus) as refused:
            async with open_client(daemon.url):
                pass
        assert refused.value.response.status_code == 429
        assert log_events(daemon, "login failed")[0]["address"] == "127.0.0.1"
        assert "guess" not in daemon.log()
    finally:
        daemon.stop()


# -- ambiguous writes ----------------------------------------------------------------------------

async def test_connection_lost_during_commit_answers_outcome_unknown(admin: Client, db) -> None:
    conversation_id = await factories.conversation(db)
    await db.execute("CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN PERFORM pg_sleep(5); RETURN NULL; END $$")
    # DDL takes no parameters; the id is a uuid this test made.
    await db.execute(f"CREATE CONSTRAINT TRIGGER test_slow_commit AFTER UPDATE ON conversations "
                     f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.id = '{conversation_id}') "
                     f"EXECUTE FUNCTION test_slow_commit()")
    try:
        request_id = await admin.send("conversations", "update_agent_status",
                                      {"conversation_id": str(conversation_id), "enabled": False})
        committing = await eventually(lambda: db.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%COMMIT%'"), 5)
        await db.execute("SELECT pg_terminate_backend($1)", committing)
        reply = await admin.reply_to(request_id)
        assert reply["type"] == "error" and reply["payload"]["code"] == "unavailable"
        assert reply["payload"]["details"]["outcome"] == "unknown"
    finally:
        await db.execute("DROP TRIGGER test_slow_commit ON conversations")
        await db.execute("DROP FUNCTION test_slow_commit()")


async def test_idempotency_keys_replay_the_first_result(admin: Client, db) -> None:
    lead_id = await factories.lead(db, [("start", factories_now(), "agent")])
    package = {"lead_qualification_id": str(lead_id), "app_type": "web_app",
               "features": [{"name": "Chat en vivo"}], "idempotency_key": "pkg-1"}
    first = await admin.data("requirements", "create_requirement_package", package)
    again = await admin.data("requirements", "create_requirement_package", package)
    assert again == first
    assert await db.fetchval("SELECT count(*) FROM requirements WHERE lead_id = $1", lead_id) == 1
    other = await admin.error("requirements", "create_requirement_package", {**package, "app_type": "mobile_app"})
    assert other["code"] == "conflict" and other["details"] == {"field": "idempotency_key"}
    item = {"requirements_id": first["id"], "name": "Pagos", "idempotency_key": "feat-1"}
    added = await admin.data("requirements", "add_feature", item)
    assert await admin.data("requirements", "add_feature", item) == added
    assert (await admin.error("requirements", "add_feature", {**item, "idempotency_key": None}))["code"] == "conflict"
    assert await db.fetchval("SELECT count(*) FROM features WHERE requirements_id = $1",
                             uuid.UUID(first["id"])) == 2
    meeting_lead, user_id = await lead_at(db, "bant")
    booked = {**booking(meeting_lead, user_id, at(next_weekday(), 10)), "idempotency_key": "m-1"}
    meeting = await admin.data("meetings", "create_meeting", booked)
    assert (await admin.data("meetings", "create_meeting", booked))["id"] == meeting["id"]
    assert await db.fetchval("SELECT count(*) FROM meetings WHERE lead_id = $1", meeting_lead) == 1
