"""dashboard: the numbers on the sales team's front page.

The actions' roles and payloads: docs/protocol.md's generated reference (`wsd schema`).

Each metric's definition is in its handler's docstring and in docs/protocol.md. Cached
answers live `[cache] ttl_seconds` and are dropped at once by any write through wsd (this
instance or, through NOTIFY, another).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any

import msgspec

from wsd.clock import hour_floor, local_day_bounds, local_today, utc_now
from wsd.dispatcher import ActionTable, Context, NoPayload, Payload, read
from wsd.queries import one_row
from wsd.steps import STEPS
from wsd.topics import Topic

HOUR = dt.timedelta(hours=1)
# What the agent and the sales team do all day: every front-page figure moves with it.
ACTIVITY: frozenset[Topic] = frozenset({"users", "conversations", "messages", "leads", "meetings"})


class AgentPerformance(Payload):
    days: Annotated[int, msgspec.Meta(ge=1, le=90)] = 7


async def get_dashboard_stats(ctx: Context, _: NoPayload) -> dict[str, Any]:
    """The seed's front-page numbers.

    - total_users: all users.
    - active_conversations: conversations not closed with a message in the last 24 hours.
    - meetings_today: meetings not cancelled starting on today's date in business.timezone.
    - leads_by_step: leads at each of the 7 steps now (all 7 present, 0 when empty).
    """
    zone = ctx.config.business.zone
    day_start, day_end = local_day_bounds(local_today(zone), zone)
    row = one_row(await ctx.queries.dashboard.dashboard_stats(ctx.pool, day_start=day_start, day_end=day_end))
    return {"total_users": row["total_users"], "active_conversations": row["active_conversations"],
            "meetings_today": row["meetings_today"],
            "leads_by_step": {step: row["leads_by_step"].get(step, 0) for step in STEPS}}


async def get_conversion_funnel(ctx: Context, _: NoPayload) -> list[dict[str, Any]]:
    """The 7 steps in order, each {step, reached, rate_from_previous, rate_from_start}.

    reached = leads whose furthest step ever entered (from step history) is at or past the
    step, so a lead moved back by hand still counts as having reached its furthest step.
    Rates are 0–1: reached over the previous step's reached (1 for `start` when it has
    leads) and over `start`'s reached; 0 when the divisor is 0.
    """
    return [dict(row) async for row in ctx.queries.dashboard.conversion_funnel(ctx.pool)]


async def get_activity_timeline(ctx: Context, _: NoPayload) -> dict[str, Any]:
    """The last 24 hours as 24 hourly buckets, plus the 50 latest events.

    Buckets are aligned to the local hour: the last one is the current (partial) hour, the
    first starts 23 hours before it; oldest first, zero-filled. Each counts new_leads,
    messages, step_changes (history rows, not the creation row), meetings_created and
    agent_toggles. `recent` holds the 50 latest of those events in the same window, newest
    first, as {at, kind, ids}.
    """
    window_start = hour_floor(utc_now(), ctx.config.business.zone) - 23 * HOUR
    queries = ctx.queries.dashboard
    async with ctx.pool.acquire() as connection:
        buckets = [dict(row) async for row in queries.activity_buckets(connection, window_start=window_start)]
        recent = [dict(row) async for row in queries.recent_events(connection, since=window_start)]
    return {"buckets": buckets, "recent": recent}


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
    """
    until = utc_now()
    length = dt.timedelta(days=payload.days)
    current, previous = await asyncio.gather(
        _agent_numbers(ctx, until - length, until),
        _agent_numbers(ctx, until - 2 * length, until - length))
    return {"days": payload.days, "current": current, "previous": previous}


async def _agent_numbers(ctx: Context, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    row = dict(one_row(await ctx.queries.dashboard.agent_performance(ctx.pool, since=since, until=until)))
    handled, replies = row.pop("handled_leads"), row.pop("replies")
    return {"since": since, "until": until, **row,
            "agent_messages": replies.pop("agent_messages"), "first_response_seconds": replies,
            "handled_leads": handled["leads"],
            "completion_rate": handled["completed"] / handled["leads"] if handled["leads"] else 0}


async def get_human_takeover(ctx: Context, payload: AgentPerformance) -> dict[str, Any]:
    """The sales team taking conversations over from the agent, for hand-offs made in the
    last `days` days (default 7).

    - handoffs: times the agent was switched off in a conversation.
    - answered: of those, the ones a human (role `human`) wrote after, before the
      conversation's next switch.
    - first_human_message_seconds: {median, p90} of the seconds from hand-off to that first
      human message over the answered ones (percentile_cont, exact; null without any).
    - unanswered_now: hand-offs no human has written after yet, with the agent still off.
    - switched_back: hand-offs after which the agent was switched on again.
    - conversations_human_wrote: conversations with a human message in the period.
    """
    until = utc_now()
    since = until - dt.timedelta(days=payload.days)
    row = dict(one_row(await ctx.queries.dashboard.human_takeover(ctx.pool, since=since, until=until)))
    waits = {"median": row.pop("median_seconds"), "p90": row.pop("p90_seconds")}
    return {"days": payload.days, "since": since, "until": until, **row, "first_human_message_seconds": waits}


async def get_real_time_metrics(ctx: Context, _: NoPayload) -> dict[str, Any]:
    """This instance right now, never cached.

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
    read("get_dashboard_stats", get_dashboard_stats, cached=True, topics=ACTIVITY),
    read("get_conversion_funnel", get_conversion_funnel, cached=True, topics={"leads"}),
    read("get_activity_timeline", get_activity_timeline, cached=True, topics=ACTIVITY),
    read("get_agent_performance", get_agent_performance, AgentPerformance, cached=True,
         topics=ACTIVITY),
    read("get_human_takeover", get_human_takeover, AgentPerformance, cached=True, topics=ACTIVITY),
    read("get_real_time_metrics", get_real_time_metrics, topics=()),  # this process: re-run on a timer,
])
