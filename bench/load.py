"""The load generator: N concurrent WebSocket clients in a closed loop, run as its own process.

Each client sends one request, waits for its reply, and sends the next, for a fixed time;
with RATE, each client sends at most RATE requests a second (a dashboard tab's pace) so
latency is measured under a load the server can carry rather than at saturation.
Prints one JSON object: requests, errors, elapsed seconds and latency percentiles (ms).

Usage: python -m bench.load URL TOKEN CLIENTS SECONDS MESSAGES_JSON [RATE]
MESSAGES_JSON is a list of request envelopes; each client cycles through it.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from websockets.asyncio.client import connect


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def one_client(url: str, token: str | None, messages: list[dict], until: float,
                     latencies: list[float], errors: list[int], offset: int, rate: float) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with connect(url, additional_headers=headers, compression=None, max_size=None) as ws:
        frames = [orjson.dumps(m).decode() for m in messages]
        i = offset
        interval = 1 / rate if rate > 0 else 0.0
        # Paced clients start spread over one interval, as independent browser tabs would.
        next_send = time.perf_counter() + interval * (offset % 100) / 100
        while time.perf_counter() < until:
            if interval:
                await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
                next_send += interval
            started = time.perf_counter()
            await ws.send(frames[i % len(frames)])
            reply = await ws.recv()
            while reply.startswith('{"type":"event"'):   # pushed events are not replies
                reply = await ws.recv()
            latencies.append((time.perf_counter() - started) * 1000)
            if reply.startswith('{"type":"error"'):
                errors[0] += 1
            i += 1


async def run(url: str, token: str | None, clients: int, seconds: float, messages: list[dict],
              rate: float = 0.0) -> dict:
    latencies: list[float] = []
    errors = [0]
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(one_client(url, token, messages, until, latencies, errors, n, rate)
                           for n in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "errors": errors[0], "elapsed": elapsed,
            "msgs_per_s": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 0.50), "p95_ms": percentile(latencies, 0.95),
            "p99_ms": percentile(latencies, 0.99)}


def main() -> None:
    url, token, clients, seconds, messages = sys.argv[1:6]
    rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    result = asyncio.run(run(url, token or None, int(clients), float(seconds), orjson.loads(messages), rate))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
