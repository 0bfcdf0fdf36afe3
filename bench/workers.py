"""`python -m bench.workers`: the cached answer and the point read with `--workers 1` and `2`.

The machine has 2 cores. With one worker, the server is pinned to core 0 and the load
generator to core 1. With two workers, each worker needs a core of its own, so the server
(parent and workers) runs on cores 0–1 and the load generator shares them: the figure that
matters is msgs/s per server CPU second, next to the msgs/s a client sharing the machine
sees. Rounds alternate between the two so a change in the machine's load hits both.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import psutil

from bench.harness import (ROOT, Data, envelope, free_port, run_load, sample_ids, save,
                           wait_for_port, machine)
from wsd.auth import new_token

CLIENTS, SECONDS, ROUNDS = 50, 8.0, 3


class Server:
    """`wsd serve --workers N` on the benchmark database, pinned to `cores`."""

    def __init__(self, dsn: str, workers: int, cores: str) -> None:
        self.token, entry = new_token("bench", "admin")
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_DATABASE_DSN": dsn,
               "WSD_SERVER_PORT": str(self.port), "WSD_CACHE_TTL_SECONDS": "2",
               "WSD_SERVER_MAX_INFLIGHT_PER_CONNECTION": "64", "WSD_DATABASE_POOL_MAX_SIZE": "10",
               "WSD_AUTH_TOKENS": f'[{{name = "bench", role = "admin", sha256 = "{entry.sha256}"}}]'}
        self.process = subprocess.Popen(["taskset", "-c", cores, sys.executable, "-m", "wsd", "serve",
                                         "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)
        if workers > 1:
            time.sleep(3)  # every worker listening, not only the first

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cpu_seconds(self) -> float:
        """User + system time of the parent and every worker."""
        parent = psutil.Process(self.process.pid)
        total = 0.0
        for process in [parent, *parent.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def measure(server: Server, messages: list[dict[str, Any]], client_cores: str) -> dict[str, Any]:
    before = server.cpu_seconds()
    done = subprocess.run(["taskset", "-c", client_cores, sys.executable, "-m", "bench.load", server.url,
                           server.token, str(CLIENTS), str(SECONDS), json.dumps(messages)],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(done.stdout)
    cpu = server.cpu_seconds() - before
    result["server_cpu_us_per_request"] = cpu / max(1, result["requests"]) * 1e6
    return result


async def scenarios(data: Data) -> dict[str, list[dict[str, Any]]]:
    ids = await sample_ids(data.dsn)
    loads = {"cached stats": [envelope("dashboard", "get_dashboard_stats")],
             "point read": [envelope("leads", "get_lead_with_complete_data", {"lead_id": str(i)})
                            for i in ids["leads"]]}
    setups = {1: ("0", "1"), 2: ("0,1", "0,1")}
    results: dict[str, list[dict[str, Any]]] = {}
    for _ in range(ROUNDS):
        for workers, (server_cores, client_cores) in setups.items():
            server = Server(data.dsn, workers, server_cores)
            try:
                for name, messages in loads.items():
                    result = measure(server, messages, client_cores)
                    result.update(workers=workers, server_cores=server_cores, client_cores=client_cores)
                    results.setdefault(f"{name}, {workers} worker(s)", []).append(result)
            finally:
                server.stop()
    return results


def main() -> None:
    async def run() -> dict[str, Any]:
        async with Data(10_000) as data:
            return await scenarios(data)
    results = asyncio.run(run())
    summary = {name: {"msgs_per_s": [round(r["msgs_per_s"]) for r in rows],
                      "server_cpu_us_per_request": [round(r["server_cpu_us_per_request"], 1) for r in rows],
                      "p99_ms": [round(r["p99_ms"], 2) for r in rows]}
               for name, rows in results.items()}
    for load in ("cached stats", "point read"):
        one = sorted(summary[f"{load}, 1 worker(s)"]["msgs_per_s"])[ROUNDS // 2]
        two = sorted(summary[f"{load}, 2 worker(s)"]["msgs_per_s"])[ROUNDS // 2]
        summary[f"{load}: 2 workers / 1 worker (median msgs/s)"] = round(two / one, 2)  # type: ignore[assignment]
    print(json.dumps(summary, indent=2))
    save({"machine": machine(), "workers": summary})


if __name__ == "__main__":
    main()
