"""Benchmark harness: wsd against its floors, measured in one run on one machine.

Every figure that matters is a ratio to a floor measured in the same run with the same
client: (a) a bare `websockets` echo server answering a reply of the same size (the
framework floor), (b) a bare asyncpg loop running the action's own SQL (the database floor).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import asyncpg
import orjson
import psutil
from websockets.asyncio.client import connect

from bench.load import percentile

from wsd.auth import new_token
from wsd.clock import local_today
from wsd.config import BusinessConfig
from wsd.database import EmbeddedPostgres, create_pool, load_queries

ROOT = Path(__file__).resolve().parent.parent
BENCH_VAR = ROOT / "var" / "bench"
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def pinned(cpus: str) -> list[str]:
    """A command prefix that pins what follows to `cpus`: taskset execs the command, so the
    pid Popen returns is the pinned program's own."""
    return ["taskset", "-c", cpus] if cpus else []


def raise_open_files() -> None:
    """Every connection is a file descriptor; a child gets the hard limit as its soft one."""
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# live-load's simulated agent adds a few hundred leads per run to the data it runs on.
GROWTH_ALLOWED = 1.01


@dataclass
class Data:
    """An embedded PostgreSQL holding `leads` demo leads, kept under var/bench between runs."""
    leads: int
    server: EmbeddedPostgres = field(init=False)
    dsn: str = ""

    async def __aenter__(self) -> "Data":
        data_dir = BENCH_VAR / f"pg-{self.leads}"
        config = BENCH_VAR / f"{self.leads}.toml"
        BENCH_VAR.mkdir(parents=True, exist_ok=True)
        config.write_text(f'[database]\ndata_dir = "{data_dir}"\n')
        self.server = EmbeddedPostgres(data_dir)
        self.dsn = await self.server.start()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_DATABASE_DSN": self.dsn}
        subprocess.run([sys.executable, "-m", "wsd", "migrate"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        connection = await asyncpg.connect(self.dsn)
        count = await connection.fetchval("SELECT count(*) FROM lead_qualifications")
        await connection.close()
        if count == 0:
            print(f"seeding {self.leads} demo leads (once; kept in {data_dir})", flush=True)
            subprocess.run([sys.executable, "-m", "wsd", "seed", "--demo", "--leads", str(self.leads)],
                           env=env, check=True)
        elif not self.leads <= count <= self.leads * GROWTH_ALLOWED:
            raise RuntimeError(f"{data_dir} holds {count} leads, not {self.leads}: delete it")
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.server.stop()


@dataclass
class Daemon:
    """wsd itself, in its own process, on the benchmark database."""
    dsn: str
    cache_ttl: float
    token: str = ""
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    uvloop: bool = True
    # Cores to pin the daemon to (`taskset -c`), "" for none; extra WSD_* settings.
    cpus: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def __enter__(self) -> "Daemon":
        self.token, entry = new_token("bench", "admin")
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_DATABASE_DSN": self.dsn,
               "WSD_SERVER_PORT": str(self.port), "WSD_CACHE_TTL_SECONDS": str(self.cache_ttl),
               "WSD_SERVER_MAX_INFLIGHT_PER_CONNECTION": "64", "WSD_LOG_LEVEL": "warning",
               "WSD_DATABASE_POOL_MAX_SIZE": "10", "WSD_UVLOOP": "1" if self.uvloop else "0",
               "WSD_AUTH_TOKENS": f'[{{name = "bench", role = "admin", sha256 = "{entry.sha256}"}}]',
               **self.env}
        self.process = subprocess.Popen(pinned(self.cpus) + [sys.executable, "-m", "wsd", "serve"], env=env,
                                        stdout=subprocess.DEVNULL, preexec_fn=raise_open_files)
        wait_for_port(self.port, self.process)
        return self

    def __exit__(self, *_: Any) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(30)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()  # type: ignore[union-attr]
        return times.user + times.system

    def rss_bytes(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss  # type: ignore[union-attr]


def run_load(url: str, token: str | None, clients: int, seconds: float, messages: list[dict],
             rate: float = 0.0) -> dict:
    """The load generator runs in its own process so it does not share the daemon's CPU time."""
    done = subprocess.run([sys.executable, "-m", "bench.load", url, token or "", str(clients),
                           str(seconds), orjson.dumps(messages).decode(), str(rate)],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout)


async def reply_size(daemon: Daemon, message: dict) -> int:
    async with connect(daemon.url, additional_headers={"Authorization": f"Bearer {daemon.token}"},
                       compression=None, max_size=None) as ws:
        await ws.send(orjson.dumps(message).decode())
        return len(await ws.recv())


ROUNDS = 3  # wsd and its floor alternate, so a change in the machine's load hits both


def merge(results: list[dict]) -> dict:
    """Rounds of one measurement as one: summed requests, worst-case percentiles."""
    merged = dict(results[-1])
    merged["requests"] = sum(r["requests"] for r in results)
    merged["elapsed"] = sum(r["elapsed"] for r in results)
    merged["msgs_per_s"] = merged["requests"] / merged["elapsed"]
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        merged[key] = max(r[key] for r in results)
    if "server_cpu_us_per_request" in merged:
        merged["server_cpu_us_per_request"] = statistics.mean(r["server_cpu_us_per_request"] for r in results)
    return merged


def echo_floor_against(daemon: "Daemon", clients: int, seconds: float, message: dict, size: int) -> dict:
    """wsd and the echo floor, alternating for ROUNDS rounds."""
    port = free_port()
    echo = subprocess.Popen([sys.executable, "-m", "bench.echo", str(port), str(size)], cwd=ROOT)
    ours, floor = [], []
    try:
        wait_for_port(port, echo)
        for _ in range(ROUNDS):
            ours.append(measure(daemon, clients, seconds / ROUNDS, [message]))
            floor.append(run_load(f"ws://127.0.0.1:{port}/", None, clients, seconds / ROUNDS,
                                  [{"resource": "echo", "action": "echo", "id": 1}]))
    finally:
        echo.terminate()
        echo.wait(10)
    return {**merge(ours), "floor": "echo", "floor_result": merge(floor)}


async def database_floor_against(daemon: "Daemon", dsn: str, clients: int, seconds: float,
                                 messages: list[dict], query: Callable[[asyncpg.Pool], Awaitable[Any]]) -> dict:
    """wsd and the asyncpg floor, alternating for ROUNDS rounds."""
    ours, floor = [], []
    for _ in range(ROUNDS):
        ours.append(await asyncio.to_thread(measure, daemon, clients, seconds / ROUNDS, messages))
        floor.append(await database_floor(dsn, clients, seconds / ROUNDS, query))
    return {**merge(ours), "floor": "asyncpg", "floor_result": merge(floor)}


async def database_floor(dsn: str, clients: int, seconds: float,
                         query: Callable[[asyncpg.Pool], Awaitable[Any]]) -> dict:
    """The action's SQL, straight through asyncpg, in a closed loop from `clients` tasks over
    a pool of wsd's size and with its connection set-up (the same JSON codecs)."""
    pool = await create_pool(dsn, 2, 10)
    latencies: list[float] = []
    until = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            await query(pool)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    await pool.close()
    latencies.sort()
    return {"requests": len(latencies), "elapsed": elapsed, "msgs_per_s": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 0.50), "p95_ms": percentile(latencies, 0.95),
            "p99_ms": percentile(latencies, 0.99)}


def envelope(resource: str, action: str, payload: dict | None = None, request_id: int = 1) -> dict:
    message: dict[str, Any] = {"resource": resource, "action": action, "id": request_id}
    if payload is not None:
        message["payload"] = payload
    return message


def measure(daemon: Daemon, clients: int, seconds: float, messages: list[dict], rate: float = 0.0) -> dict:
    cpu_before = daemon.cpu_seconds()
    result = run_load(daemon.url, daemon.token, clients, seconds, messages, rate)
    cpu = daemon.cpu_seconds() - cpu_before
    result["server_cpu_us_per_request"] = cpu / max(1, result["requests"]) * 1e6
    result["server_rss_mib"] = daemon.rss_bytes() / 2**20
    return result


async def sample_ids(dsn: str) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn)
    leads = [str(r["id"]) for r in await connection.fetch(
        "SELECT id FROM lead_qualifications ORDER BY created_at DESC LIMIT 200")]
    await connection.close()
    return {"leads": leads}


SCENARIOS = ("stats", "point", "page", "write", "paced", "mix", "idle")


async def throughput_scenarios(data: Data, scenarios: list[str], clients: int, seconds: float,
                               idle_connections: int) -> dict[str, dict]:
    results: dict[str, dict] = {}
    ids = await sample_ids(data.dsn)
    queries = load_queries()
    lead_ids = ids["leads"]
    with Daemon(data.dsn, cache_ttl=2.0) as daemon:
        if "stats" in scenarios:
            message = envelope("dashboard", "get_dashboard_stats")
            size = await reply_size(daemon, message)
            results["get_dashboard_stats (cached)"] = await asyncio.to_thread(
                echo_floor_against, daemon, clients, seconds, message, size)
        if "point" in scenarios:
            messages = [envelope("leads", "get_lead_with_complete_data", {"lead_id": i}) for i in lead_ids]
            results["get_lead_with_complete_data"] = await database_floor_against(
                daemon, data.dsn, clients, seconds, messages, _cycle(
                    lambda pool, i: pool.fetchval(queries.leads.lead_with_complete_data.sql, i), lead_ids))
        if "page" in scenarios:
            results["get_all_leads (first page)"] = await database_floor_against(
                daemon, data.dsn, clients, seconds, [envelope("leads", "get_all_leads")],
                lambda pool: pool.fetch(queries.leads.all_leads.sql, None, None, None, None, 101))
        if "write" in scenarios:
            steps = ("consent", "bant")
            messages = [envelope("leads", "update_lead_step", {"lead_id": i, "new_step": steps[n % 2]})
                        for n, i in enumerate(lead_ids)]
            results["update_lead_step (write)"] = {**measure(daemon, clients, seconds, messages)}
        if "paced" in scenarios:
            # Latency at a dashboard's pace: every client 10 requests a second.
            results["get_dashboard_stats (cached), 10/s per client"] = measure(
                daemon, clients, seconds, [envelope("dashboard", "get_dashboard_stats")], rate=10)
            results["get_lead_with_complete_data, 10/s per client"] = measure(
                daemon, clients, seconds,
                [envelope("leads", "get_lead_with_complete_data", {"lead_id": i}) for i in lead_ids], rate=10)
        if "mix" in scenarios:
            page_load = [envelope("dashboard", a) for a in (
                "get_dashboard_stats", "get_conversion_funnel", "get_activity_timeline",
                "get_agent_performance", "get_real_time_metrics")] + [
                envelope("leads", "get_lead_pipeline"), envelope("leads", "get_all_leads"),
                envelope("leads", "get_lead_with_complete_data", {"lead_id": lead_ids[0]})]
            results["dashboard page load (mix)"] = measure(daemon, clients, seconds, page_load)
        if "idle" in scenarios:
            results["idle connections"] = await idle_cost(daemon, idle_connections)
    return results


def _cycle(call: Callable[[asyncpg.Pool, Any], Awaitable[Any]], values: list[Any]) -> Callable:
    counter = iter(range(10**12))
    return lambda pool: call(pool, values[next(counter) % len(values)])


async def idle_cost(daemon: Daemon, connections: int) -> dict:
    """RSS the daemon adds per idle authenticated connection, opened from another process."""
    before = daemon.rss_bytes()
    holder = subprocess.Popen([sys.executable, "-m", "bench.idle", daemon.url, daemon.token,
                               str(connections)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout is not None
    opened = int(holder.stdout.readline())
    await asyncio.sleep(2)
    after = daemon.rss_bytes()
    holder.terminate()
    holder.wait(30)
    return {"connections": opened, "rss_before_mib": before / 2**20, "rss_after_mib": after / 2**20,
            "kib_per_connection": (after - before) / max(1, opened) / 1024}


AGGREGATES = [("dashboard", "get_dashboard_stats"), ("dashboard", "get_conversion_funnel"),
              ("dashboard", "get_activity_timeline"), ("dashboard", "get_agent_performance"),
              ("leads", "get_conversion_stats"), ("requirements", "get_popular_features"),
              ("leads", "get_lead_pipeline"), ("dashboard", "get_human_takeover")]
# Issue 25's reports: every aggregate over the presets up to 90 days, with and without the
# previous period; time in step; and a drill-down page (limit 50, with its total) per filter.
PERIOD_AGGREGATES = AGGREGATES + [("requirements", "get_popular_integrations")]
PRESETS = ("today", "last_7_days", "last_30_days", "this_month", "last_90_days", "this_quarter")
DRILL_DOWNS = {
    "step": {"step": "bant"},
    "reached, created last_90_days": {"reached": "requirements", "created": "last_90_days"},
    "entered, last_30_days": {"entered": "last_30_days"},
    "created last_7_days": {"created": "last_7_days"},
    "stalled": {"stalled": True},
    "stalled at a step, agent off": {"step": "personal_data", "stalled": True, "agent": "off"},
    "agent on": {"agent": "on"},
    "meeting scheduled": {"meeting": "scheduled"},
    "wants feature": {"wants_feature": "FEATURE"},
    "wants integration": {"wants_integration": "INTEGRATION"},
    "search": {"search": "garc"},
}


def cold_requests(today: dt.date, feature: str, integration: str) -> list[tuple[str, str, str, dict]]:
    """(name, resource, action, payload) of every cold measurement: today's aggregates as
    the seed calls them, then issue 25's variants."""
    requests = [(f"{resource}.{action}", resource, action, {}) for resource, action in AGGREGATES]
    for resource, action in PERIOD_AGGREGATES:
        for preset in PRESETS:
            for compare in (False, True):
                payload = {"period": preset, "compare": compare}
                name = f"{resource}.{action} {preset}{' +compare' if compare else ''}"
                requests.append((name, resource, action, payload))
    for preset in ("last_30_days", "last_90_days"):
        requests.append((f"dashboard.get_conversion_funnel {preset} activity +compare", "dashboard",
                         "get_conversion_funnel", {"period": preset, "compare": True, "mode": "activity"}))
    requests.append(("leads.get_step_durations", "leads", "get_step_durations", {}))
    days = {"last_7_days": 7, "last_30_days": 30, "last_90_days": 90}
    for name, wanted in DRILL_DOWNS.items():
        wanted = dict(wanted)
        for key in ("created", "entered"):
            if key in wanted:
                span = {"from": (today - dt.timedelta(days=days[wanted[key]] - 1)).isoformat(),
                        "to": today.isoformat()}
                wanted[key] = {**span, "step": "bant"} if key == "entered" else span
        for key, value in (("wants_feature", feature), ("wants_integration", integration)):
            if key in wanted:
                wanted[key] = value
        requests.append((f"leads.get_all_leads filter {name}", "leads", "get_all_leads",
                         {"filter": wanted, "limit": 50}))
    return requests


async def cold_aggregates(data: Data, repeats: int) -> dict[str, dict]:
    """Each aggregate through the daemon with its cache off: what a cache miss costs."""
    results: dict[str, dict] = {}
    connection = await asyncpg.connect(data.dsn)
    try:
        feature = await connection.fetchval("SELECT name FROM requirement_item_names WHERE kind = 'features' "
                                            "ORDER BY items DESC LIMIT 1")
        integration = await connection.fetchval("SELECT name FROM requirement_item_names "
                                                "WHERE kind = 'integrations' ORDER BY items DESC LIMIT 1")
    finally:
        await connection.close()
    today = local_today(BusinessConfig().zone)  # the daemon runs on the default business zone
    with Daemon(data.dsn, cache_ttl=0.0) as daemon:
        async with connect(daemon.url, additional_headers={"Authorization": f"Bearer {daemon.token}"},
                           compression=None, max_size=None) as ws:
            for name, resource, action, payload in cold_requests(today, feature or "", integration or ""):
                timings = []
                for n in range(repeats + 1):
                    started = time.perf_counter()
                    await ws.send(orjson.dumps(envelope(resource, action, payload or None, request_id=n)).decode())
                    while (reply := orjson.loads(await ws.recv())).get("id") != n:
                        pass  # a change hint
                    assert reply["type"] == "success", (name, reply)
                    if n:  # the first run warms PostgreSQL's own buffers
                        timings.append((time.perf_counter() - started) * 1000)
                timings.sort()
                results[name] = {"leads": data.leads, "median_ms": statistics.median(timings),
                                 "max_ms": timings[-1]}
    return results


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def save(results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2))
    return path
