"""What an operator runs wsd with: /metrics, systemd's notify protocol and watchdog, SIGHUP
reloads and `wsd check-config` — each against a real daemon and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests import factories
from tests.conftest import ADMIN_TOKEN, ROOT, VIEWER_TOKEN, Client, Daemon, open_client, start_daemon
from tests.fake_graph import FakeGraph
from tests.test_meetings import at, booking, lead_at, next_weekday
from tests.test_outlook import outlook_settings
from tests.test_reliability import eventually, log_events
from wsd.auth import hash_token
from wsd.metrics import RequestTally

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
METRICS_TOKEN = "metrics-scraper-token"


def scrape(port: int, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """GET /metrics: (status, body, content type)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read().decode(), reply.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers.get("Content-Type", "")


def parse(text: str) -> Samples:
    """Every sample, parsed by prometheus-client's own text parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def samples(port: int, **headers: str) -> Samples:
    status, body, _ = scrape(port, headers)
    assert status == 200, body
    return parse(body)


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


# -- /metrics ---------------------------------------------------------------------------------

def test_request_durations_are_cumulative_buckets_over_every_code() -> None:
    """The request series are kept in plain lists (`RequestTally`): the exposition must still
    be a Prometheus histogram per action — cumulative `le` buckets, count and sum over every
    code — beside a counter per code."""
    tally = RequestTally()
    for code, seconds in [("ok", 0.0004), ("ok", 0.003), ("ok", 0.003), ("not_found", 0.2), ("ok", 12.0)]:
        tally.observe("leads", "get_lead_with_complete_data", code, seconds)
    tally.observe("dashboard", "get_dashboard_stats", "ok", 0.001)
    found = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
             for family in tally.collect() for sample in family.samples}
    lead = {"resource": "leads", "action": "get_lead_with_complete_data"}

    def at(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted({**lead, **labels}.items())))]
    assert at("wsd_requests_total", code="ok") == 4 and at("wsd_requests_total", code="not_found") == 1
    assert [at("wsd_request_duration_seconds_bucket", le=le) for le in ("0.001", "0.0025", "0.005", "0.1",
                                                                          "0.25", "10.0", "+Inf")] \
        == [1, 1, 3, 3, 4, 4, 5]
    assert at("wsd_request_duration_seconds_count") == 5
    assert at("wsd_request_duration_seconds_sum") == pytest.approx(12.2064)
    assert found[("wsd_request_duration_seconds_count",
                  (("action", "get_dashboard_stats"), ("resource", "dashboard")))] == 1



async def test_metrics_move_with_requests_refusals_and_live_pushes(daemon: Daemon, admin: Client,
                                                                   db: Any) -> None:
    before = samples(daemon.port)
    await admin.data("dashboard", "get_dashboard_stats")
    assert (await admin.error("leads", "get_lead_with_complete_data",
                              {"lead_id": str(uuid.uuid4())}))["code"] == "not_found"
    assert (await admin.error("nothing", "here"))["code"] == "unknown_action"
    with pytest.raises(InvalidStatus):
        async with open_client(daemon.url, token="not-a-token"):
            pass
    subscription = await admin.data("live", "subscribe", {"resource": "dashboard",
                                                           "action": "get_dashboard_stats"})
    await factories.lead(db, [("start", dt.datetime.now(dt.UTC), "agent")])  # pushes an update

    async def pushed() -> Samples | None:
        found = samples(daemon.port)
        lag = value(found, "wsd_live_push_lag_seconds_count") - value(before, "wsd_live_push_lag_seconds_count")
        return found if lag >= 1 else None
    after = await eventually(pushed)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)
    stats = {"resource": "dashboard", "action": "get_dashboard_stats"}
    assert moved("wsd_requests_total", **stats, code="ok") == 1
    assert moved("wsd_request_duration_seconds_count", **stats) == 1
    assert moved("wsd_requests_total", resource="leads", action="get_lead_with_complete_data",
                 code="not_found") == 1
    assert moved("wsd_requests_refused_total", code="unknown_action") == 1
    assert moved("wsd_handshakes_refused_total", reason="invalid_token") == 1
    assert moved("wsd_live_reruns_total") >= 1 and moved("wsd_live_updates_sent_total") >= 1
    assert value(after, "wsd_live_subscriptions") >= 1
    assert value(after, "wsd_connections", role="admin") >= 1
    assert value(after, "wsd_pool_size") >= 1 and value(after, "wsd_pool_max") == 5
    assert ("wsd_pool_waiting", ()) in after and value(after, "wsd_ready") == 1
    assert value(after, "wsd_listener_connected") == 1 and ("wsd_listener_reconnects_total", ()) in after
    assert ("wsd_slow_clients_dropped_total", ()) in after
    assert value(after, "process_resident_memory_bytes") > 0
    # No ids or personal data in any label: only fixed names.
    for _, labels in after:
        for _, label in labels:
            assert subscription["subscription"] != label
            with pytest.raises(ValueError):
                uuid.UUID(label)


def test_metrics_honour_the_accept_header(daemon: Daemon) -> None:
    status, body, content_type = scrape(daemon.port, {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    names = {family.name for family in openmetrics_families(body)}
    assert {"wsd_requests", "wsd_connections", "wsd_handshakes_refused"} <= names
    status, body, content_type = scrape(daemon.port)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")


async def test_metrics_refuse_an_address_not_allowed_but_take_the_token(postgres: str, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres, sections={"metrics": {
        "allowed_addresses": ["10.255.0.0/16"], "token_sha256": hash_token(METRICS_TOKEN)}})
    try:
        assert scrape(daemon.port)[0] == 403
        assert scrape(daemon.port, {"Authorization": "Bearer wrong"})[0] == 403
        assert scrape(daemon.port, {"Authorization": f"Bearer {ADMIN_TOKEN}"})[0] == 403
        status, body, _ = scrape(daemon.port, {"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 200 and ("wsd_ready", ()) in parse(body)
        assert daemon.http("/healthz")[0] == 200
    finally:
        assert daemon.stop() == 0


async def test_outlook_outbox_series_follow_pushes_and_syncs(postgres: str, db: Any, tmp_path: Path) -> None:
    fake = FakeGraph(page_size=2)
    await fake.start()
    daemon = start_daemon(tmp_path, postgres, outlook=outlook_settings(fake),
                          sections={"metrics": {"outbox_cache_seconds": 0.1}})
    try:
        first = samples(daemon.port)
        assert value(first, "wsd_outlook_outbox_meetings", sync_status="pending") == 0
        assert ("wsd_outlook_last_delta_sync_timestamp_seconds", ()) not in first
        lead_id, user_id = await lead_at(db, "bant")
        fake.down = True
        async with open_client(daemon.url) as connection:
            client = Client(connection)
            meeting = await client.data("meetings", "create_meeting",
                                        booking(lead_id, user_id, at(next_weekday(), 10)))
            assert meeting["sync_status"] == "pending"
            await asyncio.sleep(0.3)
            waiting = samples(daemon.port)
            assert value(waiting, "wsd_outlook_outbox_meetings", sync_status="pending") == 1
            assert value(waiting, "wsd_outlook_oldest_pending_seconds") >= 0.2
            assert value(waiting, "wsd_outlook_pushes_total", outcome="pending") >= 1
            fake.down = False

            def drained() -> Samples | None:
                found = samples(daemon.port)
                return found if value(found, "wsd_outlook_outbox_meetings", sync_status="pending") == 0 else None
            synced = await eventually(drained)
            assert value(synced, "wsd_outlook_pushes_total", outcome="synced") == 1
            assert value(synced, "wsd_outlook_oldest_pending_seconds") == 0
            await client.data("meetings", "sync_outlook_calendar")
            await asyncio.sleep(0.2)
            last = value(samples(daemon.port), "wsd_outlook_last_delta_sync_timestamp_seconds")
            assert abs(last - time.time()) < 30
    finally:
        assert daemon.stop() == 0
        await fake.stop()


# -- systemd's notify protocol ------------------------------------------------------------------

class NotifySocket:
    """A datagram socket standing in for systemd's: it records (time, message) it receives."""

    def __init__(self) -> None:
        self.name = f"wsd-test-notify-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)   # abstract: systemd writes it as "@name"
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return "@" + self.name

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.received.append((time.monotonic(), data.decode()))

    def messages(self, prefix: str) -> list[tuple[float, str]]:
        return [(at, m) for at, m in list(self.received) if any(line.startswith(prefix) for line in m.split("\n"))]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


async def test_notify_ready_watchdog_and_stopping(postgres: str, tmp_path: Path,
                                                  notify_socket: NotifySocket) -> None:
    daemon = start_daemon(tmp_path, postgres, env={"NOTIFY_SOCKET": notify_socket.address,
                                                   "WATCHDOG_USEC": "1000000"})
    try:
        await eventually(lambda: notify_socket.messages("READY=1"))
        statuses = [m for _, m in notify_socket.received]
        ready_at = next(i for i, m in enumerate(statuses) if "READY=1" in m)
        assert "STATUS=starting: database" in statuses[:ready_at]
        assert "STATUS=starting: change listener" in statuses[:ready_at]
        assert f"STATUS=serving on port {daemon.port}" in statuses[ready_at]
        start = time.monotonic()
        await asyncio.sleep(3)
        pings = [at for at, _ in notify_socket.messages("WATCHDOG=1") if start <= at <= start + 3]
        assert 4 <= len(pings) <= 8, pings           # half of WATCHDOG_USEC: every 0.5 s
    finally:
        assert daemon.stop() == 0
    stopping = notify_socket.messages("STOPPING=1")
    assert len(stopping) == 1 and "STATUS=draining: 0 connections" in stopping[0][1]
    assert notify_socket.messages("READY=1")[0][0] < stopping[0][0]


async def test_a_blocked_event_loop_stops_the_watchdog(postgres: str, tmp_path: Path,
                                                       notify_socket: NotifySocket) -> None:
    daemon = start_daemon(tmp_path, postgres, env={"NOTIFY_SOCKET": notify_socket.address,
                                                   "WATCHDOG_USEC": "400000",
                                                   "WSD_TEST_BLOCK_LOOP_SECONDS": "2.5"})
    try:
        await eventually(lambda: len(notify_socket.messages("WATCHDOG=1")) >= 3)
        blocked_at = time.monotonic()
        daemon.process.send_signal(signal.SIGUSR2)
        await asyncio.sleep(4)
        pings = [at for at, _ in notify_socket.messages("WATCHDOG=1") if at >= blocked_at - 0.5]
        gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
        assert max(gaps) >= 2.0, gaps                # silent while the loop was blocked (0.2 s normally)
        assert pings[-1] > blocked_at + 2.5          # and back once it runs again
    finally:
        assert daemon.stop() == 0


def test_without_notify_socket_nothing_is_sent_and_signals_are_untouched(tmp_path: Path) -> None:
    from wsd.sdnotify import Notifier
    environ = {"WATCHDOG_USEC": "1000000"}
    notifier = Notifier.from_environment(environ)
    assert notifier.watchdog_seconds is None and notifier.send("READY=1") is False
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        environ = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
        notifier = Notifier.from_environment(environ)
        assert environ == {} and notifier.watchdog_seconds is None   # another process's watchdog
        assert notifier.send("READY=1", "STATUS=x") is True
        assert sock.recv(100) == b"READY=1\nSTATUS=x"


# -- SIGHUP ---------------------------------------------------------------------------------------

async def closed_with(connection: Any) -> int | None:
    try:
        async with asyncio.timeout(5):
            while True:
                await connection.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def test_sighup_revokes_a_removed_token_and_keeps_everyone_else(postgres: str, db: Any,
                                                                     tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres)
    try:
        async with open_client(daemon.url) as admin_connection, \
                open_client(daemon.url, VIEWER_TOKEN) as viewer_bearer, \
                open_client(daemon.url, token=None) as viewer_login:
            admin = Client(admin_connection)
            await Client(viewer_login).data("auth", "login", {"token": VIEWER_TOKEN})
            config = daemon.config_path.read_text()
            lines = [line for line in config.splitlines() if 'name = "test-viewer"' not in line]
            daemon.config_path.write_text("\n".join(lines).replace(
                'allowed_origins = ["http://dashboard.test"]',
                'allowed_origins = ["http://dashboard.test", "http://new.test"]') + "\n")
            daemon.process.send_signal(signal.SIGHUP)
            assert await closed_with(viewer_bearer) == 1008
            assert await closed_with(viewer_login) == 1008
            assert await admin.data("dashboard", "get_dashboard_stats")   # still connected
            [reloaded] = log_events(daemon, "config reloaded")
            assert reloaded["connections_closed"] == 2 and reloaded["tokens"] == 1
            with pytest.raises(InvalidStatus) as refused:
                async with open_client(daemon.url, VIEWER_TOKEN):
                    pass
            assert refused.value.response.status_code == 401
            async with open_client(daemon.url, origin="http://new.test") as fresh:
                assert await Client(fresh).data("dashboard", "get_dashboard_stats")

            # A bad file is logged, naming the key, and changes nothing.
            daemon.config_path.write_text(daemon.config_path.read_text().replace(
                f"port = {daemon.port}", 'port = "eighty"'))
            daemon.process.send_signal(signal.SIGHUP)
            failed = await eventually(lambda: log_events(daemon, "config reload failed"))
            assert "server.port" in failed[0]["error"]
            assert await admin.data("dashboard", "get_dashboard_stats")
            async with open_client(daemon.url, origin="http://new.test") as fresh:
                assert await Client(fresh).data("dashboard", "get_dashboard_stats")
    finally:
        assert daemon.stop() == 0


# -- wsd check-config -------------------------------------------------------------------------------

@pytest.mark.parametrize("content, key", [
    ("[server]\nport = 70000\n", "server.port"),
    ('[metrics]\nallowed_addresses = ["127.0.0.1", "not-an-address"]\n', "metrics.allowed_addresses[1]"),
    ("[auth]\ntokens = [{ name = \"x\", role = \"root\", sha256 = \"00\" }]\n", "auth.tokens[0].role"),
    ("[live]\nunknown_key = 1\n", "live"),
])
def test_check_config_names_the_key(tmp_path: Path, content: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    result = _wsd("check-config", "--config", str(path))
    assert result.returncode == 2 and key in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_config_accepts_the_shipped_file() -> None:
    result = _wsd("check-config", "--config", str(ROOT / "config.toml"))
    assert result.returncode == 0 and "config ok" in result.stdout


def _wsd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSD_")}
    return subprocess.run([sys.executable, "-m", "wsd", *args], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT)}, timeout=60)
