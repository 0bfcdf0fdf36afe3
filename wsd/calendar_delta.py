"""Reading the Outlook calendar back: one delta round over the configured window.

Moves and deletions made in Outlook come back to wsd's meetings (local changes not yet
pushed win), and events made in Outlook are stored as busy time. A round after the window
moved, or after Graph asked for a resync, is a full one: what it did not see is gone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from wsd.clock import local_day_bounds, local_today
from wsd.config import Config
from wsd.outlook import GraphClient, GraphError, GraphEvent, ResyncRequired
from wsd.queries import one_row

if TYPE_CHECKING:
    from wsd.queries import Executor, OutlookQueries

__all__ = ["CalendarDelta"]


def _transaction_meeting_id(event: GraphEvent) -> uuid.UUID | None:
    try:
        return uuid.UUID(event.transaction_id) if event.transaction_id else None
    except ValueError:
        return None


@dataclass
class CalendarDelta:
    """Graph's calendar delta applied to the meetings and the busy time of one mailbox."""

    config: Config
    pool: asyncpg.Pool
    queries: OutlookQueries
    graph: GraphClient
    mailbox: str

    def window(self) -> tuple[dt.datetime, dt.datetime]:
        zone = self.config.business.zone
        start_of_today, _ = local_day_bounds(local_today(zone), zone)
        return (start_of_today - dt.timedelta(days=self.config.outlook.sync_past_days),
                start_of_today + dt.timedelta(days=self.config.outlook.sync_future_days))

    async def round(self) -> tuple[dict[str, int], bool]:
        """Apply what changed in Outlook since the last round; the counts by outcome and
        whether Graph asked for a full resync (the caller holds the mailbox's lock)."""
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
        return counts, full_resync

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

