"""meetings: the sales team's meetings with leads, kept in step with an Outlook calendar.

The actions' roles and payloads: docs/protocol.md's generated reference (`wsd schema`).

Writes commit to PostgreSQL first; the Outlook push follows (`wsd.calendar_sync`). With
Outlook disabled (the default) every action works on the database alone and meetings carry
`sync_status: "disabled"`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from wsd.calendar_sync import CalendarSync
from wsd.clock import local_day_bounds, local_today, utc_now
from wsd.actions import ActionTable, Context, IdempotencyKey, NoPayload, Paged, Payload, read, write
from wsd.fields import (EMAIL_PATTERN, Cursor, Day, Instant, day_in_range, instant_in_range, trimmed,
                        trimmed_text)
from wsd.errors import Conflict, InvalidPayload, NotFound, Unavailable, UpstreamError, WsdError
from wsd.outlook import GraphError
from wsd.pagination import decode_cursor, page_of
from wsd.slots import free_slots, working_hours
from wsd.steps import STEPS

SUBJECT_LENGTH = 255
Subject = Annotated[str, trimmed_text(SUBJECT_LENGTH)]
Email = Annotated[str, msgspec.Meta(max_length=320, pattern=EMAIL_PATTERN)]
MeetingStatus = Literal["scheduled", "cancelled", "completed"]
SHORTEST, LONGEST = dt.timedelta(minutes=5), dt.timedelta(hours=8)
# How long a write waits for Outlook before replying `pending` and leaving it to the worker.
INLINE_PUSH_SECONDS = 5.0
STEP_RANK = {step: rank for rank, step in enumerate(STEPS)}


class MeetingsQuery(Payload):
    """`filter` picks the days (`today`, `this_week`) or the order (`by_status`); `status`
    narrows any of them, or all meetings when alone."""
    filter: Literal["today", "this_week", "by_status"] | None = None
    status: MeetingStatus | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    cursor: Cursor | None = None


class CalendarRange(Payload):
    """Beyond this schema: `end_date` is on or after `start_date` and at most 365 days after
    it (`invalid_payload` on `end_date`)."""

    start_date: Day
    end_date: Day

    def __post_init__(self) -> None:
        day_in_range(self.start_date, "start_date")
        day_in_range(self.end_date, "end_date")
        if self.end_date < self.start_date:
            raise ValueError("field `end_date` is before start_date")
        if (self.end_date - self.start_date).days >= 366:
            raise ValueError("field `end_date` is more than 366 days after start_date")


class NewMeeting(Payload):
    """Beyond this schema: the booking policy, which needs the configuration and the clock:
    `end_time` after `start_time`, 5 minutes to 8 hours, within one workday's working hours
    in business.timezone, at least business.min_notice_minutes from now (`invalid_payload` on
    `start_time` or `end_time`); the lead is the user's (`invalid_payload` on `user_id`)."""

    user_id: uuid.UUID
    lead_qualification_id: uuid.UUID
    subject: Subject
    start_time: Instant
    end_time: Instant
    attendee_email: Email
    idempotency_key: IdempotencyKey = None

    def __post_init__(self) -> None:
        self.subject = trimmed(self.subject, "subject", SUBJECT_LENGTH)
        instant_in_range(self.start_time, "start_time")
        instant_in_range(self.end_time, "end_time")


class MeetingChange(Payload):
    """Beyond this schema: the booking policy, which needs the configuration and the clock:
    `end_time` after `start_time`, 5 minutes to 8 hours, within one workday's working hours
    in business.timezone, at least business.min_notice_minutes from now (`invalid_payload` on
    `start_time` or `end_time`), checked on the times the meeting will have."""

    # Something to change: `meeting_id` and at least one more field.
    schema_rules = {"minProperties": 2}

    meeting_id: uuid.UUID
    subject: Subject | msgspec.UnsetType = msgspec.UNSET
    start_time: Instant | msgspec.UnsetType = msgspec.UNSET
    end_time: Instant | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if not isinstance(self.subject, msgspec.UnsetType):
            self.subject = trimmed(self.subject, "subject", SUBJECT_LENGTH)
        if not isinstance(self.start_time, msgspec.UnsetType):
            instant_in_range(self.start_time, "start_time")
        if not isinstance(self.end_time, msgspec.UnsetType):
            instant_in_range(self.end_time, "end_time")


class MeetingId(Payload):
    meeting_id: uuid.UUID


class SlotsQuery(Payload):
    date: Day
    duration: Annotated[int, msgspec.Meta(ge=15, le=480)]

    def __post_init__(self) -> None:
        day_in_range(self.date, "date")


def _check_times(ctx: Context, start: dt.datetime, end: dt.datetime) -> None:
    """The booking policy, the same rules get_available_slots lays slots out by: a meeting
    lies within one working day's hours (business.workdays, workday_start..workday_end in
    business.timezone), starts at least min_notice_minutes from now and lasts 5 min – 8 h.
    Slots also step by slot_minutes; a booking need not, so 10:10–10:40 is fine."""
    if end <= start:
        raise InvalidPayload("end_time must be after start_time", {"field": "end_time"})
    if not SHORTEST <= end - start <= LONGEST:
        raise InvalidPayload("a meeting lasts between 5 minutes and 8 hours", {"field": "end_time"})
    business = ctx.config.business
    if start < utc_now() + dt.timedelta(minutes=business.min_notice_minutes):
        raise InvalidPayload(f"start_time must be at least {business.min_notice_minutes} minutes from now",
                             {"field": "start_time"})
    hours = working_hours(start.astimezone(business.zone).date(), business)
    if hours is None or not (hours[0] <= start and end <= hours[1]):
        raise InvalidPayload(
            f"meetings are booked within working hours: {business.workday_start}–{business.workday_end} "
            f"{business.timezone} on ISO weekdays {business.workdays}", {"field": "start_time"})


def _calendar(ctx: Context) -> CalendarSync | None:
    return ctx.runtime.calendar


def _graph_failure(error: GraphError) -> WsdError:
    if error.transient:
        return Unavailable("Outlook is not reachable right now", {"graph_status": error.status})
    return UpstreamError(f"Outlook refused: {error}", {"graph_code": error.code, "graph_status": error.status})


def _clash(kind: str, block_id: str, start: dt.datetime, end: dt.datetime) -> Conflict:
    what = "another meeting is scheduled" if kind == "meeting" else "the calendar is busy"
    key = "meeting_id" if kind == "meeting" else "outlook_event_id"
    return Conflict(f"{what} at that time", {key: block_id, "start_time": start.isoformat(),
                                              "end_time": end.isoformat()})


async def _ensure_free(ctx: Context, connection: Any, mailbox: str, start: dt.datetime, end: dt.datetime,
                       except_id: uuid.UUID | None) -> None:
    """Refuses a time that overlaps a block get_available_slots keeps free of slots: wsd's
    scheduled meetings and the Outlook events the calendar sync has stored. Slots also ask
    getSchedule live when Outlook is on; booking does not call Graph (a write must not wait
    on it), so every offered slot is bookable and nothing hidden by stored data is."""
    await ctx.queries.meetings.lock_mailbox(connection, mailbox=mailbox)
    clash = await ctx.queries.meetings.busy_clash(
        connection, mailbox=mailbox, start_time=start, end_time=end, except_id=except_id)
    if clash is not None:
        raise _clash(clash["kind"], clash["id"], clash["start_time"], clash["end_time"])


async def _locked_meeting(ctx: Context, connection: Any, meeting_id: uuid.UUID) -> Any:
    current = await ctx.queries.meetings.lock_meeting(connection, meeting_id=meeting_id)
    if current is None:
        raise NotFound("no such meeting", {"meeting_id": str(meeting_id)})
    return current


def _refuse_started(current: Any, meeting_id: uuid.UUID) -> None:
    """A meeting that has begun is history: it is neither moved nor cancelled."""
    if current["start_time"] <= utc_now():
        raise Conflict("the meeting has already started",
                       {"meeting_id": str(meeting_id), "start_time": current["start_time"].isoformat()})


async def _change(ctx: Context, connection: Any, meeting_id: uuid.UUID, subject: str | None = None,
                  start_time: dt.datetime | None = None, end_time: dt.datetime | None = None,
                  status: str | None = None) -> None:
    """Stores the change (queued for Outlook when it is on)."""
    await ctx.queries.meetings.change_meeting(
        connection, meeting_id=meeting_id, subject=subject, start_time=start_time, end_time=end_time,
        status=status, push=_calendar(ctx) is not None)


async def _after_commit(ctx: Context, committed_id: uuid.UUID | str) -> dict[str, Any]:
    """Push to Outlook (bounded wait), then answer with the meeting as stored.

    `committed_id` is what the write returned, or its stored copy (text) when an idempotent
    retry replays it."""
    meeting_id = uuid.UUID(str(committed_id))
    calendar = _calendar(ctx)
    if calendar is not None:
        status = await calendar.push_awaiting_holder(meeting_id, budget_seconds=INLINE_PUSH_SECONDS)
        if status == "pending":
            calendar.wake()
    document: dict[str, Any] = await ctx.queries.meetings.meeting_by_id(ctx.pool, meeting_id=meeting_id)
    return document


def meetings_query(ctx: Context, payload: MeetingsQuery) -> tuple[tuple[str, str], dict[str, Any]]:
    """get_all_meetings' query (folder, name) and filters as its parameters (its export runs
    the same): `today` and `this_week` (Monday–Sunday) are local dates in business.timezone;
    `by_status` reads them grouped by status."""
    zone = ctx.config.business.zone
    since = until = None
    if payload.filter == "today":
        since, until = local_day_bounds(local_today(zone), zone)
    elif payload.filter == "this_week":
        today = local_today(zone)
        monday = today - dt.timedelta(days=today.weekday())
        since = local_day_bounds(monday, zone)[0]
        until = local_day_bounds(monday + dt.timedelta(days=7), zone)[0]
    name = "list_meetings_by_status" if payload.filter == "by_status" else "list_meetings"
    return ("meetings", name), {"since": since, "until": until, "status": payload.status}


async def get_all_meetings(ctx: Context, payload: MeetingsQuery) -> Paged:
    """Meetings ordered by start; `today` and `this_week` (Monday–Sunday) are local dates in
    business.timezone; `by_status` orders scheduled, completed, then cancelled, each by start
    (the seed's example sends it without a status); `status` narrows every filter, both
    conditions holding. Paginated like leads."""
    _, filters = meetings_query(ctx, payload)
    by_status = payload.filter == "by_status"
    after = decode_cursor(payload.cursor, grouped=by_status)
    if by_status:
        rows = [row async for row in ctx.queries.meetings.list_meetings_by_status(
            ctx.pool, **filters, after_rank=after.group, after_start=after.at, after_id=after.id,
            page_size=payload.limit + 1)]
        return page_of(rows, payload.limit, key="start_time", document="meeting", group="status_rank")
    rows = [row async for row in ctx.queries.meetings.list_meetings(
        ctx.pool, **filters, after_start=after.at, after_id=after.id, page_size=payload.limit + 1)]
    return page_of(rows, payload.limit, key="start_time", document="meeting")


async def get_calendar_view(ctx: Context, payload: CalendarRange) -> dict[str, list[dict[str, Any]]]:
    """Meetings not cancelled, grouped by their local start date; every date of the range
    (inclusive) is present, empty dates with []."""
    zone = ctx.config.business.zone
    since = local_day_bounds(payload.start_date, zone)[0]
    until = local_day_bounds(payload.end_date, zone)[1]
    days = (payload.end_date - payload.start_date).days + 1
    calendar: dict[str, list[dict[str, Any]]] = {
        (payload.start_date + dt.timedelta(days=n)).isoformat(): [] for n in range(days)}
    async for row in ctx.queries.meetings.calendar_meetings(ctx.pool, since=since, until=until):
        calendar[row["start_time"].astimezone(zone).date().isoformat()].append(row["meeting"])
    return calendar


async def create_meeting(ctx: Context, payload: NewMeeting) -> uuid.UUID:
    """Books a meeting with a lead; a lead before the `meeting` step moves there (history
    source `meeting`) in the same transaction. The reply's sync_status says whether Outlook
    has it yet."""
    _check_times(ctx, payload.start_time, payload.end_time)
    meetings, leads = ctx.queries.meetings, ctx.queries.leads
    mailbox = ctx.config.outlook.mailbox
    syncing = _calendar(ctx) is not None
    connection = ctx.connection
    lead = await meetings.lead_of_user(connection, lead_id=payload.lead_qualification_id)
    if lead is None:
        raise NotFound("no such lead", {"lead_qualification_id": str(payload.lead_qualification_id)})
    if lead["user_id"] != payload.user_id:
        if not await meetings.user_exists(connection, user_id=payload.user_id):
            raise NotFound("no such user", {"user_id": str(payload.user_id)})
        raise InvalidPayload("the lead belongs to another user", {"field": "user_id"})
    await _ensure_free(ctx, connection, mailbox, payload.start_time, payload.end_time, None)
    meeting_id = await meetings.insert_meeting(
        connection, lead_id=payload.lead_qualification_id, user_id=payload.user_id,
        subject=payload.subject, start_time=payload.start_time, end_time=payload.end_time,
        attendee_email=payload.attendee_email, mailbox=mailbox,
        sync_status="pending" if syncing else "disabled")
    if STEP_RANK[lead["current_step"]] < STEP_RANK["meeting"]:
        await leads.record_step_change(connection, lead_id=payload.lead_qualification_id,
                                       from_step=lead["current_step"], to_step="meeting", source="meeting")
        await leads.move_lead_step(connection, lead_id=payload.lead_qualification_id, new_step="meeting")
    return uuid.UUID(str(meeting_id))


async def update_meeting(ctx: Context, payload: MeetingChange) -> uuid.UUID:
    """Changes subject and/or times with create_meeting's checks; a cancelled meeting or one
    that has started cannot be changed (`conflict`)."""
    changes = {f: getattr(payload, f) for f in ("subject", "start_time", "end_time")
               if getattr(payload, f) is not msgspec.UNSET}
    if not changes:
        raise InvalidPayload("nothing to change: give subject, start_time or end_time", {"field": None})
    connection = ctx.connection
    current = await _locked_meeting(ctx, connection, payload.meeting_id)
    if current["status"] == "cancelled":
        raise Conflict("the meeting is cancelled", {"meeting_id": str(payload.meeting_id)})
    _refuse_started(current, payload.meeting_id)
    if "start_time" in changes or "end_time" in changes:
        start = changes.get("start_time", current["start_time"])
        end = changes.get("end_time", current["end_time"])
        _check_times(ctx, start, end)
        await _ensure_free(ctx, connection, current["mailbox"], start, end, payload.meeting_id)
    await _change(ctx, connection, payload.meeting_id, **changes)
    return payload.meeting_id


async def cancel_meeting(ctx: Context, payload: MeetingId) -> uuid.UUID:
    """Cancels the meeting (and its Outlook event). Cancelling twice is not an error; a
    meeting that has started (or is completed) cannot be cancelled (`conflict`)."""
    current = await _locked_meeting(ctx, ctx.connection, payload.meeting_id)
    if current["status"] != "cancelled":
        _refuse_started(current, payload.meeting_id)
        await _change(ctx, ctx.connection, payload.meeting_id, status="cancelled")
    return payload.meeting_id


async def get_available_slots(ctx: Context, payload: SlotsQuery) -> dict[str, Any]:
    """Free slots of `duration` minutes on a local date: every business.slot_minutes within
    working hours on workdays, min_notice_minutes from now, clear of scheduled meetings, of
    events made in Outlook, and (Outlook enabled) of getSchedule's busy/tentative/oof blocks.
    If Graph fails, the answer comes from the database and says so."""
    business = ctx.config.business
    zone = business.zone
    since, until = local_day_bounds(payload.date, zone)
    busy = [(row["start_time"], row["end_time"]) async for row in ctx.queries.meetings.busy_between(
        ctx.pool, mailbox=ctx.config.outlook.mailbox, since=since, until=until)]
    calendar = _calendar(ctx)
    outlook_checked, warning = None, None
    if calendar is not None:
        try:
            busy += await calendar.busy_times(since, until)
            outlook_checked = True
        except GraphError as error:
            outlook_checked = False
            warning = f"Outlook was not consulted ({error.status or 'unreachable'}): slots come from wsd's own data"
    slots = free_slots(payload.date, payload.duration, business, busy, utc_now())
    return {"date": payload.date, "duration": payload.duration, "timezone": business.timezone,
            "slots": [{"start": start.astimezone(zone).isoformat(), "end": end.astimezone(zone).isoformat()}
                      for start, end in slots],
            "outlook_checked": outlook_checked, "warning": warning}


async def sync_outlook_calendar(ctx: Context, _: NoPayload) -> dict[str, Any]:
    """One delta round over the window plus a push of unsynced meetings:
    {created, updated, cancelled, pushed, unchanged, full_resync}."""
    calendar = _calendar(ctx)
    if calendar is None:
        raise Unavailable("Outlook sync is disabled: set [outlook] enabled = true and its credentials",
                          {"reason": "outlook_disabled"})
    try:
        return await calendar.sync()
    except GraphError as error:
        raise _graph_failure(error) from None


ACTIONS = ActionTable("meetings", [
    read("get_all_meetings", get_all_meetings, MeetingsQuery, topics={"meetings"}),
    read("get_calendar_view", get_calendar_view, CalendarRange, topics={"meetings"}),
    write("create_meeting", create_meeting, NewMeeting, changes={"meetings", "leads"}, then=_after_commit),
    write("update_meeting", update_meeting, MeetingChange, changes={"meetings"}, then=_after_commit),
    write("cancel_meeting", cancel_meeting, MeetingId, changes={"meetings"}, then=_after_commit),
    read("get_available_slots", get_available_slots, SlotsQuery, topics={"meetings"}),
    write("sync_outlook_calendar", sync_outlook_calendar, NoPayload, changes={"meetings"},
          transactional=False),
])
