"""Shared fixtures: one PostgreSQL and one wsd daemon per session, clean tables per test.

The database is the embedded PostgreSQL (or the server named by WSD_TEST_DSN); the daemon
is the real `python -m wsd serve` on a free loopback port, spoken to over real WebSockets.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import asyncpg
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from wsd.auth import hash_token
from wsd.database import EmbeddedPostgres, apply_migrations

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token"
VIEWER_TOKEN = "test-viewer-token"
DATA_TABLES = ("trail_entries", "outlook_busy", "outlook_sync_state", "meetings", "integrations", "features", "requirements", "bant_data",
               "lead_step_history", "lead_qualifications", "agent_status_changes", "messages",
               "conversations", "users")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(path: Path, dsn: str, port: int, cache_ttl: float = 0.0, timezone: str = "Europe/Madrid",
                 outlook: dict[str, Any] | None = None, business: dict[str, Any] | None = None,
                 database: dict[str, Any] | None = None, auth: dict[str, Any] | None = None,
                 sections: dict[str, dict[str, Any]] | None = None, **server: Any) -> Path:
    """A config file for a test daemon: two tokens, short timeouts, a small frame limit.

    Caching is off (TTL 0) unless asked for: tests write straight to the database, which
    a cached answer would not see; the cache has tests of its own.
    """
    # WSD_SERVER_TRANSPORT runs the whole suite on another transport (start_daemon strips
    # WSD_* from the daemon's environment, so it goes into the file).
    settings = {"max_message_bytes": 65536, "max_inflight_per_connection": 4,
                "login_timeout_seconds": 1.0, "shutdown_grace_seconds": 5.0,
                "transport": os.environ.get("WSD_SERVER_TRANSPORT", "websockets"), **server}
    lines = ["[server]", 'host = "127.0.0.1"', f"port = {port}",
             'allowed_origins = ["http://dashboard.test"]']
    lines += [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    database_settings = {"dsn": dsn, "pool_min_size": 1, "pool_max_size": 5, **(database or {})}
    lines += ["[database]", *(f"{key} = {toml_value(value)}" for key, value in database_settings.items()),
              "[auth]", "tokens = [",
              f'  {{ name = "test-admin", role = "admin", sha256 = "{hash_token(ADMIN_TOKEN)}" }},',
              f'  {{ name = "test-viewer", role = "viewer", sha256 = "{hash_token(VIEWER_TOKEN)}" }},',
              "]", *(f"{key} = {toml_value(value)}" for key, value in (auth or {}).items()),
              "[cache]", f"ttl_seconds = {cache_ttl}", "[business]", f'timezone = "{timezone}"',
              *(f"{key} = {toml_value(value)}" for key, value in (business or {}).items()),
              "[outlook]", *(f"{key} = {toml_value(value)}" for key, value in (outlook or {}).items()),
              "[log]", 'level = "info"']
    for section, values in (sections or {}).items():
        lines += [f"[{section}]", *(f"{key} = {toml_value(value)}" for key, value in values.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    port: int
    config_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def rss_kib(self) -> int:
        """The daemon's resident memory now, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")


def start_daemon(tmp: Path, dsn: str, *, env: dict[str, str] | None = None, port: int | None = None,
                 **settings: Any) -> Daemon:
    """A daemon on a free port, or on `port` (a restart where a browser expects it); `env`:
    variables added to its environment after WSD_* ones are stripped."""
    port = port or free_port()
    config_path = write_config(tmp / f"wsd-{port}.toml", dsn, port, **settings)
    log_path = tmp / f"wsd-{port}.log"
    inherited = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {**{k: v for k, v in inherited.items() if not k.startswith("WSD_")}, **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "wsd", "serve", "--config", str(config_path)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    daemon = Daemon(process, port, config_path, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"wsd exited with {process.returncode}:\n{daemon.log()}")
        try:
            if daemon.http("/healthz")[0] == 200:
                return daemon
        except OSError:
            pass
        time.sleep(0.1)
    daemon.stop()
    raise RuntimeError(f"wsd did not start:\n{daemon.log()}")


@asynccontextmanager
async def conversation_locked(dsn: str, conversation_id: Any) -> AsyncIterator[asyncpg.Connection]:
    """Hold a row lock on a conversation so a request touching it stays in flight.

    Closing the yielded connection releases the lock (the transaction dies with it).
    """
    locker = await asyncpg.connect(dsn)
    await locker.execute("BEGIN")
    await locker.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", conversation_id)
    try:
        yield locker
    finally:
        if not locker.is_closed():
            await locker.close()


@pytest.fixture(scope="session")
async def postgres(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """DSN of a fresh, migrated test database."""
    if os.environ.get("WSD_TEST_DSN"):
        dsn = os.environ["WSD_TEST_DSN"]
        embedded = None
    else:
        embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
        dsn = await embedded.start()
    connection = await asyncpg.connect(dsn)
    await connection.execute("DROP DATABASE IF EXISTS wsd_test")
    await connection.execute("CREATE DATABASE wsd_test")
    await connection.close()
    test_dsn = dsn.replace("/postgres?", "/wsd_test?") if "/postgres?" in dsn else f"{dsn.rsplit('/', 1)[0]}/wsd_test"
    connection = await asyncpg.connect(test_dsn)
    await apply_migrations(connection)
    await connection.close()
    yield test_dsn
    if embedded is not None:
        await embedded.stop()


@pytest.fixture(scope="session")
def daemon(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = start_daemon(tmp_path_factory.mktemp("daemon"), postgres)
    yield running
    running.stop()


@pytest.fixture
async def db(postgres: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database, with every data table emptied first."""
    connection = await asyncpg.connect(postgres)
    await connection.execute(f"TRUNCATE {', '.join(DATA_TABLES)} CASCADE")
    yield connection
    await connection.close()


class Client:
    """A WebSocket client that speaks wsd's envelope; `request` waits for the matching reply."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self._early: dict[Any, dict[str, Any]] = {}  # replies read while waiting for another

    async def send(self, resource: str, action: str, payload: Any = None, request_id: Any = None) -> Any:
        if request_id is None:
            self._next_id += 1
            request_id = f"r{self._next_id}"
        message: dict[str, Any] = {"resource": resource, "action": action, "id": request_id}
        if payload is not None:
            message["payload"] = payload
        await self.connection.send(orjson.dumps(message).decode())
        return request_id

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return orjson.loads(await self.connection.recv())

    async def next_reply(self, timeout: float = 10) -> dict[str, Any]:
        """The next success or error message; events and live updates met on the way are
        kept in `events` and `updates`."""
        while True:
            message = await self.receive(timeout)
            if message.get("type") == "event":
                self.events.append(message)
            elif message.get("type") == "update":
                self.updates.append(message)
            else:
                return message

    async def reply_to(self, request_id: Any, timeout: float = 10) -> dict[str, Any]:
        if request_id in self._early:
            return self._early.pop(request_id)
        while True:
            message = await self.next_reply(timeout)
            if message.get("id") == request_id:
                return message
            self._early[message.get("id")] = message

    async def request(self, resource: str, action: str, payload: Any = None) -> dict[str, Any]:
        return await self.reply_to(await self.send(resource, action, payload))

    async def data(self, resource: str, action: str, payload: Any = None) -> Any:
        """The `data` of a success reply; fails the test on an error reply."""
        reply = await self.request(resource, action, payload)
        assert reply["type"] == "success", reply
        return reply["payload"]["data"]

    async def error(self, resource: str, action: str, payload: Any = None) -> dict[str, Any]:
        """The error payload of a reply that must be an error."""
        reply = await self.request(resource, action, payload)
        assert reply["type"] == "error", reply
        return reply["payload"]


def open_client(url: str, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return connect(url, additional_headers=headers, compression=None, **kwargs)


@pytest.fixture
async def admin(daemon: Daemon, db: asyncpg.Connection) -> AsyncIterator[Client]:
    async with open_client(daemon.url) as connection:
        yield Client(connection)


@pytest.fixture
async def viewer(daemon: Daemon, db: asyncpg.Connection) -> AsyncIterator[Client]:
    async with open_client(daemon.url, VIEWER_TOKEN) as connection:
        yield Client(connection)
