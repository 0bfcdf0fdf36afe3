"""leads: the qualification pipeline, one lead's whole story, and manual step moves.

The actions' roles and payloads: docs/protocol.md's generated reference (`wsd schema`).

"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
import orjson

from wsd.dispatcher import ActionTable, Context, NoPayload, Paged, Payload, read, write
from wsd.errors import NotFound
from wsd.pagination import decode_cursor, page_of
from wsd.steps import LeadStep
from wsd.topics import Topic

# A lead document: the lead with its user, BANT, requirements and its conversation's agent
# switch; messages move its activity.
LEAD_DOCUMENT: frozenset[Topic] = frozenset({"leads", "users", "requirements", "messages", "conversations"})

PageSize = Annotated[int, msgspec.Meta(ge=1, le=1000)]
# Left out or null: the server's [limits] default_page_size; the reply's next_cursor says
# whether more follow.
DefaultedPageSize = Annotated[int, msgspec.Meta(ge=1, le=1000, description="left out or null: the server's "
                                                                         "[limits] default_page_size")] | None
SearchText = Annotated[str, msgspec.Meta(max_length=200, description="blank means no search")]


class AllLeads(Payload):
    limit: DefaultedPageSize = None
    cursor: str | None = None
    step: LeadStep | None = None
    search: SearchText | None = None

    def __post_init__(self) -> None:
        # An empty search box is the most common state of a frontend: it means "all leads".
        if self.search is not None and not self.search.strip():
            self.search = None


class LeadId(Payload):
    lead_id: uuid.UUID


class UpdateLeadStep(Payload):
    lead_id: uuid.UUID
    new_step: LeadStep


class AbandonedLeads(Payload):
    days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 7
    limit: DefaultedPageSize = None
    cursor: str | None = None


def all_leads_query(_: Context, payload: AllLeads) -> tuple[tuple[str, str], dict[str, Any]]:
    """get_all_leads' query (folder, name) and filters as its parameters (its export runs
    the same)."""
    return ("leads", "all_leads"), {"step": payload.step, "search": payload.search}


async def get_all_leads(ctx: Context, payload: AllLeads) -> Paged:
    """Leads newest first with user, bant_data and requirements joined, a page at a time."""
    after = decode_cursor(payload.cursor)
    size = payload.limit or ctx.config.limits.default_page_size
    rows = [row async for row in ctx.queries.leads.all_leads(
        ctx.pool, **all_leads_query(ctx, payload)[1], after_created_at=after.at,
        after_id=after.id, page_size=size + 1)]
    return page_of(rows, size, key="created_at", document="lead")


async def get_lead_pipeline(ctx: Context, _: NoPayload) -> list[dict[str, Any]]:
    """Every step in funnel order, even empty ones, so the board always has 7 columns."""
    return [dict(row) async for row in ctx.queries.leads.lead_pipeline(ctx.pool)]


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


async def get_conversion_stats(ctx: Context, _: NoPayload) -> list[dict[str, Any]]:
    """Step-to-step conversion over the furthest step each lead reached."""
    return [dict(row) async for row in ctx.queries.leads.conversion_stats(ctx.pool)]


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
    read("get_all_leads", get_all_leads, AllLeads, topics=LEAD_DOCUMENT),
    read("get_lead_pipeline", get_lead_pipeline, topics={"leads", "users", "conversations"}),
    read("get_lead_with_complete_data", get_lead_with_complete_data, LeadId,
         topics={*LEAD_DOCUMENT, "meetings"}),
    write("update_lead_step", update_lead_step, UpdateLeadStep, changes={"leads"}),
    read("get_conversion_stats", get_conversion_stats, cached=True, topics={"leads"}),
    read("get_abandoned_leads", get_abandoned_leads, AbandonedLeads, topics=LEAD_DOCUMENT),
])
