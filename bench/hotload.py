"""A minimal WebSocket load generator for the hot-path bench, run as its own process pinned
to its own core (`taskset -c 1 python -m bench.hotload CONFIG_JSON`).

It speaks just enough RFC 6455 over a bare asyncio Protocol on uvloop: one HTTP upgrade per
connection, client frames masked with a zero key (valid: the server XORs with 0000), server
frames read by their header and the reply's id picked out of the bytes; no JSON parsing, no
websockets library. That keeps the client's cost per request a few µs, so the server pinned
to the other core is what saturates.

Closed loop (rate 0): each connection sends its next request when the reply to the last one
arrives. Paced (rate R): each connection sends R requests a second, start times spread over
one interval. After a warm-up, the measured window reads the server's CPU time (utime +
stime of /proc/PID/stat, every thread) at both ends, so `server_cpu_us_per_request` is the
server's CPU time over the window divided by the replies received in it.

CONFIG_JSON: {"host", "port", "path", "token", "clients", "warmup", "seconds", "rate",
"server_pid", "messages": [envelope, ...]} — each connection cycles through `messages`
(their "id" is replaced by a per-connection counter). Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from typing import Any

import orjson

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, round(fraction * len(values)) - 1))]


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame with a zero mask key (so the payload goes as it is)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0xFE)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0xFF)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


class Window:
    """What the measured window collects, shared by every connection."""

    def __init__(self) -> None:
        self.counting = False
        self.replies = 0
        self.errors = 0
        self.latencies: list[float] = []


class Client(asyncio.Protocol):
    def __init__(self, config: dict[str, Any], window: Window, offset: int) -> None:
        self.window = window
        self.loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = self.loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.config = config
        # Envelopes as bytes split around the id, so a request is two joins, not a dumps.
        self.templates = []
        for message in config["messages"]:
            text = orjson.dumps({**message, "id": 999_999_999_999})
            before, after = text.split(b"999999999999")
            self.templates.append((before, after))
        self.turn = offset
        self.next_id = 1
        self.sent_at = 0.0
        self.interval = 1 / config["rate"] if config["rate"] else 0.0
        self.next_send = 0.0
        self.offset = offset

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport
        key = base64.b64encode(os.urandom(16)).decode()
        auth = f"Authorization: Bearer {self.config['token']}\r\n" if self.config["token"] else ""
        transport.write((f"GET {self.config['path']} HTTP/1.1\r\nHost: {self.config['host']}\r\n"
                         f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\n{auth}\r\n").encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))

    def start(self) -> None:
        if self.interval:
            self.next_send = time.perf_counter() + self.interval * (self.offset % 100) / 100
            self.loop.call_at(self.loop.time() + self.next_send - time.perf_counter(), self.send)
        else:
            self.send()

    def send(self) -> None:
        assert self.transport is not None
        before, after = self.templates[self.turn % len(self.templates)]
        self.turn += 1
        self.next_id += 1
        self.sent_at = time.perf_counter()
        self.transport.write(frame(before + str(self.next_id).encode() + after))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in buffer[:end]:
                raise SystemExit(f"handshake refused: {bytes(buffer[:end])!r}")
            del buffer[:end + 4]
            self.upgraded = True
            self.opened.set_result(None)
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            size = buffer[1] & 0x7F
            start = 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + size:
                return
            payload = bytes(buffer[start:start + size])
            del buffer[:start + size]
            if opcode == 1:
                self.on_text(payload)
            elif opcode == 8 or self.transport is None:
                return
            elif opcode == 9:
                self.transport.write(frame(payload, 0xA))

    def on_text(self, payload: bytes) -> None:
        at = payload.find(b'"id":', 0, 40)   # replies start {"type":"success","id":
        if at < 0:
            return   # an event
        end = payload.find(b",", at)
        if int(payload[at + 5:end]) != self.next_id:
            return
        window = self.window
        if window.counting:
            now = time.perf_counter()
            window.replies += 1
            window.latencies.append((now - self.sent_at) * 1000)
            if payload.startswith(b'{"type":"error"'):
                window.errors += 1
        if not self.interval:
            self.send()
            return
        self.next_send += self.interval
        delay = self.next_send - time.perf_counter()
        if delay <= 0:
            self.send()
        else:
            self.loop.call_later(delay, self.send)


async def run(config: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    window = Window()
    clients: list[Client] = []
    for n in range(config["clients"]):
        transport, client = await loop.create_connection(
            lambda n=n: Client(config, window, n), config["host"], config["port"])
        clients.append(client)
    await asyncio.gather(*(c.opened for c in clients))
    for client in clients:
        client.start()
    await asyncio.sleep(config["warmup"])
    server_before = cpu_seconds(config["server_pid"])
    own_before = time.process_time()
    started = time.perf_counter()
    window.counting = True
    await asyncio.sleep(config["seconds"])
    window.counting = False
    elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds(config["server_pid"]) - server_before
    own_cpu = time.process_time() - own_before
    for client in clients:   # a clean close: 1000
        assert client.transport is not None
        client.transport.write(frame(b"\x03\xe8", 0x8))
    await asyncio.sleep(0.2)
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    window.latencies.sort()
    requests = max(1, window.replies)
    return {"requests": window.replies, "errors": window.errors, "elapsed": elapsed,
            "msgs_per_s": window.replies / elapsed,
            "server_cpu_s": server_cpu, "server_cpu_us_per_request": server_cpu / requests * 1e6,
            "server_core_busy": server_cpu / elapsed,
            "client_cpu_us_per_request": own_cpu / requests * 1e6,
            "p50_ms": percentile(window.latencies, 0.50), "p95_ms": percentile(window.latencies, 0.95),
            "p99_ms": percentile(window.latencies, 0.99)}


def main() -> None:
    config = orjson.loads(sys.argv[1])
    import uvloop
    result = uvloop.run(run(config))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
