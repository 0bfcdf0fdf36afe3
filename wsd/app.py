"""Running the daemon: the parts built and wired, started in order and stopped in reverse
(`lifespan`: one small context per part), signals, reloads and the exit status."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import resource
import signal
import sys
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import asyncpg
import structlog

from wsd.auth import hash_token, new_token
from wsd.cache import SingleFlightCache
from wsd.calendar_sync import CalendarSync
from wsd.change_router import ChangeRouter
from wsd.clock import at_local_midnights
from wsd.config import Config, TokenEntry, load_config
from wsd.database import Database, load_queries
from wsd.demo_activity import run_demo_activity
from wsd.dispatcher import Dispatcher
from wsd.handlers import ALL_TABLES
from wsd.handlers.exports import EXPORTS
from wsd.leader import lead
from wsd.listener import ChangeListener
from wsd.live import LiveQueries
from wsd.logs import flush_logs_periodically
from wsd.metrics_export import OutboxProbe, StateCollector
from wsd.outlook import GraphClient
from wsd.parent import ParentLink
from wsd.queries import Queries
from wsd.readiness import Readiness
from wsd.reload import Reloader
from wsd.runtime import INSTANCE
from wsd.sdnotify import Notifier, install_test_loop_block
from wsd.server import WsdServer
from wsd.startup import prepared_database
from wsd.supervisor import Fatal, supervise
from wsd.topics import EVENT_CHANNELS
from wsd.transports import listening_for

__all__ = ["run_daemon", "lifespan", "ensure_demo_token", "demo_token_path"]

log = structlog.get_logger("wsd.app")

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


async def _purge_hourly(purge: Callable[..., Awaitable[object]], pool: asyncpg.Pool,
                        kept: dt.timedelta) -> None:
    """Every hour, `purge` what is older than `kept` (idempotency keys; the trail when
    `[trail] keep_days` > 0)."""
    while True:
        await purge(pool, older_than=dt.datetime.now(dt.UTC) - kept)
        await asyncio.sleep(3600)


@asynccontextmanager
async def lifespan(config: Config, with_demo: bool = False, demo_activity: bool = False,
                   reuse_port: bool = False, notifier: Notifier | None = None) -> AsyncIterator[WsdServer]:
    """The daemon from start to stop, on one screen: one context per part, entered in order
    and left in the reverse order, also when start-up fails half-way. Background tasks run
    supervised in one TaskGroup; a `Fatal` one cancels the body (the daemon then exits 1).

    `notifier` tells systemd how far start-up got (STATUS=), READY=1 once the pool, the
    migrations and the change listener are up and clients are accepted, then STOPPING=1 and
    the draining status; it also pings the watchdog from a supervised task."""
    notifier = notifier or Notifier()
    async with AsyncExitStack() as stack:
        notifier.status("starting: database")
        database = await stack.enter_async_context(prepared_database(config, seed_demo=with_demo))
        assert database.pool is not None
        pool, queries = database.pool, load_queries()
        calendar = await stack.enter_async_context(_calendar(config, pool, queries))
        listener = ChangeListener(partial(database.connect, "wsd-listener"), EVENT_CHANNELS)
        readiness = Readiness(pool, listener)
        server = WsdServer(config, pool, queries,
                           Dispatcher(ALL_TABLES, SingleFlightCache(config.cache.ttl_seconds)),
                           calendar, readiness, EXPORTS, transport=listening_for)
        router = ChangeRouter(server.dispatcher.cache, server.live, server.publish)
        server.metrics.watch(StateCollector(server.figures, listener, calendar,
                                            _outbox_probe(config, pool, queries, calendar)))
        await stack.enter_async_context(_supervised(
            _background_tasks(config, database, server, listener, router, readiness, calendar,
                              notifier, demo_activity), server.live))
        notifier.status("starting: change listener")
        async with asyncio.timeout(30):
            await listener.up.wait()
        await readiness.check_database()
        await stack.enter_async_context(_serving(config, server, reuse_port, notifier))
        yield server


@asynccontextmanager
async def _calendar(config: Config, pool: asyncpg.Pool,
                    queries: Queries) -> AsyncIterator[CalendarSync | None]:
    """The Outlook sync when `outlook.enabled`, its Graph client closed at the end."""
    if not config.outlook.enabled:
        yield None
        return
    calendar = CalendarSync(config, pool, queries,
                            GraphClient(config.outlook, user_agent=f"wsd/{INSTANCE}"))
    try:
        yield calendar
    finally:
        await calendar.graph.close()


def _outbox_probe(config: Config, pool: asyncpg.Pool, queries: Queries,
                  calendar: CalendarSync | None) -> OutboxProbe | None:
    if calendar is None:
        return None
    return OutboxProbe(pool, queries.outlook, config.outlook.mailbox,
                       config.metrics.outbox_cache_seconds)


Job = Callable[[], Awaitable[None]]


def _background_tasks(config: Config, database: Database, server: WsdServer,
                      listener: ChangeListener, router: ChangeRouter, readiness: Readiness,
                      calendar: CalendarSync | None, notifier: Notifier,
                      demo_activity: bool) -> dict[str, Job]:
    """Every background task of a running daemon, by the name its supervisor logs."""
    jobs: dict[str, Job] = {
        "log flush": flush_logs_periodically,
        "change listener": partial(listener.run, router),
        "readiness probe": readiness.probe,
        "slow client sweep": server.sweep_slow_clients,
        "live periodic re-run": server.live.rerun_periodically,
        # "today" and every period preset move at local midnight.
        "local midnight re-run": partial(at_local_midnights, config.business.zone, router.resync),
        "idempotency key purge": partial(_purge_hourly, server.queries.idempotency.purge_keys,
                                         server.pool, IDEMPOTENCY_KEYS_KEPT)}
    if config.trail.keep_days > 0:
        jobs["trail purge"] = partial(_purge_hourly, server.queries.trail.purge_entries,
                                      server.pool, dt.timedelta(days=config.trail.keep_days))
    if notifier.watchdog_seconds is not None:
        jobs["systemd watchdog"] = notifier.watchdog
    if calendar is not None:
        jobs["outlook worker"] = partial(lead, partial(database.connect, "wsd-outlook-leader"),
                                         "outlook", config.outlook.mailbox, calendar.run_worker)
    if demo_activity:
        jobs["demo activity"] = partial(run_demo_activity,
                                        partial(database.connect, "wsd-demo-activity"), config)
    if database.embedded is not None:
        jobs["embedded postgres watch"] = partial(database.embedded.watch,
                                                  config.database.embedded_restarts)
    return jobs


@asynccontextmanager
async def _supervised(jobs: dict[str, Job], live: LiveQueries) -> AsyncIterator[None]:
    """The jobs running supervised in one TaskGroup; at the end they are cancelled and the
    live queries' re-runs closed before the group is waited for."""
    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(supervise(name, run), name=name) for name, run in jobs.items()]
        try:
            yield
        finally:
            for task in running:
                task.cancel()
            await live.close()


@asynccontextmanager
async def _serving(config: Config, server: WsdServer, reuse_port: bool,
                   notifier: Notifier) -> AsyncIterator[None]:
    """Clients accepted (READY=1) until the body ends; then drained (`WsdServer.shutdown`)."""
    await server.start(reuse_port)
    try:
        log.info("listening", url=_url(config, server), page=_page_url(config, server),
                 port=server.port, transport=config.server.transport)
        notifier.send("READY=1", f"STATUS=serving on port {server.port}")
        try:
            yield
        finally:
            log.info("shutting down")
            notifier.send("STOPPING=1", f"STATUS=draining: {len(server.sessions)} connections")
    finally:
        await server.shutdown()
        notifier.status("stopping: background tasks and database")


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
