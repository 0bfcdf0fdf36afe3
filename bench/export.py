"""Exporting every lead as CSV while other clients use the dashboard.

What it measures, on the demo database of `--leads` leads (default 1M):
- the export's wall time and bytes (one client reading the chunks as fast as it can,
  counting bytes without decoding them);
- wsd's RSS growth over the whole export (sampled every 100 ms; the peak minus before);
- the p99 of other clients' requests (paced point reads of lead documents, bench.load in
  its own process) during the export, against the same load without one, measured in the
  same run before and after the export (the worse of the two is the floor).

Usage: python -m bench.export [--leads N] [--clients 20] [--rate 10] [--seconds 20]
       [--cpus 0]   (pin wsd; the load generator and this reader take the other cores)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import orjson
from websockets.asyncio.client import connect

from bench.harness import Daemon, Data, envelope, machine, measure, merge, sample_ids, save


async def _export(daemon: Daemon) -> dict[str, Any]:
    """Export every lead; the wall time, bytes and chunks received."""
    started = time.perf_counter()
    received = chunks = 0
    async with connect(daemon.url, additional_headers={"Authorization": f"Bearer {daemon.token}"},
                       compression=None, max_size=None) as ws:
        await ws.send(orjson.dumps(envelope("export", "leads", {}, request_id="export")).decode())
        while True:
            frame = await ws.recv(decode=False)
            if frame.startswith(b'{"type":"chunk"'):
                received += len(frame)
                chunks += 1
                continue
            reply = orjson.loads(frame)
            if reply.get("id") == "export":
                break
    return {"seconds": time.perf_counter() - started, "frame_bytes": received, "chunks": chunks,
            "reply": reply["payload"]}


async def _peak_rss(daemon: Daemon, stop: asyncio.Event) -> int:
    peak = daemon.rss_bytes()
    while not stop.is_set():
        peak = max(peak, daemon.rss_bytes())
        await asyncio.sleep(0.1)
    return peak


async def export_scenario(data: Data, clients: int, rate: float, seconds: float, cpus: str) -> dict[str, Any]:
    with Daemon(data.dsn, cache_ttl=2.0, cpus=cpus) as daemon:
        ids = (await sample_ids(data.dsn))["leads"]
        messages = [envelope("leads", "get_lead_with_complete_data", {"lead_id": lead}, n)
                    for n, lead in enumerate(ids[:50])]
        measure(daemon, clients, 3, messages, rate)   # warm PostgreSQL's buffers and wsd
        before = measure(daemon, clients, seconds, messages, rate)
        rss_before = daemon.rss_bytes()
        stop = asyncio.Event()
        sampler = asyncio.create_task(_peak_rss(daemon, stop))
        export = asyncio.create_task(_export(daemon))
        during = []
        while not export.done():
            during.append(await asyncio.to_thread(measure, daemon, clients, seconds, messages, rate))
        stop.set()
        peak = await sampler
        exported = export.result()
        after = measure(daemon, clients, seconds, messages, rate)
    without = merge([before, after])
    with_export = merge(during)
    return {
        "leads": data.leads, "clients": clients, "rate_per_client": rate,
        "export": {**exported, "rows_per_s": exported["reply"]["data"]["rows"] / exported["seconds"]},
        "rss_before_mib": rss_before / 2**20, "rss_peak_mib": peak / 2**20,
        "rss_growth_mib": (peak - rss_before) / 2**20,
        "without_export": without, "during_export": with_export,
        "p99_ratio": with_export["p99_ms"] / without["p99_ms"],
        "p50_ratio": with_export["p50_ms"] / without["p50_ms"],
        "during_windows_p99_ms": [r["p99_ms"] for r in during],
        "during_windows_median_p99_ms": statistics.median(r["p99_ms"] for r in during),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export")
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10, help="requests/s per other client")
    parser.add_argument("--seconds", type=float, default=20, help="length of each load window")
    parser.add_argument("--cpus", default="", help="pin wsd to these cores (taskset -c)")
    args = parser.parse_args()
    async with Data(args.leads) as data:
        result = await export_scenario(data, args.clients, args.rate, args.seconds, args.cpus)
    results = {"machine": machine(), "export": result}
    print(json.dumps(result, indent=2))
    print(f"\nsaved {save(results)}")


if __name__ == "__main__":
    asyncio.run(main())
