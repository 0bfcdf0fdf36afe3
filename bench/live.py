"""Live-query scenarios: fan-out of one commit to 10,000 subscriptions, and live load at 1M leads.

Both write straight into PostgreSQL, as the AI agent does, and time from just before COMMIT
returns in the writer until the update frame is read by the subscriber process. Every
process runs on this machine, so time.monotonic() (CLOCK_MONOTONIC) is one clock for all.

The daemon is pinned to core 0 and the subscribers to core 1 (`taskset`), so neither steals
the other's core; PostgreSQL and the writers are not pinned (the machine has 2 cores).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil
from websockets.asyncio.client import connect

from bench.harness import ROOT, Daemon, Data, envelope, pinned, raise_open_files
from bench.load import percentile

SERVER_CPUS, CLIENT_CPUS = "0", "1"
# Bench settings on top of the defaults: more connections than one token may hold by
# default (the subscribers plus the metrics connection), and no periodic safety re-run
# during a measurement (its pushes would be counted as the writes').
LIVE_ENV = {"WSD_SERVER_MAX_CONNECTIONS_PER_TOKEN": "20000", "WSD_SERVER_MAX_CONNECTIONS": "20000",
            "WSD_LIVE_SAFETY_RERUN_SECONDS": "3600"}

# live-fanout: ten read actions a dashboard tab keeps open; the lead document is filled in
# with the lead the first commit moves.
FANOUT_SUBSCRIPTIONS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("dashboard", "get_dashboard_stats", {}), ("dashboard", "get_conversion_funnel", {}),
    ("dashboard", "get_activity_timeline", {}), ("dashboard", "get_agent_performance", {}),
    ("leads", "get_lead_pipeline", {}), ("leads", "get_conversion_stats", {}),
    ("leads", "get_all_leads", {"limit": 20}), ("leads", "get_lead_with_complete_data", None),
    ("requirements", "get_popular_features", {}), ("requirements", "get_popular_integrations", {})]

# live-load: every dashboard and leads aggregate (issue 16); get_dashboard_stats first, it
# is the probe whose total_users tells which commit a push reflects.
LOAD_SUBSCRIPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("dashboard", "get_dashboard_stats", {}), ("dashboard", "get_conversion_funnel", {}),
    ("dashboard", "get_activity_timeline", {}), ("dashboard", "get_agent_performance", {}),
    ("leads", "get_lead_pipeline", {}), ("leads", "get_conversion_stats", {}),
    ("requirements", "get_popular_features", {}), ("requirements", "get_popular_integrations", {})]

NEXT_STEP = {"start": "consent", "consent": "personal_data", "personal_data": "bant",
             "bant": "requirements", "requirements": "meeting", "meeting": "completed"}


# -- measuring processes ---------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children_too: bool = False) -> float:
    """user + system of `pid` from /proc/PID/stat; with children_too, plus the time of its
    children it has already reaped (cutime + cstime): a PostgreSQL backend that exits during
    the window still counts through its postmaster."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of proc(5))
    if children_too:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def postgres_cpu_seconds(data_dir: Path) -> float:
    """Every process of this PostgreSQL: the postmaster (with reaped children) and its live
    children."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(postmaster, children_too=True)
    for child in psutil.Process(postmaster).children():
        try:
            total += cpu_seconds(child.pid)
        except (FileNotFoundError, ProcessLookupError):
            pass  # exited between the listing and the read: counted by the postmaster next time
    return total


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- the subscriber process ------------------------------------------------------------------

@dataclass
class Subscribers:
    """bench/live_client.py on its own core: subscribes, then stamps updates until stopped."""
    process: subprocess.Popen[bytes]
    ready: dict[str, Any]
    out: Path

    @classmethod
    async def start(cls, daemon: Daemon, connections: int, subscriptions: list[dict],
                    probe: int = -1) -> "Subscribers":
        out = Path(tempfile.mkstemp(prefix="live-arrivals-", suffix=".json")[1])
        # Through a file: thousands of distinct subscriptions are more than one argument may hold.
        listed = Path(tempfile.mkstemp(prefix="live-subscriptions-", suffix=".json")[1])
        listed.write_bytes(orjson.dumps(subscriptions))
        process = subprocess.Popen(
            pinned(CLIENT_CPUS) + [sys.executable, "-m", "bench.live_client", daemon.url, daemon.token,
                                   str(connections), f"@{listed}", str(probe), str(out)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, preexec_fn=raise_open_files)
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        listed.unlink()
        if not line:
            raise RuntimeError(f"subscribers exited with {process.wait()}")
        return cls(process, orjson.loads(line), out)

    async def stop(self) -> dict[str, Any]:
        """Ends the recording; returns the arrivals (through a file: they can be megabytes)."""
        await asyncio.to_thread(self.process.communicate, b"stop\n", 120)
        if self.process.returncode != 0:
            raise RuntimeError(f"subscribers exited with {self.process.returncode}")
        arrivals = orjson.loads(self.out.read_bytes())
        self.out.unlink()
        return arrivals

    def kill(self) -> None:
        """After a failed measurement: the subscribers would otherwise wait on stdin forever."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.out.unlink(missing_ok=True)


async def live_stats(ws: Any) -> dict[str, int]:
    """This daemon's live counters, from dashboard.get_real_time_metrics."""
    await ws.send(orjson.dumps(envelope("dashboard", "get_real_time_metrics")).decode())
    while True:  # skip the change hints every client is sent
        reply = orjson.loads(await ws.recv())
        if reply.get("type") == "success":
            return reply["payload"]["data"]["live"]
        if reply.get("type") == "error":
            raise RuntimeError(f"get_real_time_metrics: {reply}")


def metrics_connection(daemon: Daemon) -> Any:
    """The harness's own connection. It reads only when it asks for metrics, so the change
    hints every client is sent pile up in between: an unbounded queue and no keepalive, or
    the library stops reading, misses the server's pings and the connection is dropped."""
    return connect(daemon.url, additional_headers={"Authorization": f"Bearer {daemon.token}"},
                   compression=None, max_size=None, max_queue=None, ping_interval=None)


def summary(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {"n": len(ordered), "p50_ms": percentile(ordered, 0.50), "p99_ms": percentile(ordered, 0.99),
            "max_ms": ordered[-1] if ordered else None}


# -- live-fanout -----------------------------------------------------------------------------

async def leads_to_move(dsn: str, count: int) -> list[tuple[str, str]]:
    """The newest leads that can still move forward: they are on get_all_leads' first page."""
    connection = await asyncpg.connect(dsn)
    rows = await connection.fetch(
        "SELECT id::text, current_step::text FROM lead_qualifications WHERE current_step <> 'completed' "
        "ORDER BY created_at DESC, id DESC LIMIT $1", count)
    await connection.close()
    return [(row[0], row[1]) for row in rows]


async def step_move(connection: asyncpg.Connection, lead_id: str, from_step: str) -> float:
    """One step forward the way the AI agent writes it (history row + lead update, one
    transaction, as tests/factories.py does); returns monotonic time just before COMMIT."""
    to_step = NEXT_STEP[from_step]
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute(
        "INSERT INTO lead_step_history (lead_id, from_step, to_step, source) "
        "VALUES ($1, $2::lead_step, $3::lead_step, 'agent')", lead_id, from_step, to_step)
    await connection.execute(
        "UPDATE lead_qualifications SET current_step = $2::lead_step, updated_at = now(), "
        "completed_at = CASE WHEN $2::lead_step = 'completed' THEN coalesce(completed_at, now()) END "
        "WHERE id = $1",
        lead_id, to_step)
    started = time.monotonic()
    await transaction.commit()
    return started


def fanout_subscriptions(lead_id: str) -> list[dict]:
    return [{"resource": r, "action": a, "payload": {"lead_id": lead_id} if p is None else p}
            for r, a, p in FANOUT_SUBSCRIPTIONS]


async def live_fanout(leads: int, connections: int, actions: list[str], commits: int,
                      spacing: float) -> dict[str, Any]:
    """`connections` × the named `actions` (all ten when empty); `commits` step moves
    `spacing` s apart."""
    async with Data(leads) as data:
        moves = await leads_to_move(data.dsn, commits)
        subscriptions = [s for s in fanout_subscriptions(moves[0][0]) if not actions or s["action"] in actions]
        with Daemon(data.dsn, cache_ttl=2.0, cpus=SERVER_CPUS, env=LIVE_ENV) as daemon:
            async with metrics_connection(daemon) as ws:
                rss_before = daemon.rss_bytes()
                subscribers = await Subscribers.start(daemon, connections, subscriptions)
                try:
                    await asyncio.sleep(2)
                    rss_after = daemon.rss_bytes()
                    writer = await asyncpg.connect(data.dsn)
                    stats = [await live_stats(ws)]
                    cpu_before, load_before = cpu_seconds(daemon.process.pid), load_average()  # type: ignore[union-attr]
                    client_before = cpu_seconds(subscribers.process.pid)
                    t0s = []
                    for lead_id, step in moves:
                        t0s.append(await step_move(writer, lead_id, step))
                        await asyncio.sleep(spacing)
                        stats.append(await live_stats(ws))
                    cpu = cpu_seconds(daemon.process.pid) - cpu_before  # type: ignore[union-attr]
                    client_cpu = cpu_seconds(subscribers.process.pid) - client_before
                    await writer.close()
                    arrivals = await subscribers.stop()
                finally:
                    subscribers.kill()
    figures = fanout_figures(t0s, arrivals, stats, cpu, connections, subscriptions, rss_before, rss_after,
                             subscribers.ready, leads, load_before)
    return {**figures, "client_cpu_s": client_cpu, "window_s": len(t0s) * spacing,
            "update_bytes_per_commit": arrivals["update_bytes"] / len(t0s)}


def fanout_figures(t0s: list[float], arrivals: dict, stats: list[dict], cpu: float, connections: int,
                   subscriptions: list[dict], rss_before: int, rss_after: int, ready: dict, leads: int,
                   load_before: list[float]) -> dict[str, Any]:
    """Each update belongs to the last commit before it (commits are a second apart, far more
    than a re-run); 'every subscriber' of a commit is the slowest update it caused."""
    per_commit: list[list[float]] = [[] for _ in t0s]
    commit = 0
    for t in sorted(arrivals["arrivals"]["t"]):
        while commit + 1 < len(t0s) and t >= t0s[commit + 1]:
            commit += 1
        if t >= t0s[0]:
            per_commit[commit].append((t - t0s[commit]) * 1000)
    every = [latency for latencies in per_commit for latency in latencies]
    reruns = [b["reruns"] - a["reruns"] for a, b in zip(stats, stats[1:])]
    sent = [b["updates_sent"] - a["updates_sent"] for a, b in zip(stats, stats[1:])]
    delivered = len(every)
    return {"leads": leads, "connections": connections, "subscriptions": ready["subscriptions"],
            "actions": [f"{s['resource']}.{s['action']}" for s in subscriptions], "commits": len(t0s),
            "server_cores": SERVER_CPUS, "client_cores": CLIENT_CPUS, "load_average_before": load_before,
            "load_average_after": load_average(),
            "update_latency": summary(every),
            "all_subscribers_latency": summary([max(x) for x in per_commit if x]),
            "updates_per_commit": statistics.mean(len(x) for x in per_commit),
            "updates_sent": sum(sent), "updates_delivered": delivered,
            "reruns_per_commit": statistics.mean(reruns), "reruns": reruns,
            "server_cpu_s": cpu, "server_cpu_us_per_update": cpu / max(1, delivered) * 1e6,
            "rss_before_mib": rss_before / 2**20, "rss_after_mib": rss_after / 2**20,
            "per_commit_max_ms": [round(max(x), 1) if x else None for x in per_commit],
            "errors": arrivals["errors"]}


# -- live-load -------------------------------------------------------------------------------

async def probe_commit(connection: asyncpg.Connection, n: int) -> tuple[float, int]:
    """A new prospect (users row) whose commit is timestamped; returns (t0, total_users after
    it). The row_counts row is locked until COMMIT, so total_users ≥ the returned count in a
    push means the push's snapshot holds this commit."""
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute("INSERT INTO users (full_name, email) VALUES ($1, $2)",
                             f"Bench Probe {n}", f"probe{n}@bench.example")
    total = await connection.fetchval("SELECT n FROM row_counts WHERE table_name = 'users'")
    started = time.monotonic()
    await transaction.commit()
    return started, total


async def probe_writer(dsn: str, rate: float, until: float) -> list[tuple[float, int]]:
    connection = await asyncpg.connect(dsn)
    commits: list[tuple[float, int]] = []
    next_at = time.monotonic()
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        commits.append(await probe_commit(connection, len(commits)))
        next_at += 1 / rate
    await connection.close()
    return commits


AGENT_TABLES = ("users", "messages", "lead_qualifications", "lead_step_history", "meetings", "requirements")


async def rows_written(dsn: str) -> dict[str, int]:
    """Rows inserted + updated so far in the tables the agent writes (pg_stat_user_tables):
    the rate the agent actually reached, not the one it was asked for."""
    connection = await asyncpg.connect(dsn)
    rows = await connection.fetch("SELECT relname, n_tup_ins + n_tup_upd AS n FROM pg_stat_user_tables "
                                  "WHERE relname = any($1::text[])", list(AGENT_TABLES))
    commits = await connection.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    await connection.close()
    return {**{row["relname"]: row["n"] for row in rows}, "xact_commit": commits}


def demo_agent(dsn: str, rate: float) -> subprocess.Popen[bytes]:
    """`wsd demo-activity`: the simulated AI agent writing straight into PostgreSQL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_DATABASE_DSN": dsn, "WSD_LOG_LEVEL": "warning"}
    return subprocess.Popen([sys.executable, "-m", "wsd", "demo-activity", "--rate", str(rate)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


async def live_load(leads: int, connections: int, seconds: float, agent_rate: float,
                    probe_rate: float) -> dict[str, Any]:
    """`connections` dashboards on every aggregate while the agent writes for `seconds`."""
    async with Data(leads) as data:
        subscriptions = [{"resource": r, "action": a, "payload": p} for r, a, p in LOAD_SUBSCRIPTIONS]
        with Daemon(data.dsn, cache_ttl=2.0, cpus=SERVER_CPUS, env=LIVE_ENV) as daemon:
            async with metrics_connection(daemon) as ws:
                subscribers = await Subscribers.start(daemon, connections, subscriptions, probe=0)
                agent = demo_agent(data.dsn, agent_rate)
                try:
                    figures = await measure_load(ws, daemon, data, subscribers, agent, seconds, probe_rate)
                finally:
                    agent.kill()
                    agent.wait()
                    subscribers.kill()
    commits, arrivals, before, after, written = figures
    return {**load_figures(commits, arrivals, before, after, leads, connections, subscriptions,
                           agent_rate, probe_rate), "rows_written_per_s": written}


async def measure_load(ws: Any, daemon: Daemon, data: Data, subscribers: Subscribers,
                       agent: subprocess.Popen[bytes], seconds: float, probe_rate: float) -> tuple:
    """CPU of wsd and PostgreSQL, re-runs and timestamped commits over `seconds` of writes."""
    await asyncio.sleep(3)  # the agent's connection and first events
    data_dir = data.server.data_dir
    written_before = await rows_written(data.dsn)
    before = (await live_stats(ws), cpu_seconds(daemon.process.pid),  # type: ignore[union-attr]
              postgres_cpu_seconds(data_dir), time.monotonic(), load_average(),
              cpu_seconds(subscribers.process.pid), cpu_seconds(agent.pid))
    commits = await probe_writer(data.dsn, probe_rate, time.monotonic() + seconds)
    after = (await live_stats(ws), cpu_seconds(daemon.process.pid),  # type: ignore[union-attr]
             postgres_cpu_seconds(data_dir), time.monotonic(), None,
             cpu_seconds(subscribers.process.pid), cpu_seconds(agent.pid))
    agent.terminate()
    agent.wait(30)
    await asyncio.sleep(1)  # statistics reach pg_stat_user_tables within a second
    written_after = await rows_written(data.dsn)
    written = {k: (v - written_before.get(k, 0)) / seconds for k, v in written_after.items()}
    arrivals = await subscribers.stop()
    return commits, arrivals, before, after, written


def push_latencies(commits: list[tuple[float, int]], probe: dict,
                   connections: int) -> tuple[list[list[float]], int]:
    """For each timestamped commit and each connection: the first dashboard-stats push whose
    total_users shows the commit. Returns the latencies (ms) per commit and how many never came."""
    by_connection: list[list[tuple[float, int]]] = [[] for _ in range(connections)]
    for t, conn, value in zip(probe["t"], probe["conn"], probe["value"]):
        by_connection[conn].append((t, value))
    per_commit, missing = [], 0
    for t0, total in commits:
        latencies = []
        for pushes in by_connection:
            seen = next((t for t, value in pushes if value >= total and t >= t0), None)
            if seen is None:
                missing += 1
            else:
                latencies.append((seen - t0) * 1000)
        per_commit.append(latencies)
    return per_commit, missing


def load_figures(commits: list[tuple[float, int]], arrivals: dict, before: tuple, after: tuple, leads: int,
                 connections: int, subscriptions: list[dict], agent_rate: float,
                 probe_rate: float) -> dict[str, Any]:
    elapsed = after[3] - before[3]
    per_commit, missing = push_latencies(commits, arrivals["probe"], connections)
    latencies = [latency for commit in per_commit for latency in commit]
    return {"leads": leads, "connections": connections, "seconds": elapsed,
            "actions": [f"{s['resource']}.{s['action']}" for s in subscriptions],
            "writes_per_s": {"agent": agent_rate, "timestamped_probe": probe_rate},
            "server_cores": SERVER_CPUS, "client_cores": CLIENT_CPUS + " (PostgreSQL, agent, writer: unpinned)",
            "load_average_before": before[4], "load_average_after": load_average(),
            "postgres_cpu_share": (after[2] - before[2]) / elapsed,
            "wsd_cpu_share": (after[1] - before[1]) / elapsed,
            "subscribers_cpu_share": (after[5] - before[5]) / elapsed,
            "agent_cpu_share": (after[6] - before[6]) / elapsed,
            "reruns_per_s": (after[0]["reruns"] - before[0]["reruns"]) / elapsed,
            "updates_sent_per_s": (after[0]["updates_sent"] - before[0]["updates_sent"]) / elapsed,
            "updates_delivered": len(arrivals["arrivals"]["t"]),
            "timestamped_commits": len(commits), "push_latency": summary(latencies),
            # first connection served vs last: waiting for the re-run vs fanning it out
            "first_push_latency": summary([min(c) for c in per_commit if c]),
            "last_push_latency": summary([max(c) for c in per_commit if c]),
            "pushes_missing": missing, "errors": arrivals["errors"]}
