"""leads: the qualification pipeline, one lead's whole story, and manual step moves.

The actions' roles and payloads: docs/protocol.md's generated reference (`wsd schema`).

"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
import orjson

from wsd.clock import utc_now
from wsd.actions import ActionTable, Context, NoPayload, Paged, Payload, read, write
from wsd.errors import NotFound
from wsd.fields import Cursor
from wsd.pagination import decode_cursor, page_of
from wsd.periods import DateRange, Period, Reported, reported, resolve, span
from wsd.steps import STEPS, LeadStep
from wsd.topics import Topic

# A lead document: the lead with its user, BANT, requirements and its conversation's agent
# switch; messages move its activity.
LEAD_DOCUMENT: frozenset[Topic] = frozenset({"leads", "users", "requirements", "messages", "conversations"})

# Left out or null: the server's [limits] default_page_size; the reply's next_cursor says
# whether more follow.
DefaultedPageSize = Annotated[int, msgspec.Meta(ge=1, le=1000, description="left out or null: the server's "
                                                                         "[limits] default_page_size")] | None
SearchText = Annotated[str, msgspec.Meta(max_length=200, description="blank means no search")]


class EnteredStep(DateRange, kw_only=True):
    step: LeadStep


class LeadFilter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Beyond this schema: `wanted` needs `wants_feature` or `wants_integration`; a range's
    `to` is on or after its `from` and at most 366 days after (`invalid_payload` on the
    field). The leads behind a count: the `filters` entries of period answers, or any mix."""

    step: LeadStep | None = None
    reached: LeadStep | None = None
    created: DateRange | None = None
    entered: EnteredStep | None = None
    agent: Literal["on", "off"] | None = None
    stalled: bool | None = None
    meeting: Literal["scheduled", "cancelled", "completed"] | None = None
    wants_feature: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    wants_integration: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    wanted: Annotated[DateRange, msgspec.Meta(
        description="the wanted feature or integration was added in these days")] | None = None
    search: SearchText | None = None

    def __post_init__(self) -> None:
        if self.wanted is not None and self.wants_feature is None and self.wants_integration is None:
            raise ValueError("field `wanted` needs `wants_feature` or `wants_integration`")


class AllLeads(Payload):
    """Beyond this schema: with `filter`, `step` and `search` go inside it; the filter's own
    rules (`invalid_payload` on the field)."""

    limit: DefaultedPageSize = None
    cursor: Cursor | None = None
    step: LeadStep | None = None
    search: SearchText | None = None
    filter: Annotated[LeadFilter, msgspec.Meta(
        description="the leads behind a count; the answer then carries `total`")] | None = None

    def __post_init__(self) -> None:
        # An empty search box is the most common state of a frontend: it means "all leads".
        if self.search is not None and not self.search.strip():
            self.search = None
        if self.filter is not None and (self.step is not None or self.search is not None):
            raise ValueError("field `filter` takes step and search inside it, not beside it")
        if self.filter is not None and self.filter.search is not None and not self.filter.search.strip():
            self.filter.search = None


class LeadId(Payload):
    lead_id: uuid.UUID


class UpdateLeadStep(Payload):
    lead_id: uuid.UUID
    new_step: LeadStep


class AbandonedLeads(Payload):
    days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 7
    limit: DefaultedPageSize = None
    cursor: Cursor | None = None


def all_leads_query(ctx: Context, payload: AllLeads) -> tuple[tuple[str, str], dict[str, Any]]:
    """get_all_leads' query (folder, name) and filters as its parameters (its export runs
    the same; an export counts nothing)."""
    if payload.filter is not None:
        return ("leads", "filtered_leads"), _filter_parameters(ctx, payload.filter, count_all=False)
    return ("leads", "all_leads"), {"step": payload.step, "search": payload.search}


def _filter_parameters(ctx: Context, wanted: LeadFilter, count_all: bool) -> dict[str, Any]:
    """A drill-down filter as filtered_leads.sql's parameters (without the keyset)."""
    zone = ctx.config.business.zone
    created = resolve(wanted.created, zone) if wanted.created is not None else None
    entered = resolve(wanted.entered, zone) if wanted.entered is not None else None
    added = resolve(wanted.wanted, zone) if wanted.wanted is not None else None
    return {
        "step": wanted.step, "reached": wanted.reached,
        "created_since": created.since if created else None, "created_until": created.until if created else None,
        "entered_step": wanted.entered.step if wanted.entered else None,
        "entered_since": entered.since if entered else None, "entered_until": entered.until if entered else None,
        "agent_on": None if wanted.agent is None else wanted.agent == "on", "stalled": wanted.stalled,
        "now": utc_now(), "stalled_hours": ctx.config.reports.stalled_hours_by_step(),
        "meeting_status": wanted.meeting, "wants_feature": wanted.wants_feature,
        "wants_integration": wanted.wants_integration, "wanted_since": added.since if added else None,
        "wanted_until": added.until if added else None, "search": wanted.search, "count_all": count_all}


async def get_all_leads(ctx: Context, payload: AllLeads) -> Paged:
    """Leads newest first with user, bant_data and requirements joined, a page at a time.

    With `filter`: the leads it matches, and `total`, the count of all of them (for a
    count's filter, that count)."""
    after = decode_cursor(payload.cursor)
    size = payload.limit or ctx.config.limits.default_page_size
    if payload.filter is not None:
        return await _filtered(ctx, payload.filter, size, after.at, after.id)
    rows = [row async for row in ctx.queries.leads.all_leads(
        ctx.pool, **all_leads_query(ctx, payload)[1], after_created_at=after.at,
        after_id=after.id, page_size=size + 1)]
    return page_of(rows, size, key="created_at", document="lead")


async def _filtered(ctx: Context, wanted: LeadFilter, limit: int, after_created_at: Any,
                    after_id: Any) -> Paged:
    """A page of the filter's leads and their total, read in one snapshot. A filter that is
    exactly one figure's takes its total from that figure's kept counts (`_kept_total`):
    counting its leads would read most of them. A step-entry, meeting, item or search filter
    given alone is read its own way (`single_filter_leads`), any other from the leads."""
    given = frozenset(name for name in wanted.__struct_fields__ if getattr(wanted, name) is not None)
    kept = given <= _TIME_IN_STEP_KEYS or given in _KEPT_ALONE
    driver = _SINGLE_FILTERS.get(given - {"wanted"})
    parameters = _filter_parameters(ctx, wanted, count_all=not kept)
    async with ctx.pool.acquire() as connection, \
            connection.transaction(isolation="repeatable_read", readonly=True):
        await ctx.queries.leads.plan_each_call(connection)
        if driver is not None:
            found = ctx.queries.leads.single_filter_leads(
                connection, driver=driver, **{name: parameters[name] for name in _SINGLE_FILTER_PARAMETERS},
                after_created_at=after_created_at, after_id=after_id, page_size=limit + 1)
        else:
            found = ctx.queries.leads.filtered_leads(
                connection, **parameters, after_created_at=after_created_at, after_id=after_id,
                page_size=limit + 1)
        rows = [row async for row in found]
        total = await _kept_total(ctx, connection, wanted, parameters) if kept else rows[0]["total"]
    page = page_of([row for row in rows if row["id"] is not None], limit, key="created_at", document="lead")
    return Paged(page.data, page.next_cursor, total)


async def _kept_total(ctx: Context, connection: Any, wanted: LeadFilter, parameters: dict[str, Any]) -> int:
    """The total of a filter that is exactly one figure's, from the counts that figure is
    read from (the same snapshot as the page): time in step (stalled or not, leads at a step,
    agent on/off, or every lead), the activity funnel's `entered`, popular items' names."""
    if wanted.entered is not None:
        rows = ctx.queries.reports.entered_steps(connection, since=parameters["entered_since"],
                                                 until=parameters["entered_until"])
        return sum([row["entered"] async for row in rows if row["step"] == wanted.entered.step])
    for kind, name in (("features", wanted.wants_feature), ("integrations", wanted.wants_integration)):
        if name is not None:
            count: int = await ctx.queries.leads.wanted_item_leads(connection, kind=kind, name=name)
            return count
    groups = [row async for row in ctx.queries.reports.step_durations(
        connection, now=parameters["now"], stalled_hours=parameters["stalled_hours"])]
    return sum(row["leads"] if wanted.stalled is None else
               row["stalled"] if wanted.stalled else row["leads"] - row["stalled"] for row in groups
               if wanted.step in (None, row["step"]) and wanted.agent in (None, "on" if row["agent_on"] else "off"))


# The filter fields a time-in-step figure's filter may hold (any of them, or none: every lead).
_TIME_IN_STEP_KEYS = frozenset({"stalled", "step", "agent"})
# Filters whose total is a kept figure when given alone: the activity funnel's step entries in
# a period, and a name of popular features or integrations (over all time).
_KEPT_ALONE = frozenset({frozenset({"entered"}), frozenset({"wants_feature"}), frozenset({"wants_integration"})})
# Filters read from their own rows when given alone (`wanted` aside): single_filter_leads,
# with these of filtered_leads' parameters.
_SINGLE_FILTERS = {frozenset({name}): name
                   for name in ("entered", "meeting", "wants_feature", "wants_integration", "search")}
_SINGLE_FILTER_PARAMETERS = ("entered_step", "entered_since", "entered_until", "meeting_status", "wants_feature",
                             "wants_integration", "wanted_since", "wanted_until", "search", "count_all")


async def get_lead_pipeline(ctx: Context, payload: Reported) -> list[dict[str, Any]] | dict[str, Any]:
    """Every step in funnel order, even empty ones, so the board always has 7 columns.

    With a period: `steps`, the same columns over the leads created in it, each count with
    its filter."""
    if payload.period is None:
        return [dict(row) async for row in ctx.queries.leads.lead_pipeline(ctx.pool)]

    async def figures(period: Period) -> dict[str, Any]:
        rows = ctx.queries.reports.period_pipeline(ctx.pool, since=period.since, until=period.until)
        return {"steps": [{**row, "filters": {"count": {"created": span(period), "step": row["step"]}}}
                          async for row in rows]}

    return await reported(resolve(payload.period, ctx.config.business.zone), payload.compare, figures)


async def get_lead_with_complete_data(ctx: Context, payload: LeadId) -> orjson.Fragment:
    """The lead's whole document, built by PostgreSQL and passed through as JSON text: the
    hot point read never decodes and re-encodes it. `trail` holds the latest 50 trail
    entries that touched the lead for an admin, and is null for a viewer (the trail is an
    admin's read, like `trail.get_trail`)."""
    lead = await ctx.queries.leads.lead_with_complete_data(
        ctx.pool, lead_id=payload.lead_id, with_trail=ctx.caller.role == "admin")
    if lead is None:
        raise NotFound("no such lead", {"lead_id": str(payload.lead_id)})
    return orjson.Fragment(lead)


async def update_lead_step(ctx: Context, payload: UpdateLeadStep) -> dict[str, Any]:
    """A salesperson's move: history row (source `manual`) and step change commit together.

    Moving a lead to the step it is at changes nothing and writes no history.
    """
    leads, connection = ctx.queries.leads, ctx.connection
    current = await leads.lock_lead_step(connection, lead_id=payload.lead_id)
    if current is None:
        raise NotFound("no such lead", {"lead_id": str(payload.lead_id)})
    if current != payload.new_step:
        # History first: its trigger raises furthest_step, which must stay >= current_step.
        await leads.record_step_change(connection, lead_id=payload.lead_id, from_step=current,
                                       to_step=payload.new_step, source="manual")
        await leads.move_lead_step(connection, lead_id=payload.lead_id, new_step=payload.new_step)
    document: dict[str, Any] = await leads.lead_by_id(connection, lead_id=payload.lead_id)
    return document


async def get_step_durations(ctx: Context, _: NoPayload) -> list[dict[str, Any]]:
    """Time in step: per step in funnel order, the leads there now and how many are stalled,
    and per agent on/off in their conversation (`agent_on`, `agent_off`; a lead without a
    conversation counts as off) those two counts with the exact median and p90 of the hours
    since each lead entered the step (latest entry; NULL without leads).

    Stalled: at the step longer than `[reports] stalled_hours` of the step (`stalled_after_hours`;
    null: never). Each count carries its drill-down filter.
    """
    thresholds = ctx.config.reports.stalled_hours_by_step()
    rows = [row async for row in ctx.queries.reports.step_durations(ctx.pool, now=utc_now(),
                                                                     stalled_hours=thresholds)]
    answer = []
    for step, threshold in zip(STEPS, thresholds):
        split = {}
        for row in (r for r in rows if r["step"] == step):
            agent = "on" if row["agent_on"] else "off"
            split[f"agent_{agent}"] = {
                "leads": row["leads"], "median_hours": row["median_hours"], "p90_hours": row["p90_hours"],
                "stalled": row["stalled"],
                "filters": {"leads": {"step": step, "agent": agent},
                            "stalled": {"step": step, "agent": agent, "stalled": True}}}
        answer.append({"step": step, "stalled_after_hours": threshold,
                       "leads": sum(part["leads"] for part in split.values()),
                       "stalled": sum(part["stalled"] for part in split.values()),
                       "filters": {"leads": {"step": step}, "stalled": {"step": step, "stalled": True}},
                       **split})
    return answer


async def get_conversion_stats(ctx: Context, payload: Reported) -> list[dict[str, Any]] | dict[str, Any]:
    """Step-to-step conversion over the furthest step each lead reached.

    With a period: `pairs` over the leads created in it, the median over the leads that
    entered `to_step` in it (docs/protocol.md)."""
    if payload.period is None:
        return [dict(row) async for row in ctx.queries.leads.conversion_stats(ctx.pool)]

    async def figures(period: Period) -> dict[str, Any]:
        rows = ctx.queries.reports.period_conversion_stats(ctx.pool, since=period.since, until=period.until)
        return {"pairs": [{**row, "filters": {
                    "reached_from": {"created": span(period), "reached": row["from_step"]},
                    "reached_to": {"created": span(period), "reached": row["to_step"]}}}
                          async for row in rows]}

    return await reported(resolve(payload.period, ctx.config.business.zone), payload.compare, figures)


def abandoned_leads_query(_: Context, payload: AbandonedLeads) -> tuple[tuple[str, str], dict[str, Any]]:
    """get_abandoned_leads' query and filters."""
    return ("leads", "abandoned_leads"), {"days": payload.days}


async def get_abandoned_leads(ctx: Context, payload: AbandonedLeads) -> Paged:
    """Unfinished leads with no activity for more than `days` days, oldest first."""
    after = decode_cursor(payload.cursor)
    size = payload.limit or ctx.config.limits.default_page_size
    rows = [row async for row in ctx.queries.leads.abandoned_leads(
        ctx.pool, **abandoned_leads_query(ctx, payload)[1], after_activity_at=after.at,
        after_id=after.id, page_size=size + 1)]
    return page_of(rows, size, key="last_activity_at", document="lead")


ACTIONS = ActionTable("leads", [
    read("get_all_leads", get_all_leads, AllLeads, topics={*LEAD_DOCUMENT, "meetings"}),  # filter.meeting
    read("get_lead_pipeline", get_lead_pipeline, Reported, topics={"leads", "users", "conversations"}),
    read("get_lead_with_complete_data", get_lead_with_complete_data, LeadId,
         topics={*LEAD_DOCUMENT, "meetings"}),
    write("update_lead_step", update_lead_step, UpdateLeadStep, changes={"leads"}),
    read("get_conversion_stats", get_conversion_stats, Reported, cached=True, topics={"leads"}),
    read("get_step_durations", get_step_durations, cached=True, topics={"leads", "conversations"}),
    read("get_abandoned_leads", get_abandoned_leads, AbandonedLeads, topics=LEAD_DOCUMENT),
])
