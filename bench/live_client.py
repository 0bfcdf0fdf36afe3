"""Live-query subscribers, run as their own process (pinned by the harness to its own core).

Opens CONNECTIONS WebSocket connections, subscribes each to every entry of SUBSCRIPTIONS
(or, when SUBSCRIPTIONS is a list of lists, connection n to every entry of list n), prints one JSON line `{"ready": ...}`, then records when each update arrives until a line
arrives on stdin; then writes one JSON object of arrivals to OUT and exits.

Reading must cost as little as possible so that the client's own delay does not show up
as the server's: frames stay bytes (no UTF-8 decode), and an update is only sliced to find
its subscription id. Only the subscription named PROBE (an index into SUBSCRIPTIONS, -1 for
none) is looked into further: its `"total_users":N` is read, so that the harness can tell
which commit a push reflects when commits come faster than re-runs.

Usage: python -m bench.live_client URL TOKEN CONNECTIONS SUBSCRIPTIONS_JSON|@FILE PROBE OUT
Output: {"ready": n, "subscriptions": n, "arrivals": {"t": [...], "sub": [...], "conn": [...]},
         "probe": {"t": [...], "conn": [...], "value": [...]}, "errors": [...]}
Times are time.monotonic() (CLOCK_MONOTONIC: one clock for every process of the machine).
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

UPDATE_PREFIX = b'{"type":"update","subscription":"'
PROBE_FIELD = b'"total_users":'
OPEN_AT_ONCE = 50  # connections opened concurrently: a burst of 1,000 handshakes would time out


@dataclass
class Record:
    """Arrivals as parallel columns: cheaper to append and to dump than one object each."""
    t: list[float] = field(default_factory=list)
    sub: list[int] = field(default_factory=list)
    conn: list[int] = field(default_factory=list)
    probe_t: list[float] = field(default_factory=list)
    probe_conn: list[int] = field(default_factory=list)
    probe_value: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    update_bytes: int = 0


def raise_open_files() -> None:
    """Each connection is a descriptor; the default soft limit (often 1,024) is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def subscribe_all(ws: ClientConnection, subscriptions: list[dict]) -> dict[bytes, int]:
    """Sends every subscribe request at once; returns subscription id → index in the list."""
    for n, target in enumerate(subscriptions):
        await ws.send(orjson.dumps({"resource": "live", "action": "subscribe", "id": n, "payload": target}))
    ids: dict[bytes, int] = {}
    while len(ids) < len(subscriptions):
        reply = orjson.loads(await ws.recv(decode=False))
        if reply.get("type") != "success":
            raise RuntimeError(f"subscribe failed: {reply}")
        ids[reply["payload"]["data"]["subscription"].encode()] = reply["id"]
    return ids


def probe_value(frame: bytes) -> int:
    """`total_users` of a get_dashboard_stats update, read without parsing the frame."""
    start = frame.index(PROBE_FIELD) + len(PROBE_FIELD)
    end = start
    while frame[end] in b"0123456789":
        end += 1
    return int(frame[start:end])


async def read_updates(ws: ClientConnection, conn: int, ids: dict[bytes, int], probe: int,
                       record: Record) -> None:
    """Stamps every update on arrival; the only parsing is slicing out the subscription id."""
    try:
        async for frame in _frames(ws):
            now = time.monotonic()
            if not frame.startswith(UPDATE_PREFIX):
                continue
            sub = ids[frame[len(UPDATE_PREFIX):frame.index(b'"', len(UPDATE_PREFIX))]]
            record.update_bytes += len(frame)
            record.t.append(now)
            record.sub.append(sub)
            record.conn.append(conn)
            if sub == probe:
                record.probe_t.append(now)
                record.probe_conn.append(conn)
                record.probe_value.append(probe_value(frame))
    except Exception as error:  # a dropped connection is a result, not a crash of the loader
        record.errors.append(f"connection {conn}: {error!r}")


async def _frames(ws: ClientConnection) -> Any:
    """Whole frames as bytes, however the server framed them."""
    while True:
        yield await ws.recv(decode=False)


async def open_one(url: str, token: str, subscriptions: list[dict], gate: asyncio.Semaphore
                   ) -> tuple[ClientConnection, dict[bytes, int]]:
    async with gate:
        ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                           compression=None, max_size=None, open_timeout=60, ping_interval=None)
        return ws, await subscribe_all(ws, subscriptions)


async def run(url: str, token: str, connections: int, subscriptions: list[dict], probe: int) -> dict:
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    per_connection = subscriptions if subscriptions and isinstance(subscriptions[0], list) else None
    opened = await asyncio.gather(*(open_one(url, token, per_connection[n] if per_connection else subscriptions,
                                             gate) for n in range(connections)))
    record = Record()
    readers = [asyncio.create_task(read_updates(ws, n, ids, probe, record))
               for n, (ws, ids) in enumerate(opened)]
    print(orjson.dumps({"ready": len(opened), "subscriptions": sum(len(ids) for _, ids in opened)}).decode(),
          flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return {"ready": len(opened), "arrivals": {"t": record.t, "sub": record.sub, "conn": record.conn},
            "probe": {"t": record.probe_t, "conn": record.probe_conn, "value": record.probe_value},
            "update_bytes": record.update_bytes, "errors": record.errors[:20]}


def main() -> None:
    url, token, connections, subscriptions = sys.argv[1:5]
    probe, out = int(sys.argv[5]), sys.argv[6]
    raise_open_files()
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    listed = Path(subscriptions[1:]).read_bytes() if subscriptions.startswith("@") else subscriptions
    result = asyncio.run(run(url, token, int(connections), orjson.loads(listed), probe))
    with open(out, "wb") as file:
        file.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
