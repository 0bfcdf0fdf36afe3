"""Pushing meetings to the Outlook calendar: never lose, never duplicate.

A meeting is committed to PostgreSQL first, with `sync_status` pending; pushing it to
Graph comes after. A push claims the meeting (a lease that a crashed process lets lapse),
reconciles Graph with the row (create, update or cancel) and records the outcome with the
row's version, so a change made while a push was in flight is pushed next. Creates carry
the meeting id as `transactionId`, so a repeated create (after a lost reply or a crash)
returns the first event instead of making a second.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from wsd.config import OutlookConfig
from wsd.outlook import GraphClient, GraphError, GraphEvent

if TYPE_CHECKING:
    from wsd.queries import OutlookQueries

__all__ = ["CalendarPush"]

log = structlog.get_logger("wsd.calendar_push")

LEASE_SECONDS = 120
BATCH = 20
# How often a request waiting for another pusher looks whether it has finished.
HOLDER_POLL_SECONDS = 0.05
CANCEL_COMMENT = "La reunión fue cancelada."


class CalendarPush:
    """Each meeting's push to Graph, and the round of every meeting that is due."""

    def __init__(self, settings: OutlookConfig, pool: asyncpg.Pool, queries: OutlookQueries,
                 graph: GraphClient) -> None:
        self.settings = settings
        self.pool = pool
        self.queries = queries
        self.graph = graph
        # Pushes by the meeting's sync_status afterwards (read by /metrics).
        self.pushes: Counter[str] = Counter()

    async def push(self, meeting_id: uuid.UUID, budget_seconds: float | None = None) -> str | None:
        """Bring Outlook up to date with one meeting; returns its sync_status afterwards, or
        None when another pusher holds it (or there was nothing to push).

        Args:
            budget_seconds: how long retries inside this push may wait (a request waiting for
                its reply); past it the meeting stays pending for the worker.
        """
        meeting = await self.queries.claim_meeting(self.pool, meeting_id=meeting_id,
                                                   lease_seconds=LEASE_SECONDS)
        if meeting is None:
            return None
        deadline = time.monotonic() + budget_seconds if budget_seconds is not None else None
        try:
            event = await self._reconcile(dict(meeting), deadline)
        except GraphError as error:
            status = await self.queries.push_failed(
                self.pool, meeting_id=meeting_id, error=f"{error.code or error.status or 'network'}: {error}"[:500],
                permanent=not error.transient, max_attempts=self.settings.max_attempts,
                retry_seconds=self.settings.retry_seconds)
            log.warning("outlook push failed", meeting_id=str(meeting_id), status=status,
                        graph_status=error.status, graph_code=error.code, transient=error.transient)
            self.pushes[str(status)] += 1
            return str(status)
        except BaseException:
            # Cancelled at shutdown, or a bug (an unexpected Graph body): free the meeting at
            # once so the next worker round, or the next process, pushes it again.
            await asyncio.shield(self.queries.release_claim(self.pool, meeting_id=meeting_id))
            raise
        status = str(await self.queries.push_succeeded(
            self.pool, meeting_id=meeting_id, pushed_version=meeting["sync_version"],
            event_id=event.id if event else None, change_key=event.change_key if event else None))
        self.pushes[status] += 1
        return status

    async def push_awaiting_holder(self, meeting_id: uuid.UUID, budget_seconds: float) -> str | None:
        """A request's push. When the worker or a sync round holds the meeting already, wait
        for it within the budget: the reply then shows that push's outcome instead of a
        `pending` that is being resolved at that very moment."""
        deadline = time.monotonic() + budget_seconds
        while True:
            status = await self.push(meeting_id, budget_seconds=max(0.0, deadline - time.monotonic()))
            if status is not None or time.monotonic() >= deadline:
                return status
            if not await self.queries.push_in_flight(self.pool, meeting_id=meeting_id):
                return None
            await asyncio.sleep(HOLDER_POLL_SECONDS)

    async def _reconcile(self, meeting: dict[str, Any], deadline: float | None) -> GraphEvent | None:
        event_id = meeting["outlook_event_id"]
        if meeting["status"] == "cancelled":
            if event_id is None and meeting["sync_attempts"] == 0 and meeting["last_error"] is None:
                return None  # no push was ever tried: Outlook never heard of it
            if event_id is None:
                # An earlier try may have created the event before its reply was lost: the
                # same transactionId gives that event back (or makes it) so it can be cancelled.
                event_id = (await self.graph.create_event(meeting, deadline)).id
            await self.graph.cancel_event(event_id, CANCEL_COMMENT, deadline)
            return GraphEvent(id=event_id)
        if event_id is None:
            return await self.graph.create_event(meeting, deadline)
        return await self.graph.update_event(event_id, meeting, deadline)

    async def push_due(self, include_failed: bool = False) -> dict[str, int]:
        """Push every meeting that is due; returns how many ended in each sync_status."""
        outcome: dict[str, int] = {}
        while True:
            due = [row["id"] async for row in self.queries.due_meetings(
                self.pool, include_failed=include_failed, batch=BATCH)]
            if not due:
                return outcome
            results = await asyncio.gather(*(self.push(meeting_id) for meeting_id in due))
            for status in results:
                if status is not None:
                    outcome[status] = outcome.get(status, 0) + 1
            if all(status != "synced" for status in results):
                return outcome  # everything due failed again: leave it to the backoff
            include_failed = False

