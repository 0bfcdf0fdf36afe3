"""Keeping meetings and the Outlook calendar in step: never lose, never duplicate.

A meeting is committed to PostgreSQL first, with `sync_status` pending; pushing it to
Graph comes after. A push claims the meeting (a lease that a crashed process lets lapse),
reconciles Graph with the row (create, update or cancel) and records the outcome with the
row's version, so a change made while a push was in flight is pushed next. Creates carry
the meeting id as `transactionId`, so a repeated create (after a lost reply or a crash)
returns the first event instead of making a second.

The worker retries pending meetings with backoff, from start-up on, so a crash between the
database write and the Graph call is recovered when wsd comes back. `sync()` is one delta
round over the configured window: moves and deletions made in Outlook come back to the
meetings, events made in Outlook are stored as busy time, and failed meetings are retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from wsd.clock import local_day_bounds, local_today
from wsd.config import Config
from wsd.outlook import GraphClient, GraphError, GraphEvent, ResyncRequired
from wsd.queries import one_row

if TYPE_CHECKING:
    from wsd.queries import Executor, Queries

__all__ = ["CalendarSync"]

log = structlog.get_logger("wsd.calendar_sync")

LEASE_SECONDS = 120
BATCH = 20
# How often a request waiting for another pusher looks whether it has finished.
HOLDER_POLL_SECONDS = 0.05
CANCEL_COMMENT = "La reunión fue cancelada."


def _transaction_meeting_id(event: GraphEvent) -> uuid.UUID | None:
    try:
        return uuid.UUID(event.transaction_id) if event.transaction_id else None
    except ValueError:
        return None


class CalendarSync:
    def __init__(self, config: Config, pool: asyncpg.Pool, queries: Queries, graph: GraphClient) -> None:
        self.config = config
        self.pool = pool
        self.queries = queries.outlook
        self.graph = graph
        self.mailbox = config.outlook.mailbox
        self._sync_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        # Pushes by the meeting's sync_status afterwards (read by /metrics).
        self.pushes: Counter[str] = Counter()

    # -- pushing meetings ----------------------------------------------------------------------

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
                permanent=not error.transient, max_attempts=self.config.outlook.max_attempts,
                retry_seconds=self.config.outlook.retry_seconds)
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

    def wake(self) -> None:
        """Tell the worker a meeting was left pending, so it need not wait a whole interval."""
        self._wake.set()

    async def run_worker(self) -> None:
        """Retry pending meetings until cancelled; the first round runs at once (recovery)."""
        while True:
            try:
                await self.push_due()
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

    def window(self) -> tuple[dt.datetime, dt.datetime]:
        zone = self.config.business.zone
        start_of_today, _ = local_day_bounds(local_today(zone), zone)
        return (start_of_today - dt.timedelta(days=self.config.outlook.sync_past_days),
                start_of_today + dt.timedelta(days=self.config.outlook.sync_future_days))

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
            window_start, window_end = self.window()
            state = one_row(await self.queries.sync_state(self.pool, mailbox=self.mailbox))
            same_window = state["window_start"] == window_start and state["window_end"] == window_end
            delta_link = state["delta_link"] if same_window else None
            full_resync = False
            try:
                try:
                    round_ = await self.graph.calendar_delta(window_start, window_end, delta_link)
                except ResyncRequired:
                    full_resync = True
                    round_ = await self.graph.calendar_delta(window_start, window_end, None)
            except GraphError as error:
                await self.queries.save_sync_state(self.pool, mailbox=self.mailbox, delta_link=None,
                                                   window_start=None, window_end=None, succeeded=False,
                                                   error=f"{error.code or error.status}: {error}"[:500])
                raise
            counts = await self._apply(round_.events, window_start, window_end,
                                       full=delta_link is None or full_resync)
            await self.queries.save_sync_state(self.pool, mailbox=self.mailbox, delta_link=round_.delta_link,
                                               window_start=window_start, window_end=window_end,
                                               succeeded=True, error=None)
            await self.queries.reset_failed(self.pool)
            pushed = await self.push_due(include_failed=True)
            return {**counts, "pushed": pushed.get("synced", 0), "full_resync": full_resync}

    async def _apply(self, events: list[GraphEvent], window_start: dt.datetime, window_end: dt.datetime,
                     full: bool) -> dict[str, int]:
        counts = {"created": 0, "updated": 0, "cancelled": 0, "unchanged": 0}
        queries = self.queries
        async with self.pool.acquire() as connection, connection.transaction():
            for event in events:
                meeting = await queries.meeting_for_event(
                    connection, event_id=event.id, transaction_id=_transaction_meeting_id(event))
                if meeting is not None:
                    counts[await self._apply_to_meeting(connection, dict(meeting), event)] += 1
                elif event.removed or event.is_cancelled:
                    gone = await queries.delete_busy(connection, mailbox=self.mailbox, event_id=event.id)
                    counts["cancelled" if gone else "unchanged"] += 1
                else:
                    outcome = await queries.upsert_busy(
                        connection, mailbox=self.mailbox, event_id=event.id, subject=event.subject,
                        start_time=event.start, end_time=event.end, show_as=event.show_as)
                    counts[outcome] += 1
            if full:
                seen = [e.id for e in events if not e.removed]
                vanished = [row["id"] async for row in queries.vanished_meetings(
                    connection, mailbox=self.mailbox, since=window_start, until=window_end, seen_ids=seen)]
                for meeting_id in vanished:
                    await queries.apply_outlook_change(
                        connection, meeting_id=meeting_id, event_id=None, change_key=None, subject=None,
                        start_time=None, end_time=None, status="cancelled")
                counts["cancelled"] += len(vanished)
                counts["cancelled"] += await queries.forget_unseen_busy(connection, mailbox=self.mailbox,
                                                                        seen_ids=seen)
        return counts

    async def _apply_to_meeting(self, connection: Executor, meeting: dict[str, Any],
                                event: GraphEvent) -> str:
        """A change made in Outlook to one of wsd's meetings. Local changes not yet pushed win:
        they will overwrite Outlook on the next push."""
        if meeting["has_local_changes"]:
            return "unchanged"
        if event.removed or event.is_cancelled:
            if meeting["status"] == "cancelled":
                return "unchanged"
            await self.queries.apply_outlook_change(
                connection, meeting_id=meeting["id"], event_id=meeting["outlook_event_id"] or event.id,
                change_key=None, subject=None, start_time=None, end_time=None, status="cancelled")
            return "cancelled"
        same = (meeting["start_time"], meeting["end_time"], meeting["subject"]) == (
            event.start, event.end, event.subject) and meeting["outlook_event_id"] == event.id
        if same:
            return "unchanged"
        await self.queries.apply_outlook_change(
            connection, meeting_id=meeting["id"], event_id=event.id, change_key=event.change_key,
            subject=event.subject, start_time=event.start, end_time=event.end, status=None)
        return "updated"

    async def state(self) -> dict[str, Any]:
        """For the real-time dashboard: when sync last worked and what waits for a push."""
        row = dict(one_row(await self.queries.sync_state(self.pool, mailbox=self.mailbox)))
        row.pop("delta_link")
        return row
