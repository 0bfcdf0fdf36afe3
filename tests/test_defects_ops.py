"""Issue 20's auth and worker defects (items 9, 11, 12, 13), each as the attack or the
accident that showed it, against a real daemon (or `--workers` parent) and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.frames import Frame, Opcode

from tests import factories
from tests.conftest import ADMIN_TOKEN, start_daemon
from tests.test_reliability import alive, eventually, factories_now, log_events


class RawClient:
    """A WebSocket client on a bare socket. It writes whatever it is told, whatever the server
    says: it never answers a close frame, as a client that keeps sending after its token was
    revoked. `handshake` returns the HTTP status."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer)

    async def handshake(self, *headers: str) -> int:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET /ws HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", *headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        return int(head.split(b" ")[1])

    def send(self, resource: str, action: str, payload: dict[str, Any], request_id: str) -> None:
        message = orjson.dumps({"resource": resource, "action": action, "id": request_id,
                                "payload": payload})
        self.writer.write(Frame(Opcode.TEXT, message).serialize(mask=True))

    def close(self) -> None:
        self.writer.close()


# -- 9: a revoked or downgraded token runs nothing it sends after the reload ---------------------

def _revoke(config: str) -> str:
    return "\n".join(line for line in config.splitlines() if 'name = "test-admin"' not in line) + "\n"


def _downgrade(config: str) -> str:
    return "\n".join(line.replace('role = "admin"', 'role = "viewer"') if 'name = "test-admin"' in line
                     else line for line in config.splitlines()) + "\n"


@pytest.mark.parametrize("change", [_revoke, _downgrade], ids=["revoked", "downgraded"])
async def test_writes_sent_after_a_revoking_reload_never_run(postgres, db, tmp_path: Path,
                                                             change: Any) -> None:
    daemon = start_daemon(tmp_path, postgres, max_inflight_per_connection=1000)
    try:
        lead_id = await factories.lead(db, [("start", factories_now(), "agent")])
        requirements_id = str(await factories.requirements(db, lead_id))
        client = await RawClient.open(daemon.port)
        assert await client.handshake(f"Authorization: Bearer {ADMIN_TOKEN}") == 101
        sent = 0
        after_reload: int | None = None   # the first sequence number sent after the reload

        async def stream() -> None:
            nonlocal sent
            while after_reload is None or sent < after_reload + 400:
                sent += 1
                client.send("requirements", "add_feature",
                            {"requirements_id": requirements_id, "name": f"f{sent}"}, f"r{sent}")
                await asyncio.sleep(0.002 if sent % 10 == 0 else 0)

        writing = asyncio.create_task(stream())
        await eventually(lambda: sent >= 200)
        daemon.config_path.write_text(change(daemon.config_path.read_text()))
        daemon.process.send_signal(signal.SIGHUP)
        await eventually(lambda: log_events(daemon, "config reloaded"), every=0.01)
        after_reload = sent + 1
        await writing
        await asyncio.sleep(1.5)   # past the closing handshake's second
        names = {row["name"] for row in await db.fetch(
            "SELECT name FROM features WHERE requirements_id = $1", uuid.UUID(requirements_id))}
        committed_after = sorted(n for n in names if int(n[1:]) >= after_reload)
        assert len(names) >= 100   # the stream did write before the reload
        assert committed_after == [], f"{len(committed_after)} writes ran after the reload"
        [reloaded] = log_events(daemon, "config reloaded")
        assert reloaded["connections_closed"] == 1
        client.close()
    finally:
        assert daemon.stop() == 0
