"""`python -m bench.hotpath`: wsd's request path against bare floors, server CPU per request.

On a fair core split: every server (wsd and its floors) pinned to core 0 (`taskset -c 0`),
the load generator (`bench/hotload.py`, a bare-protocol uvloop client) and PostgreSQL pinned
to core 1. In each round, for each scenario, wsd and its floors run one after the other
(wsd, bare websockets, bare aiohttp; the order turns each round), so a change in the
machine's load hits them alike;
the figure is server CPU µs per request (user + sys of the server's /proc/PID/stat over the
measured window / replies in it) and the ratio wsd / websockets floor of the same round.

wsd runs as shipped: access log at info (JSON lines to a file), cache on (ttl 2 s), auth by
a Bearer header, every check in place.

Scenarios: `cached` — dashboard.get_dashboard_stats from the cache (floor (a): parse, dict
lookup, orjson reply of the same answer); `point` — leads.get_lead_with_complete_data over
200 leads (floor (b): the action's own SQL through asyncpg); `point-steady` — the same at a
steady 50 clients × 50 requests/s; then both paced (100 clients ×
10 req/s) for latency, on wsd and on the websockets floor. Paced, the client (needing ~2 % of
its core) runs at real-time priority so it reads each reply as it lands, and PostgreSQL may
use either core: pinned behind the client, its queueing doubled the point read's p99 for wsd
and the floor alike.

`--picows` adds wsd itself on picows (`server.transport = "picows"`, target `wsd-picows`) and
a bare picows floor: both wsd transports against every floor, in the same rounds.

    python -m bench.hotpath [--rounds 3] [--seconds 5] [--clients 50] [--picows]
                            [--profile cached|point] [--wsd-transport websockets|picows]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import psutil
from websockets.asyncio.client import connect

from bench.harness import BENCH_VAR, RESULTS, ROOT, Data, free_port, sample_ids, wait_for_port
from wsd.auth import new_token

SERVER_CORE, CLIENT_CORE = "0", "1"
WSDS = ("wsd", "wsd-picows")
FLOORS = ("websockets", "aiohttp", "picows")
TARGETS = (*WSDS, *FLOORS)
# Scenario → (requests, rate per client; 0 = closed loop). The closed-loop point read is
# bounded by PostgreSQL on core 1, not by the server, so each server's CPU per request also
# depends on the throughput it happened to get (fewer requests per wake-up); at a steady
# 2,500 requests/s, below every server's ceiling, all get the same arrivals.
LOADS = {"cached": ("cached", 0.0), "point": ("point", 0.0), "point-steady": ("point", 50.0)}


def pin_postgres(data_dir: Path, cores: str) -> None:
    """PostgreSQL on `cores`: the postmaster (the backends it forks later inherit it) and the
    processes it already runs, whose command lines no longer name the data directory."""
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "postgres" in (process.info["name"] or "") and str(data_dir) in " ".join(cmdline):
            for member in (process, *process.children(recursive=True)):
                subprocess.run(["taskset", "-a", "-c", "-p", cores, str(member.pid)],
                               stdout=subprocess.DEVNULL, check=False)


class Server:
    """A server process pinned to the server core."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, path: str,
                 token: str = "", log: Path | None = None) -> None:
        self.name, self.port, self.path, self.token = name, port, path, token
        out = open(log, "wb") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(["taskset", "-c", SERVER_CORE, *argv], env=env, cwd=ROOT,
                                        stdout=out)
        wait_for_port(port, self.process)

    @property
    def pid(self) -> int:
        return self.process.pid   # taskset execs the server: same pid

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def load(server: Server, messages: list[dict], clients: int, seconds: float, rate: float = 0.0,
         warmup: float = 1.0) -> dict[str, Any]:
    config = {"host": "127.0.0.1", "port": server.port, "path": server.path, "token": server.token,
              "clients": clients, "warmup": warmup, "seconds": seconds, "rate": rate,
              "server_pid": server.pid, "messages": messages}
    # Paced, the client needs ~2 % of its core but must read each reply when it lands, not
    # when PostgreSQL's backends (same core) give the core back: real-time priority. Not in
    # the closed loop, where it would starve PostgreSQL.
    priority = ["chrt", "-f", "10"] if rate and os.environ.get("BENCH_PACED_RT", "1") == "1" else []
    done = subprocess.run([*priority, "taskset", "-c", CLIENT_CORE, sys.executable, "-m", "bench.hotload",
                           orjson.dumps(config).decode()],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"load against {server.name} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["loadavg"] = os.getloadavg()[0]
    return result


def start_wsd(dsn: str, log: Path, transport: str = "websockets", name: str = "wsd") -> Server:
    token, entry = new_token("bench", "admin")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_DATABASE_DSN": dsn, "WSD_SERVER_PORT": str(port),
           "WSD_CACHE_TTL_SECONDS": "2.0", "WSD_LOG_LEVEL": "info", "WSD_UVLOOP": "1",
           "WSD_DATABASE_POOL_MAX_SIZE": "10", "WSD_SERVER_TRANSPORT": transport,
           "WSD_AUTH_TOKENS": f'[{{name = "bench", role = "admin", sha256 = "{entry.sha256}"}}]'}
    return Server(name, [sys.executable, "-m", "wsd", "serve"], env, port, "/ws", token, log)


def start_floor(framework: str, answer: Path, dsn: str) -> Server:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return Server(framework, [sys.executable, "-m", "bench.floors", framework, str(port), str(answer), dsn],
                  env, port, "/ws")


async def cached_answer(server: Server) -> Any:
    async with connect(f"ws://127.0.0.1:{server.port}/ws", compression=None, max_size=None,
                       additional_headers={"Authorization": f"Bearer {server.token}"}) as ws:
        await ws.send(orjson.dumps({"resource": "dashboard", "action": "get_dashboard_stats", "id": 1}).decode())
        reply = orjson.loads(await ws.recv())
    assert reply["type"] == "success", reply
    return reply["payload"]["data"]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(rounds: list[dict[str, dict]], scenario: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for target in TARGETS:
        runs = [r[target] for r in rounds if target in r]
        if not runs:
            continue
        out[target] = {"cpu_us": spread([r["server_cpu_us_per_request"] for r in runs]),
                       "msgs_per_s": spread([r["msgs_per_s"] for r in runs]),
                       "p50_ms": spread([r["p50_ms"] for r in runs]),
                       "p99_ms": spread([r["p99_ms"] for r in runs]),
                       "errors": sum(r["errors"] for r in runs)}
    for wsd in WSDS:
        for floor in FLOORS:
            if all(wsd in r and floor in r for r in rounds):
                key = f"ratio_{floor}" if wsd == "wsd" else f"ratio_{wsd}_{floor}"
                out[key] = spread([r[wsd]["server_cpu_us_per_request"] /
                                   r[floor]["server_cpu_us_per_request"] for r in rounds])
    out["ratio_ws"] = out["ratio_websockets"]
    return out


def fmt(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"


def print_table(results: dict[str, Any]) -> None:
    print(f"\nmachine: {results['machine']}")
    print(f"load average during the run: {results['loadavg']}")
    print(f"\n{'scenario':12} {'server':11} {'cpu µs/req':>24} {'msgs/s':>26}   ratio to websockets floor")
    for scenario in LOADS:
        summary = results["summary"].get(scenario)
        if not summary:
            continue
        for target in TARGETS:
            if target not in summary:
                continue
            s = summary[target]
            ratio = ""
            if target in WSDS:
                prefix = "ratio_" if target == "wsd" else f"ratio_{target}_"
                ratio = f"{fmt(summary[prefix + 'websockets'], 2)}"
                for floor in FLOORS[1:]:
                    if f"{prefix}{floor}" in summary:
                        ratio += f"  (to {floor} {fmt(summary[f'{prefix}{floor}'], 2)})"
            print(f"{scenario:12} {target:11} {fmt(s['cpu_us']):>24} {fmt(s['msgs_per_s'], 0):>26}   {ratio}")
    paced = results.get("paced")
    if paced:
        print(f"\n{'paced 100 × 10/s':18} {'server':11} {'p50 ms':>22} {'p99 ms':>22} {'cpu µs/req':>24}")
        for scenario, by_server in paced.items():
            for name, runs in by_server.items():
                print(f"{scenario:18} {name:11} {fmt(spread([r['p50_ms'] for r in runs]), 2):>22} "
                      f"{fmt(spread([r['p99_ms'] for r in runs]), 2):>22} "
                      f"{fmt(spread([r['server_cpu_us_per_request'] for r in runs])):>24}")


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    import uvloop
    import websockets
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "cpu_model": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                               if line.startswith("model name")), "?"),
            "websockets": websockets.__version__, "uvloop": uvloop.__version__,
            "picows": _version("picows"),
            "split": f"servers on core {SERVER_CORE}; load client and PostgreSQL on core {CLIENT_CORE}; "
                     f"paced: client on core {CLIENT_CORE} at real-time priority, PostgreSQL on both",
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def profile(server: Server, messages: list[dict], clients: int, seconds: float, out: Path) -> None:
    """py-spy on the server while the closed loop runs; raw (collapsed) stacks to `out`."""
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-r", "500", "-p",
                            str(server.pid), "-d", str(int(seconds)), "--format", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load(server, messages, clients, seconds + 1, warmup=0.5)
    spy.wait(60)


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--scenarios", default=",".join([*LOADS, "paced"]))
    parser.add_argument("--no-aiohttp", action="store_true")
    parser.add_argument("--picows", action="store_true",
                        help="add wsd on picows (wsd-picows) and a bare picows floor (pip install picows)")
    parser.add_argument("--wsd-transport", choices=("websockets", "picows"), default="websockets",
                        help="the transport of the `wsd` target (and of --profile)")
    parser.add_argument("--profile", choices=("cached", "point"), help="only profile wsd with py-spy")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    loadavg_before = os.getloadavg()
    async with Data(10_000) as data:
        pin_postgres(BENCH_VAR / "pg-10000", CLIENT_CORE)
        lead_ids = (await sample_ids(data.dsn))["leads"]
        messages = {
            "cached": [{"resource": "dashboard", "action": "get_dashboard_stats", "id": 0}],
            "point": [{"resource": "leads", "action": "get_lead_with_complete_data", "id": 0,
                       "payload": {"lead_id": i}} for i in lead_ids],
        }
        wsd = start_wsd(data.dsn, BENCH_VAR / "hotpath-wsd.log", args.wsd_transport)
        servers = [wsd]
        others: dict[str, Server] = {}
        try:
            if args.profile:
                stamp = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}"
                out = RESULTS / f"profile-{args.profile}-{stamp}.txt"
                RESULTS.mkdir(parents=True, exist_ok=True)
                profile(wsd, messages[args.profile], args.clients, args.seconds, out)
                print(f"saved {out}")
                return
            answer = BENCH_VAR / "hotpath-answer.json"
            answer.write_bytes(orjson.dumps(await cached_answer(wsd)))
            if args.picows:
                others["wsd-picows"] = start_wsd(data.dsn, BENCH_VAR / "hotpath-wsd-picows.log", "picows",
                                                 "wsd-picows")
                servers.append(others["wsd-picows"])
            floors = {"websockets": start_floor("websockets", answer, data.dsn)}
            if not args.no_aiohttp:
                floors["aiohttp"] = start_floor("aiohttp", answer, data.dsn)
            if args.picows:
                floors["picows"] = start_floor("picows", answer, data.dsn)
            servers += floors.values()
            results: dict[str, Any] = {"machine": machine(), "clients": args.clients, "seconds": args.seconds,
                                       "rounds": {}, "summary": {}}
            for scenario, (kind, rate) in LOADS.items():
                if scenario not in scenarios:
                    continue
                rounds = []
                for n in range(args.rounds):
                    this: dict[str, dict] = {}
                    # The order turns each round, so no server always runs first (or last).
                    order = [("wsd", wsd), *others.items(), *floors.items()]
                    for name, server in order[n % len(order):] + order[:n % len(order)]:
                        this[name] = await asyncio.to_thread(load, server, messages[kind], args.clients,
                                                             args.seconds, rate)
                        print(f"{scenario} round {n + 1} {name:10}: {this[name]['server_cpu_us_per_request']:6.1f} µs/req "
                              f"{this[name]['msgs_per_s']:8.0f} msgs/s  core busy {this[name]['server_core_busy']:.2f} "
                              f"client {this[name]['client_cpu_us_per_request']:.1f} µs/req "
                              f"errors {this[name]['errors']} load {this[name]['loadavg']:.2f}", flush=True)
                    rounds.append(this)
                results["rounds"][scenario] = rounds
                results["summary"][scenario] = summarize(rounds, scenario)
            if "paced" in scenarios:
                # Paced, the cores are mostly idle: PostgreSQL may run on either, as it would
                # on a machine of its own, rather than queue behind the client on core 1
                # (pinned there, the point read's p99 doubles for wsd and floor alike).
                pin_postgres(BENCH_VAR / "pg-10000", f"{SERVER_CORE},{CLIENT_CORE}")
                results["paced"] = {}
                for scenario in ("cached", "point"):
                    paced_servers = {"wsd": wsd, **others, "websockets": floors["websockets"]}
                    runs: dict[str, list[dict]] = {name: [] for name in paced_servers}
                    for n in range(args.rounds):
                        for name, server in paced_servers.items():
                            run = await asyncio.to_thread(load, server, messages[scenario], 100, args.seconds, 10.0)
                            runs[name].append(run)
                            print(f"paced {scenario} round {n + 1} {name:10}: p50 {run['p50_ms']:.2f} ms p99 "
                                  f"{run['p99_ms']:.2f} ms ({run['msgs_per_s']:.0f} msgs/s)", flush=True)
                    results["paced"][scenario] = runs
            results["loadavg"] = {"before": loadavg_before, "after": os.getloadavg()}
        finally:
            for server in servers:
                server.stop()
    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"hotpath-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nsaved {path}")


if __name__ == "__main__":
    asyncio.run(main())
