"""dashboard: the numbers on the sales team's front page.

The actions' roles and payloads: docs/protocol.md's generated reference (`wsd schema`).

Each metric's definition is in its handler's docstring and in docs/protocol.md. Cached
answers live `[cache] ttl_seconds` and are dropped at once by any write through wsd (this
instance or, through NOTIFY, another).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

from wsd.clock import hour_floor, local_day_bounds, local_today, utc_now
from wsd.actions import ActionTable, Context, NoPayload, read
from wsd.errors import InvalidPayload
from wsd.periods import Granularity, Period, Reported, bucket_starts, reported, resolve, span
from wsd.queries import one_row
from wsd.steps import STEPS
from wsd.topics import Topic

HOUR = dt.timedelta(hours=1)
# What the agent and the sales team do all day: every front-page figure moves with it.
ACTIVITY: frozenset[Topic] = frozenset({"users", "conversations", "messages", "leads", "meetings"})


class AgentPerformance(Reported):
    """Beyond this schema: `compare` needs a `period`, `days` is not given with one, a
    custom period's `to` is on or after its `from` and at most 366 days after
    (`invalid_payload` on the field)."""

    days: Annotated[int, msgspec.Meta(ge=1, le=90, description="7 when absent; not with `period`")] | \
        msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.days is not msgspec.UNSET and self.period is not None:
            raise ValueError("field `days` cannot be given with a `period`")


class Funnel(Reported):
    """Beyond this schema: `compare` and `mode` need a `period`, a custom period's `to` is on
    or after its `from` and at most 366 days after (`invalid_payload` on the field)."""

    mode: Literal["cohort", "activity"] | None = msgspec.field(default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode is not None and self.period is None:
            raise ValueError("field `mode` needs a `period`")


class Timeline(Reported):
    """Beyond this schema: `compare` and `granularity` need a `period`, a custom period's `to`
    is on or after its `from` and at most 366 days after, and the period holds at most 1,000
    buckets of the granularity (`invalid_payload` on the field)."""

    granularity: Granularity | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.granularity is not None and self.period is None:
            raise ValueError("field `granularity` needs a `period`")


def period_of(ctx: Context, payload: Reported) -> Period:
    assert payload.period is not None
    return resolve(payload.period, ctx.config.business.zone)


async def get_dashboard_stats(ctx: Context, payload: Reported) -> dict[str, Any]:
    """The seed's front-page numbers.

    - total_users: all users.
    - active_conversations: conversations not closed with a message in the last 24 hours.
    - meetings_today: meetings not cancelled starting on today's date in business.timezone.
    - leads_by_step: leads at each of the 7 steps now (all 7 present, 0 when empty).

    With a period, also `in_period`: new_leads, messages, step_changes, meetings_created and
    agent_toggles in it (the timeline's events), and `filters` opening each lead count.
    """
    zone = ctx.config.business.zone
    day_start, day_end = local_day_bounds(local_today(zone), zone)
    row = one_row(await ctx.queries.dashboard.dashboard_stats(ctx.pool, day_start=day_start, day_end=day_end))
    stats = {"total_users": row["total_users"], "active_conversations": row["active_conversations"],
             "meetings_today": row["meetings_today"],
             "leads_by_step": {step: row["leads_by_step"].get(step, 0) for step in STEPS}}
    if payload.period is None:
        return stats

    async def figures(period: Period) -> dict[str, Any]:
        activity = one_row(await ctx.queries.reports.period_activity(
            ctx.pool, since=period.since, until=period.until))
        return {"in_period": dict(activity), "filters": {"new_leads": {"created": span(period)}}}

    answer = await reported(period_of(ctx, payload), payload.compare, figures)
    return {**stats, **answer, "filters": {**answer["filters"],
                                           "leads_by_step": {step: {"step": step} for step in STEPS}}}


async def get_conversion_funnel(ctx: Context, payload: Funnel) -> list[dict[str, Any]] | dict[str, Any]:
    """The 7 steps in order, each {step, reached, rate_from_previous, rate_from_start}.

    reached = leads whose furthest step ever entered (from step history) is at or past the
    step, so a lead moved back by hand still counts as having reached its furthest step.
    Rates are 0–1: reached over the previous step's reached (1 for `start` when it has
    leads) and over `start`'s reached; 0 when the divisor is 0.

    With a period, `mode` says what is counted (docs/protocol.md, "Two funnels"): `cohort`
    (default), the leads created in the period by the furthest step each reached; `activity`,
    the leads whose first entry into each step falls in the period (`entered`).
    """
    if payload.period is None:
        return [dict(row) async for row in ctx.queries.dashboard.conversion_funnel(ctx.pool)]
    mode = payload.mode or "cohort"

    async def figures(period: Period) -> dict[str, Any]:
        if mode == "cohort":
            rows = ctx.queries.reports.cohort_steps(ctx.pool, since=period.since, until=period.until)
            counts = [(row["step"], row["reached"]) async for row in rows]
            return {"steps": _funnel(counts, "reached", lambda step: {"created": span(period), "reached": step})}
        rows = ctx.queries.reports.entered_steps(ctx.pool, since=period.since, until=period.until)
        counts = [(row["step"], row["entered"]) async for row in rows]
        return {"steps": _funnel(counts, "entered",
                                 lambda step: {"entered": {"step": step, **span(period)}})}

    return {"mode": mode, **await reported(period_of(ctx, payload), payload.compare, figures)}


def _funnel(counts: list[tuple[str, int]], name: str, opened: Any) -> list[dict[str, Any]]:
    """Funnel rows with the seed's rates (0 where dividing by 0) and each count's filter."""
    first = counts[0][1] if counts else 0
    rows, previous = [], None
    for step, count in counts:
        divisor = count if previous is None else previous
        rows.append({"step": step, name: count, "rate_from_previous": count / divisor if divisor else 0,
                     "rate_from_start": count / first if first else 0, "filters": {name: opened(step)}})
        previous = count
    return rows


async def get_activity_timeline(ctx: Context, payload: Timeline) -> dict[str, Any]:
    """The last 24 hours as 24 hourly buckets, plus the 50 latest events.

    Buckets are aligned to the local hour: the last one is the current (partial) hour, the
    first starts 23 hours before it; oldest first, zero-filled. Each counts new_leads,
    messages, step_changes (history rows, not the creation row), meetings_created and
    agent_toggles. `recent` holds the 50 latest of those events in the same window, newest
    first, as {at, kind, ids}.

    With a period: one bucket per local `granularity` (default `day`, `hour` for a one-day
    period) keyed by `start`, the first and last cut to the period; `recent` in the period.
    """
    queries = ctx.queries.dashboard
    if payload.period is None:
        window_start = hour_floor(utc_now(), ctx.config.business.zone) - 23 * HOUR
        async with ctx.pool.acquire() as connection:
            buckets = [dict(row) async for row in queries.activity_buckets(connection, window_start=window_start)]
            recent = [dict(row) async for row in queries.recent_events(connection, since=window_start, until=None)]
        return {"buckets": buckets, "recent": recent}
    period = period_of(ctx, payload)
    granularity = payload.granularity or ("hour" if period.days == 1 else "day")

    async def figures(window: Period) -> dict[str, Any]:
        try:
            bounds = bucket_starts(window, granularity)
        except ValueError as error:
            raise InvalidPayload(str(error).replace("field `granularity` ", "granularity "),
                                 {"field": "granularity"}) from None
        return {"buckets": [dict(row) async for row in ctx.queries.reports.activity_buckets_between(
            ctx.pool, bounds=bounds)]}

    answer = await reported(period, payload.compare, figures)
    recent = [dict(row) async for row in queries.recent_events(ctx.pool, since=period.since, until=period.until)]
    return {"granularity": granularity, **answer, "recent": recent}


async def get_agent_performance(ctx: Context, payload: AgentPerformance) -> dict[str, Any]:
    """The AI agent over the last `days` days (default 7) and the `days` before, for a trend.

    - conversations_handled: conversations the agent took on in the period (its first
      message in them falls in it).
    - handoffs: times the agent was switched off in a conversation.
    - agent_messages: messages the agent wrote.
    - first_response_seconds: for each agent message that directly follows a user message,
      the seconds between the two; count, average, median and p90 (continuous percentiles).
    - leads_advanced: step history rows with source `agent` that move a lead to a later
      step.
    - meetings_booked: meetings created for leads whose conversation the agent handled.
    - completion_rate: of the leads created in the period whose conversation the agent
      handled, the share now completed (0 when there are none).

    With a period: `current` over it (and with `compare`, `previous` and `change`) in place
    of `days`.
    """
    if payload.period is not None:
        async def figures(period: Period) -> dict[str, Any]:
            return {"current": await _agent_numbers(ctx, period.since, period.until)}
        answer = await reported(period_of(ctx, payload), payload.compare, figures)
        if payload.compare:  # the previous figures beside the current ones, as without a period
            answer["previous"] = answer["previous"]["current"] | {"period": answer["previous"]["period"]}
            answer["change"] = answer["change"]["current"]
        return answer
    days = 7 if isinstance(payload.days, msgspec.UnsetType) else payload.days
    until = utc_now()
    length = dt.timedelta(days=days)
    current, previous = await asyncio.gather(
        _agent_numbers(ctx, until - length, until),
        _agent_numbers(ctx, until - 2 * length, until - length))
    return {"days": days, "current": current, "previous": previous}


async def _agent_numbers(ctx: Context, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    row = dict(one_row(await ctx.queries.dashboard.agent_performance(ctx.pool, since=since, until=until)))
    handled, replies = row.pop("handled_leads"), row.pop("replies")
    return {"since": since, "until": until, **row,
            "agent_messages": replies.pop("agent_messages"), "first_response_seconds": replies,
            "handled_leads": handled["leads"],
            "completion_rate": handled["completed"] / handled["leads"] if handled["leads"] else 0}


async def get_human_takeover(ctx: Context, payload: AgentPerformance) -> dict[str, Any]:
    """The sales team taking conversations over from the agent, for hand-offs made in the
    last `days` days (default 7), or in a `period` (with `compare`, `previous` and `change`).

    - handoffs: times the agent was switched off in a conversation.
    - answered: of those, the ones a human (role `human`) wrote after, before the
      conversation's next switch.
    - first_human_message_seconds: {median, p90} of the seconds from hand-off to that first
      human message over the answered ones (percentile_cont, exact; null without any).
    - unanswered_now: hand-offs no human has written after yet, with the agent still off.
    - switched_back: hand-offs after which the agent was switched on again.
    - conversations_human_wrote: conversations with a human message in the period.
    """
    if payload.period is not None:
        async def figures(period: Period) -> dict[str, Any]:
            return await _takeover(ctx, period.since, period.until)
        return await reported(period_of(ctx, payload), payload.compare, figures)
    days = 7 if isinstance(payload.days, msgspec.UnsetType) else payload.days
    until = utc_now()
    return {"days": days, **await _takeover(ctx, until - dt.timedelta(days=days), until)}


async def _takeover(ctx: Context, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    row = dict(one_row(await ctx.queries.dashboard.human_takeover(ctx.pool, since=since, until=until)))
    waits = {"median": row.pop("median_seconds"), "p90": row.pop("p90_seconds")}
    return {"since": since, "until": until, **row, "first_human_message_seconds": waits}


async def get_real_time_metrics(ctx: Context, _: NoPayload) -> dict[str, Any]:
    """This instance right now, never cached.

    - people: distinct people signed in with OpenID Connect (by provider and subject) among
      the connections; API tokens are not people.
    - connections, requests_last_minute, requests_per_second, p50_ms, p95_ms: from the
      daemon's own counters over the last 60 seconds (p50/p95 within ±12 %).
    - messages_last_5_minutes, new_leads_last_5_minutes: from the database.
    - pool: {size, idle, max}; uptime_seconds; cache: hits, joined, computed, invalidations.
    - outlook: the sync state {last_success_at, last_attempt_at, last_error, window_start,
      window_end, pending_meetings, failed_meetings}, or null while Outlook is disabled.
    """
    activity = one_row(await ctx.queries.dashboard.recent_activity(ctx.pool))
    calendar = ctx.runtime.calendar
    return {**ctx.runtime.figures(), **dict(activity),
            "outlook": await calendar.state() if calendar is not None else None}


ACTIONS = ActionTable("dashboard", [
    read("get_dashboard_stats", get_dashboard_stats, Reported, cached=True, topics=ACTIVITY),
    read("get_conversion_funnel", get_conversion_funnel, Funnel, cached=True, topics={"leads"}),
    read("get_activity_timeline", get_activity_timeline, Timeline, cached=True, topics=ACTIVITY),
    read("get_agent_performance", get_agent_performance, AgentPerformance, cached=True,
         topics=ACTIVITY),
    read("get_human_takeover", get_human_takeover, AgentPerformance, cached=True, topics=ACTIVITY),
    read("get_real_time_metrics", get_real_time_metrics, topics=()),  # this process: re-run on a timer,
])
