"""Keeping meetings and the Outlook calendar in step: the part the daemon holds.

Pushing a meeting to Graph is wsd/calendar_push.py's job, reading Outlook's changes back
wsd/calendar_delta.py's; this part runs the worker that retries pending meetings with
backoff, from start-up on (so a crash between the database write and the Graph call is
recovered when wsd comes back), and `sync()`, one delta round over the configured window
and a retry of failed meetings, one round per mailbox at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from wsd.calendar_delta import CalendarDelta
from wsd.calendar_push import CalendarPush
from wsd.config import Config
from wsd.outlook import GraphClient
from wsd.queries import one_row

if TYPE_CHECKING:
    from wsd.queries import Queries

__all__ = ["CalendarSync"]

log = structlog.get_logger("wsd.calendar_sync")


class CalendarSync:
    """The meetings' Outlook calendar: pushes, the retrying worker, delta rounds, state."""

    def __init__(self, config: Config, pool: asyncpg.Pool, queries: Queries, graph: GraphClient) -> None:
        self.config = config
        self.pool = pool
        self.queries = queries.outlook
        self.graph = graph
        self.mailbox = config.outlook.mailbox
        self._push = CalendarPush(config.outlook, pool, queries.outlook, graph)
        self._delta = CalendarDelta(config, pool, queries.outlook, graph, self.mailbox)
        self._sync_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.pushes: Counter[str] = self._push.pushes   # by sync_status afterwards (/metrics)

    async def push_awaiting_holder(self, meeting_id: uuid.UUID, budget_seconds: float) -> str | None:
        """A request's push (CalendarPush.push_awaiting_holder)."""
        return await self._push.push_awaiting_holder(meeting_id, budget_seconds)

    def wake(self) -> None:
        """Tell the worker a meeting was left pending, so it need not wait a whole interval."""
        self._wake.set()

    async def run_worker(self) -> None:
        """Retry pending meetings until cancelled; the first round runs at once (recovery)."""
        while True:
            try:
                await self._push.push_due()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("outlook worker round failed", error=type(error).__name__)
            self._wake.clear()
            try:
                async with asyncio.timeout(self.config.outlook.retry_seconds):
                    await self._wake.wait()
            except asyncio.TimeoutError:
                pass

    # -- reading Outlook -----------------------------------------------------------------------

    async def busy_times(self, since: dt.datetime, until: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
        """Busy, tentative and out-of-office blocks from getSchedule (GraphError when down)."""
        return [(start, end) for start, end, _ in await self.graph.busy_times(since, until)]

    async def sync(self) -> dict[str, Any]:
        """One delta round and a push of every unsynced meeting; returns what changed.

        Rounds of one mailbox run one at a time across every worker and instance: a session
        advisory lock is held on a pooled connection for the round (released by PostgreSQL
        should this process die), so two rounds never apply the same delta twice.
        """
        async with self.pool.acquire() as lock_connection:
            await self.queries.lock_sync(lock_connection, mailbox=self.mailbox)
            try:
                return await self._sync_round()
            finally:
                await self.queries.unlock_sync(lock_connection, mailbox=self.mailbox)

    async def _sync_round(self) -> dict[str, Any]:
        async with self._sync_lock:
            counts, full_resync = await self._delta.round()
            await self.queries.reset_failed(self.pool)
            pushed = await self._push.push_due(include_failed=True)
            return {**counts, "pushed": pushed.get("synced", 0), "full_resync": full_resync}

    async def state(self) -> dict[str, Any]:
        """For the real-time dashboard: when sync last worked and what waits for a push."""
        row = dict(one_row(await self.queries.sync_state(self.pool, mailbox=self.mailbox)))
        row.pop("delta_link")
        return row
