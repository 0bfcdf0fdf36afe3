"""Running the daemon: database up, migrations applied, server started, clean shutdown."""

from __future__ import annotations

import asyncio
import resource
import signal
from pathlib import Path

import asyncpg
import orjson
import structlog

from wsd import demo
from wsd.auth import hash_token, new_token
from wsd.cache import SingleFlightCache
from wsd.calendar_sync import CalendarSync
from wsd.config import Config, TokenEntry
from wsd.database import Database, apply_migrations, load_queries
from wsd.dispatcher import Dispatcher
from wsd.handlers import ALL_TABLES
from wsd.outlook import GraphClient
from wsd.server import WsdServer

__all__ = ["run_daemon", "ensure_demo_token", "demo_token_path"]

log = structlog.get_logger("wsd")

# Notification channels whose payloads are pushed to clients as events of this topic. Each
# means a write happened (here or in another instance), so cached aggregates are dropped.
EVENT_CHANNELS = {"wsd_agent_status": "agent_status", "wsd_changes": "changes"}


def demo_token_path(config: Config) -> Path:
    return Path(config.base_dir) / "var" / "demo-token"


def ensure_demo_token(config: Config) -> str | None:
    """With no tokens configured, make (or reuse) an admin token kept in `var/demo-token`.

    Returns the token when it made one, None when tokens were configured; the demo daemon
    must never be open to anonymous clients, so this rather than an "auth off" switch.
    """
    if config.auth.tokens:
        return None
    token_file = demo_token_path(config)
    if token_file.exists():
        token = token_file.read_text().strip()
    else:
        token, _ = new_token("demo-admin", "admin")
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n")
    config.auth.tokens = [TokenEntry(name="demo-admin", role="admin", sha256=hash_token(token))]
    return token


async def _listen_for_events(database: Database, server: WsdServer,
                             cache: SingleFlightCache) -> asyncpg.Connection:
    """Relay database notifications (from any wsd instance) to this instance's clients."""
    connection = await database.connect()

    def relay(_conn: object, _pid: int, channel: str, payload: str) -> None:
        cache.invalidate()
        server.publish(EVENT_CHANNELS[channel], orjson.loads(payload))

    for channel in EVENT_CHANNELS:
        await connection.add_listener(channel, relay)
    return connection


def _raise_open_file_limit() -> None:
    """Every client is a socket: take the hard limit so thousands of dashboards can connect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_daemon(config: Config, with_demo: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then drain and stop everything this process started."""
    _raise_open_file_limit()
    database = Database(config)
    await database.start()
    try:
        assert database.pool is not None
        async with database.pool.acquire() as connection:
            applied = await apply_migrations(connection)
            if applied:
                log.info("migrations applied", names=applied)
            if with_demo:
                await demo.seed_if_empty(connection, leads=demo.DEFAULT_LEADS, seed=1)
        token = ensure_demo_token(config) if with_demo else None
        cache = SingleFlightCache(config.cache.ttl_seconds)
        queries = load_queries()
        calendar = (CalendarSync(config, database.pool, queries, GraphClient(config.outlook))
                    if config.outlook.enabled else None)
        services = {"calendar": calendar} if calendar is not None else {}
        server = WsdServer(config, database.pool, queries, Dispatcher(ALL_TABLES, cache), services)
        await server.start()
        worker = asyncio.create_task(calendar.run_worker()) if calendar is not None else None
        listener = await _listen_for_events(database, server, cache)
        url = f"ws://{config.server.host}:{server.port}{config.server.path}"
        log.info("listening", url=url, port=server.port)
        if with_demo:
            await _print_demo_banner(database, url, token)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("shutting down")
        await server.shutdown()
        if worker is not None and calendar is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await calendar.graph.close()
        await listener.close()
    finally:
        await database.stop()
    log.info("stopped")


async def _print_demo_banner(database: Database, url: str, token: str | None) -> None:
    assert database.pool is not None
    conversation_id = await database.pool.fetchval(
        "SELECT id FROM conversations ORDER BY created_at, id LIMIT 1")
    lines = [
        "",
        f"  wsd demo is up at {url}",
        f"  admin token: {token}  (kept in var/demo-token; wsd-cli reads it from there)"
        if token else "  tokens come from config.toml",
        f"  try: bin/wsd-cli conversations update_agent_status conversation_id={conversation_id} enabled=false",
        "",
    ]
    print("\n".join(lines), flush=True)
