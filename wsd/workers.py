"""`wsd serve --workers N`: a parent process and N worker processes sharing one port.

Each worker is a whole wsd (`wsd serve --worker`) with its own pool, listener and live
queries; the kernel spreads connections over them (SO_REUSEPORT), and PostgreSQL's
LISTEN/NOTIFY carries changes between them as between instances, so no client needs to stick
to one worker. The parent owns what must exist once: the embedded PostgreSQL, migrations,
demo data and the simulated agent. It restarts a worker that dies, forwards SIGTERM and
SIGHUP, and exits when the workers have drained.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

import structlog

from wsd.config import Config
from wsd.database import Database
from wsd.startup import prepared_database
from wsd.demo_activity import run_demo_activity
from wsd.logs import flush_logs_periodically
from wsd.parent import PARENT_FD
from wsd.sdnotify import Notifier
from wsd.supervisor import supervise

__all__ = ["serve_workers", "worker_count", "ConnectionBudgetExceeded"]

log = structlog.get_logger("wsd.workers")

# Connections one worker opens besides its pool: the change listener, the Outlook leader's
# lock, and a demo agent's; the parent's own (migrations, demo agent) come on top.
EXTRA_CONNECTIONS_PER_WORKER = 2
PARENT_CONNECTIONS = 2
# The wait before replacing a worker that died listening when no other worker listens.
LAST_LISTENER_RESTART_SECONDS = 0.2


class ConnectionBudgetExceeded(Exception):
    """workers × pool would pass PostgreSQL's max_connections: refuse to start."""


def worker_count(configured: int) -> int:
    """`server.workers`: 0 means one per core."""
    return configured if configured > 0 else (os.cpu_count() or 1)


async def check_connection_budget(database: Database, config: Config, workers: int) -> None:
    """Say, before anything listens, when the workers could not all get their connections."""
    connection = await database.connect("wsd-parent")
    try:
        available = int(await connection.fetchval("SHOW max_connections")) - \
            int(await connection.fetchval("SHOW superuser_reserved_connections"))
    finally:
        await connection.close()
    needed = workers * (config.database.pool_max_size + EXTRA_CONNECTIONS_PER_WORKER) + PARENT_CONNECTIONS
    if needed > available:
        raise ConnectionBudgetExceeded(
            f"{workers} workers × (database.pool_max_size {config.database.pool_max_size} + "
            f"{EXTRA_CONNECTIONS_PER_WORKER}) + {PARENT_CONNECTIONS} = {needed} connections, but "
            f"PostgreSQL allows {available} (max_connections less superuser_reserved_connections): "
            "lower server.workers or database.pool_max_size, or raise max_connections")
    log.info("connection budget", workers=workers, needed=needed, available=available)


def _chosen_port(config: Config) -> int:
    """Every worker must bind the same port: port 0 is resolved once, here."""
    if config.server.port:
        return config.server.port
    with socket.socket() as probe:
        probe.bind((config.server.host, 0))
        return int(probe.getsockname()[1])


async def _until_port_answers(host: str, port: int) -> None:
    """A worker is listening: the service is ready for systemd."""
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return


class Workers:
    """The worker processes: started, restarted when they die, signalled, drained.

    Each worker is linked to this process by a socket pair (`wsd.parent`): the worker drains
    when its end reads end-of-file (this process died, even by kill -9), and says on it when
    it listens, so the supervisor knows when a death leaves the port with no listener.
    """

    def __init__(self, command: list[str], environment: dict[str, str], count: int) -> None:
        self._command = command
        self._environment = environment
        self._count = count
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._listening: set[int] = set()   # slots whose worker said it accepts connections
        self._lost_listener: set[int] = set()   # slots whose last worker died listening
        self.stopping = False

    async def run_slot(self, slot: int) -> None:
        """Run worker `slot` once; its death is an error for the supervisor to log and restart."""
        started = time.monotonic()
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command, pass_fds=(theirs.fileno(),),
                env={**self._environment, "WSD_WORKER_SLOT": str(slot),
                     PARENT_FD: str(theirs.fileno())})
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()   # the worker's copy only: its end-of-file must mean our death
        self._processes[slot] = process
        log.info("worker started", slot=slot, pid=process.pid)
        loop = asyncio.get_running_loop()
        ours.setblocking(False)
        loop.add_reader(ours.fileno(), self._hear, slot, ours)
        try:
            status = await process.wait()
        finally:
            loop.remove_reader(ours.fileno())
            ours.close()
        self._lost_listener.discard(slot)
        if slot in self._listening:
            self._listening.discard(slot)
            self._lost_listener.add(slot)
        if self.stopping:
            log.info("worker stopped", slot=slot, pid=process.pid, status=status)
            await asyncio.Event().wait()  # drained: nothing to restart; the parent cancels this
        raise RuntimeError(f"worker {slot} (pid {process.pid}) exited with status {status} "
                           f"after {time.monotonic() - started:.1f} s")

    def _hear(self, slot: int, ours: socket.socket) -> None:
        """Worker `slot` said it listens (`wsd.parent.LISTENING`), or its end closed."""
        try:
            said = ours.recv(64)
        except BlockingIOError:
            return
        except OSError:
            said = b""
        if said:
            self._listening.add(slot)
        else:   # it died: process.wait() is about to return
            asyncio.get_running_loop().remove_reader(ours.fileno())

    def restart_delay(self, slot: int, backoff: float) -> float:
        """The wait before worker `slot` is started again: its backoff, except when it died
        listening and no other worker listens — the port would refuse every connection for
        the whole backoff, so it gets `LAST_LISTENER_RESTART_SECONDS`. A worker that crashes
        before it listens keeps its backoff: a crash loop at start serves nobody faster."""
        if slot in self._lost_listener and not self._listening:
            return min(backoff, LAST_LISTENER_RESTART_SECONDS)
        return backoff

    def signal(self, signum: int) -> None:
        for process in self._processes.values():
            if process.returncode is None:
                process.send_signal(signum)

    async def drain(self, deadline_seconds: float) -> None:
        """SIGTERM every worker; those still running after the deadline are killed."""
        self.stopping = True
        self.signal(signal.SIGTERM)
        waits = [p.wait() for p in self._processes.values() if p.returncode is None]
        if not waits:
            return
        _, late = await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=deadline_seconds)
        if late:
            log.warning("workers did not stop in time; killing them", count=len(late))
            self.signal(signal.SIGKILL)


async def serve_workers(config: Config, config_path: str | None, count: int, with_demo: bool,
                        demo_activity: bool) -> int:
    """Run `count` workers on one port until SIGTERM or SIGINT; returns the exit status."""
    notifier = Notifier.from_environment()  # the parent speaks to systemd; workers inherit nothing
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(
            prepared_database(config, pooled=False, seed_demo=with_demo, name="wsd-parent"))
        try:
            await check_connection_budget(database, config, count)
        except ConnectionBudgetExceeded as error:
            log.error("not starting", reason=str(error))
            print(f"wsd: {error}", file=sys.stderr)
            return 2
        port = _chosen_port(config)
        command = [sys.executable, "-m", "wsd", "serve", "--worker",
                   *(["--config", config_path] if config_path else []), *(["--demo"] if with_demo else [])]
        environment = {**os.environ, "WSD_DATABASE_DSN": database.dsn, "WSD_SERVER_PORT": str(port)}
        workers = Workers(command, environment, count)
        loop.add_signal_handler(signal.SIGHUP, workers.signal, signal.SIGHUP)
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        running = [tasks.create_task(supervise(f"worker {slot}", functools.partial(workers.run_slot, slot),
                                               first_backoff=0.2, max_backoff=5.0,
                                               delay=functools.partial(workers.restart_delay, slot)))
                   for slot in range(count)]
        running.append(tasks.create_task(supervise("log flush", flush_logs_periodically)))
        if notifier.watchdog_seconds is not None:
            running.append(tasks.create_task(supervise("systemd watchdog", notifier.watchdog)))
        if demo_activity:
            running.append(tasks.create_task(supervise("demo activity", lambda: run_demo_activity(
                lambda: database.connect("wsd-demo-activity"), config))))
        log.info("workers serving", url=f"ws://{config.server.host}:{port}{config.server.path}",
                 port=port, workers=count, config=str(Path(config_path)) if config_path else None)
        await _until_port_answers(config.server.host, port)
        notifier.send("READY=1", f"STATUS=serving on port {port} with {count} workers")
        await stop.wait()
        log.info("draining workers")
        notifier.send("STOPPING=1", "STATUS=draining workers")
        await workers.drain(config.server.shutdown_grace_seconds + 5)
        for task in running:
            task.cancel()
    log.info("stopped", status=0)
    return 0
