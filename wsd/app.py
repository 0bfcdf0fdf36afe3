"""Running the daemon: one lifespan that starts the parts in order and stops them in reverse."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import resource
import signal
import sys
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import asyncpg
import orjson
import structlog

from wsd import demo
from wsd.auth import hash_token, new_token
from wsd.cache import SingleFlightCache
from wsd.calendar_sync import CalendarSync
from wsd.clock import at_local_midnights
from wsd.config import Config, TokenEntry, load_config
from wsd.database import Database, apply_migrations, load_queries
from wsd.demo_activity import run_demo_activity
from wsd.dispatcher import Dispatcher
from wsd.handlers import ALL_TABLES
from wsd.handlers.exports import EXPORTS
from wsd.leader import lead
from wsd.listener import ChangeListener
from wsd.live import HINT_TOPIC, ChangeHints
from wsd.logs import flush_logs_periodically
from wsd.metrics_export import OutboxProbe, StateCollector
from wsd.outlook import GraphClient
from wsd.parent import ParentLink
from wsd.reload import Reloader
from wsd.runtime import INSTANCE
from wsd.sdnotify import Notifier, install_test_loop_block
from wsd.server import WsdServer
from wsd.supervisor import Fatal, supervise
from wsd.topics import CHANGES_CHANNEL

__all__ = ["run_daemon", "lifespan", "ensure_demo_token", "demo_token_path"]

log = structlog.get_logger("wsd.app")

# Notification channels whose payloads are pushed to clients as events of this topic.
# `changes` ({"topic": ...}) also drops cached answers and re-runs live queries of the topic.
EVENT_CHANNELS = {"wsd_agent_status": "agent_status", CHANGES_CHANNEL: "changes"}
# /readyz is at most this old; the probe gives the database this long to answer.
PROBE_SECONDS = 1.0
IDEMPOTENCY_KEYS_KEPT = dt.timedelta(days=1)
EXIT_PORT_IN_USE = 2   # like a config error: nothing to retry until something changes


def demo_token_path(config: Config) -> Path:
    return Path(config.base_dir) / "var" / "demo-token"


def ensure_demo_token(config: Config) -> str:
    """Make (or reuse) the demo admin token kept in `var/demo-token` and accept it beside
    any configured token (only `--demo` calls this).

    Adding a token to config.toml, as the page's sign-in hint suggests, must not lock out
    the page and wsd-cli that `make run` set up with this one; the demo daemon is never open
    to anonymous clients, so this rather than an "auth off" switch.
    """
    token_file = demo_token_path(config)
    if token_file.exists():
        token = token_file.read_text().strip()
    else:
        token, _ = new_token("demo-admin", "admin")
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n")
    entry = TokenEntry(name="demo-admin", role="admin", sha256=hash_token(token))
    if entry not in config.auth.tokens:
        config.auth.tokens = [*config.auth.tokens, entry]
    return token


def _raise_open_file_limit() -> None:
    """Every client is a socket: take the hard limit so thousands of dashboards can connect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Readiness:
    """What /readyz answers: the change listener's state, and the database's as a background
    probe last found it (at most PROBE_SECONDS old), so a flood of readiness checks never
    reaches the database. Ready = the pool answers and the listener is connected."""

    def __init__(self, pool: asyncpg.Pool, listener: ChangeListener) -> None:
        self._pool = pool
        self._listener = listener
        self._database: tuple[bool, str] = (False, "starting")

    def __call__(self) -> tuple[bool, str]:
        if not self._database[0]:
            return self._database
        return (True, "ready") if self._listener.connected else (False, "database unavailable: change listener reconnecting")

    async def check_database(self) -> None:
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                await self._pool.fetchval("SELECT 1")
        except Exception as error:  # any failure means not ready; say which
            self._database = (False, f"database unavailable: {type(error).__name__}")
        else:
            self._database = (True, "ready")

    async def probe(self) -> None:
        while True:
            await self.check_database()
            await asyncio.sleep(PROBE_SECONDS)


async def _purge_idempotency_keys(pool: asyncpg.Pool, queries: Any) -> None:
    while True:
        older_than = dt.datetime.now(dt.UTC) - IDEMPOTENCY_KEYS_KEPT
        await queries.idempotency.purge_keys(pool, older_than=older_than)
        await asyncio.sleep(3600)


async def _purge_trail(pool: asyncpg.Pool, queries: Any, keep_days: int) -> None:
    """[trail] keep_days > 0: entries older than that are deleted, hourly."""
    while True:
        older_than = dt.datetime.now(dt.UTC) - dt.timedelta(days=keep_days)
        await queries.trail.purge_entries(pool, older_than=older_than)
        await asyncio.sleep(3600)


@asynccontextmanager
async def lifespan(config: Config, with_demo: bool = False, demo_activity: bool = False,
                   reuse_port: bool = False, notifier: Notifier | None = None) -> AsyncIterator[WsdServer]:
    """The daemon from start to stop, on one screen: what starts here in order stops in the
    reverse order, also when start-up fails half-way. Background tasks run supervised in one
    TaskGroup; a `Fatal` one cancels the body (the daemon then exits 1).

    `notifier` tells systemd how far start-up got (STATUS=), READY=1 once the pool, the
    migrations and the change listener are up and clients are accepted, then STOPPING=1 and
    the draining status; it also pings the watchdog from a supervised task."""
    notifier = notifier or Notifier()
    async with AsyncExitStack() as stack:
        database = Database(config)
        stack.push_async_callback(database.stop)
        notifier.status("starting: database")
        await database.start()
        assert database.pool is not None
        pool = database.pool
        notifier.status("starting: migrations")
        async with pool.acquire() as connection:
            applied = await apply_migrations(connection)
            if applied:
                log.info("migrations applied", names=applied)
            if with_demo:
                await demo.seed_if_empty(connection, leads=demo.DEFAULT_LEADS, seed=1)
        cache = SingleFlightCache(config.cache.ttl_seconds)
        queries = load_queries()
        calendar = None
        if config.outlook.enabled:
            calendar = CalendarSync(config, pool, queries, GraphClient(config.outlook, user_agent=f"wsd/{INSTANCE}"))
            stack.push_async_callback(calendar.graph.close)
        server = WsdServer(config, pool, queries, Dispatcher(ALL_TABLES, cache), calendar, exports=EXPORTS)

        hints = ChangeHints(server.publish)

        def relay(channel: str, payload: str) -> None:
            message = orjson.loads(payload)
            if channel != CHANGES_CHANNEL:
                server.publish(EVENT_CHANNELS[channel], message)
                return
            topics = {message["topic"]}
            cache.invalidate(topics)
            server.live.changed(topics)
            hints.changed(message["topic"])

        def resync() -> None:
            cache.invalidate()
            server.live.rerun_all()
            server.publish(HINT_TOPIC, {"topic": "*"})

        listener = ChangeListener(lambda: database.connect("wsd-listener"), EVENT_CHANNELS,
                                  relay, resync)
        readiness = Readiness(pool, listener)
        server.readiness = readiness
        outbox = OutboxProbe(pool, queries.outlook, config.outlook.mailbox,
                             config.metrics.outbox_cache_seconds) if calendar is not None else None
        server.metrics.watch(StateCollector(server, listener, calendar, outbox))

        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.push_async_callback(server.live.close)
        supervised = {"log flush": flush_logs_periodically,
                      "change listener": listener.run, "readiness probe": readiness.probe,
                      "slow client sweep": server.sweep_slow_clients,
                      "live periodic re-run": server.live.rerun_periodically,
                      # "today" and every period preset move at local midnight.
                      "local midnight re-run": lambda: at_local_midnights(config.business.zone, resync),
                      "idempotency key purge": lambda: _purge_idempotency_keys(pool, queries)}
        if config.trail.keep_days > 0:
            supervised["trail purge"] = lambda: _purge_trail(pool, queries, config.trail.keep_days)
        if notifier.watchdog_seconds is not None:
            supervised["systemd watchdog"] = notifier.watchdog
        if calendar is not None:
            outlook = calendar
            supervised["outlook worker"] = lambda: lead(
                lambda: database.connect("wsd-outlook-leader"), "outlook", config.outlook.mailbox,
                outlook.run_worker)
        if demo_activity:
            supervised["demo activity"] = lambda: run_demo_activity(
                lambda: database.connect("wsd-demo-activity"), config)
        if database.embedded is not None:
            embedded = database.embedded
            supervised["embedded postgres watch"] = \
                lambda: embedded.watch(config.database.embedded_restarts)
        running = [tasks.create_task(supervise(name, run), name=name) for name, run in supervised.items()]
        stack.callback(lambda: [task.cancel() for task in running])
        notifier.status("starting: change listener")
        async with asyncio.timeout(30):
            await listener.up.wait()
        await readiness.check_database()

        await server.start(reuse_port)
        stack.callback(notifier.status, "stopping: background tasks and database")
        stack.push_async_callback(server.shutdown)
        log.info("listening", url=_url(config, server), page=_page_url(config, server), port=server.port,
                 transport=config.server.transport)
        notifier.send("READY=1", f"STATUS=serving on port {server.port}")
        try:
            yield server
        finally:
            log.info("shutting down")
            notifier.send("STOPPING=1", f"STATUS=draining: {len(server.sessions)} connections")


def _url(config: Config, server: WsdServer) -> str:
    return f"ws://{config.server.host}:{server.port}{config.server.path}"


def _page_url(config: Config, server: WsdServer) -> str:
    """The dashboard's address (a browser cannot open 0.0.0.0: it gets loopback instead)."""
    host = "127.0.0.1" if config.server.host in ("0.0.0.0", "::", "") else config.server.host
    return f"http://{f'[{host}]' if ':' in host else host}:{server.port}/"


async def run_daemon(config: Config, with_demo: bool = False, demo_activity: bool = False,
                     worker: bool = False, config_path: Path | str | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then drain and stop everything this process started.
    SIGHUP reloads tokens and allowed origins from `config_path` (`wsd.reload`).

    Args:
        with_demo: seed demo data into an empty database and make an admin token if none.
        demo_activity: run the simulated AI agent (`wsd.demo_activity`) inside the daemon.
        worker: one of `wsd serve --workers N`'s processes: share the port; the parent has
            seeded the demo data (its token is still read from var/demo-token).
        config_path: the file `config` came from (None: the checkout's config.toml).

    Returns the exit status: 0 after a signal, 1 when a background task failed fatally.
    """
    _raise_open_file_limit()
    notifier = Notifier.from_environment()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reloader: list[Reloader] = []   # empty until the server is up
    loop.add_signal_handler(signal.SIGHUP, lambda: reloader[0].reload() if reloader else
                            log.warning("SIGHUP ignored: still starting"))
    install_test_loop_block(loop)
    parent = ParentLink.from_environment() if worker else None
    if parent is not None:
        parent.watch(stop.set)   # the parent died (even by kill -9): drain as on SIGTERM
    token = ensure_demo_token(config) if with_demo else None

    def reload_config() -> Config:
        fresh = load_config(config_path)
        if with_demo:
            ensure_demo_token(fresh)
        return fresh

    status = 0
    try:
        async with lifespan(config, with_demo and not worker, demo_activity, reuse_port=worker,
                            notifier=notifier) as server:
            reloader.append(Reloader(server, reload_config))
            if parent is not None:
                parent.listening()
            if token is not None and not worker:
                await _print_demo_banner(server, _url(config, server), _page_url(config, server), token)
            await stop.wait()
    except* Fatal as failure:
        log.error("stopping: a part of wsd cannot be recovered", error=str(failure.exceptions[0]))
        status = 1
    except* OSError as failure:
        if not all(getattr(error, "errno", None) == errno.EADDRINUSE for error in failure.exceptions):
            raise
        print(f"wsd: port {config.server.port} is already in use on {config.server.host}: stop what "
              f"holds it, or pick another with WSD_SERVER_PORT=<port> (or [server] port)",
              file=sys.stderr, flush=True)
        status = EXIT_PORT_IN_USE
    log.info("stopped", status=status)
    return status


async def _print_demo_banner(server: WsdServer, url: str, page: str, token: str) -> None:
    conversation_id = await server.pool.fetchval(
        "SELECT id FROM conversations ORDER BY created_at, id LIMIT 1")
    lines = [
        "",
        f"  wsd demo is up: open {page} (WebSocket {url})",
        f"  admin token: {token}  (kept in var/demo-token; wsd-cli reads it from there; it keeps"
        " working beside tokens you add to config.toml)",
        f"  try: bin/wsd-cli conversations update_agent_status conversation_id={conversation_id} enabled=false",
        "",
    ]
    print("\n".join(lines), flush=True)
