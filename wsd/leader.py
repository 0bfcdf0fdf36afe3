"""Leadership across workers and instances: a session-level advisory lock on a dedicated
connection.

The Outlook worker must run once per mailbox however many wsd processes share the database.
Each process tries the lock every few seconds; the one holding it runs the work. When the
leader's process dies or its connection drops, PostgreSQL releases the lock with the session
and a standby takes over at its next try; a leader that notices its connection is gone stops
the work at once. Pushes stay safe in the moment both may run: each meeting is claimed with
a lease and created with its `transactionId` (see wsd.calendar_sync).

Example:
    >>> tasks.create_task(supervise("outlook worker",
    ...     lambda: lead(connect, "outlook", mailbox, calendar.run_worker)))
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Coroutine

import asyncpg
import structlog

__all__ = ["lead", "LeadershipLost"]

log = structlog.get_logger("wsd.leader")

TRY_SECONDS = 2.0


class LeadershipLost(ConnectionError):
    """The connection holding the lock is gone: another process may lead now."""


async def lead(connect: Callable[[], Awaitable[asyncpg.Connection]], role: str, scope: str,
               work: Callable[[], Coroutine[Any, Any, None]], *,
               try_seconds: float = TRY_SECONDS) -> None:
    """Wait to hold the lock of (`role`, `scope`), then run `work` while it is held.

    Raises:
        LeadershipLost: the lock's connection dropped (the supervisor restarts the wait).
    """
    connection = await connect()
    try:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        while not await connection.fetchval("SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))",
                                            role, scope):
            await asyncio.sleep(try_seconds)
        log.info("leading", role=role, scope=scope)
        worker = asyncio.create_task(work())
        watch = asyncio.create_task(_watch(connection, lost, try_seconds))
        try:
            done, _ = await asyncio.wait({worker, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (worker, watch):
                task.cancel()
            await asyncio.gather(worker, watch, return_exceptions=True)
        if worker in done:
            worker.result()  # its failure, for the supervisor to log
            return
        raise LeadershipLost(f"lost the {role} lock of {scope}")
    finally:
        connection.terminate()


async def _watch(connection: asyncpg.Connection, lost: asyncio.Event, every: float) -> None:
    """Returns when the lock's connection is gone (closed, or no longer answering)."""
    while not lost.is_set():
        try:
            async with asyncio.timeout(every):
                await lost.wait()
            return
        except asyncio.TimeoutError:
            pass
        try:
            async with asyncio.timeout(every):
                await connection.fetchval("SELECT 1")
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return
