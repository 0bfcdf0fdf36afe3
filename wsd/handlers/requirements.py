"""requirements: what a lead wants built — app type, deadline, features and integrations.

The actions' roles and payloads: docs/protocol.md's generated reference (`wsd schema`).

Features and integrations are the same kind of item in two tables; the handlers below are
written once and bound to each table's queries by `ITEM_KINDS`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import asyncpg
import msgspec

from wsd.config import LimitsConfig
from wsd.actions import ActionTable, Context, Handler, IdempotencyKey, Payload, read, write
from wsd.errors import Conflict, InvalidPayload, NotFound
from wsd.fields import trimmed, trimmed_text
from wsd.periods import Period, Reported, reported, resolve, span
from wsd.queries import Executor

# Lengths are checked once trimmed (wsd.fields.trimmed), so they are not msgspec bounds.
APP_TYPE_LENGTH, NAME_LENGTH = 50, 200
AppType = Annotated[str, trimmed_text(APP_TYPE_LENGTH)]
ItemName = Annotated[str, trimmed_text(NAME_LENGTH, "; unique per requirements once case and white "
                                                    "space are folded")]
Description = Annotated[str, msgspec.Meta(max_length=2000)]

ITEM_KINDS = ("features", "integrations")


class NewItem(Payload):
    name: ItemName
    description: Description = ""

    def __post_init__(self) -> None:
        self.name = trimmed(self.name, "name", NAME_LENGTH)


# One list's bound in the schema; both lists together are held to limits.max_package_items.
Items = Annotated[list[NewItem], msgspec.Meta(extra_json_schema={"maxItems": LimitsConfig().max_package_items})]


class LeadId(Payload):
    lead_id: uuid.UUID


class RequirementPackage(Payload):
    """Beyond this schema: features and integrations together at most
    limits.max_package_items (200 by default; `invalid_payload` on `features`), and no two
    items of one list with the same name once case and white space are folded
    (`invalid_payload` on the second's `name`)."""

    lead_qualification_id: uuid.UUID
    app_type: AppType
    deadline: dt.date | None = None
    features: Items = []
    integrations: Items = []
    idempotency_key: IdempotencyKey = None

    def __post_init__(self) -> None:
        self.app_type = trimmed(self.app_type, "app_type", APP_TYPE_LENGTH)


class RequirementsChange(Payload):
    # Something to change: `requirements_id` and at least one more field.
    schema_rules = {"minProperties": 2}

    requirements_id: uuid.UUID
    app_type: AppType | msgspec.UnsetType = msgspec.UNSET
    deadline: dt.date | None | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if not isinstance(self.app_type, msgspec.UnsetType):
            self.app_type = trimmed(self.app_type, "app_type", APP_TYPE_LENGTH)


class AddItem(NewItem, kw_only=True):
    requirements_id: uuid.UUID
    idempotency_key: IdempotencyKey = None


class Popular(Reported):
    """Beyond this schema: `compare` needs a `period`, a custom period's `to` is on or after
    its `from` and at most 366 days after (`invalid_payload` on the field)."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10


def _refuse_oversized(package: RequirementPackage, limit: int) -> None:
    if len(package.features) + len(package.integrations) > limit:
        raise InvalidPayload(f"a package carries at most {limit} features and integrations together",
                             {"field": "features", "limit": limit})


async def _refuse_duplicates(ctx: Context, connection: Executor,
                             package: RequirementPackage) -> None:
    """Two items of one kind in one payload with the same name are a mistake in the payload
    (`invalid_payload`), not a clash with stored data; the database's normalized_name()
    decides what "the same" is, as its unique index does."""
    for kind in ITEM_KINDS:
        items: list[NewItem] = getattr(package, kind)
        if len(items) < 2:
            continue
        pair = await ctx.queries.requirements.duplicate_names(connection, names=[i.name for i in items])
        if pair is not None:
            first, second = pair["first"], pair["second"]
            raise InvalidPayload(f"{kind} {first} and {second} have the same name",
                                 {"field": f"{kind}[{second}].name", "name": items[second].name})


async def _insert_items(ctx: Context, connection: Executor, kind: str,
                        requirements_id: uuid.UUID, items: list[NewItem]) -> list[dict[str, Any]]:
    insert = getattr(ctx.queries.requirements, f"insert_{kind}")
    return [dict(row) async for row in insert(
        connection, requirements_id=requirements_id, names=[i.name for i in items],
        descriptions=[i.description for i in items])]


async def get_requirements_by_lead(ctx: Context, payload: LeadId) -> dict[str, Any] | None:
    """The lead's requirements with features and integrations; null when it has none yet."""
    row = await ctx.queries.requirements.requirements_by_lead(ctx.pool, lead_id=payload.lead_id)
    if row is None:
        raise NotFound("no such lead", {"lead_id": str(payload.lead_id)})
    document: dict[str, Any] | None = row["requirements"]
    return document


async def create_requirement_package(ctx: Context, payload: RequirementPackage) -> dict[str, Any]:
    """Requirements, features and integrations in one transaction: all of it or none."""
    _refuse_oversized(payload, ctx.config.limits.max_package_items)
    queries, connection = ctx.queries.requirements, ctx.connection
    await _refuse_duplicates(ctx, connection, payload)
    try:
        requirements_id = await queries.insert_requirements(
            connection, lead_id=payload.lead_qualification_id, app_type=payload.app_type,
            deadline=payload.deadline)
    except asyncpg.UniqueViolationError:
        raise Conflict("this lead already has requirements; use update_requirements",
                       {"lead_qualification_id": str(payload.lead_qualification_id)}) from None
    if requirements_id is None:
        raise NotFound("no such lead", {"lead_qualification_id": str(payload.lead_qualification_id)})
    for kind in ITEM_KINDS:
        if getattr(payload, kind):
            await _insert_items(ctx, connection, kind, requirements_id, getattr(payload, kind))
    document: dict[str, Any] = await queries.requirements_by_id(connection, requirements_id=requirements_id)
    return document


async def update_requirements(ctx: Context, payload: RequirementsChange) -> dict[str, Any]:
    """Changes only the fields given; `deadline: null` clears the deadline."""
    if payload.app_type is msgspec.UNSET and payload.deadline is msgspec.UNSET:
        raise InvalidPayload("nothing to change: give app_type or deadline", {"field": None})
    queries, connection = ctx.queries.requirements, ctx.connection
    lead_id = await queries.update_requirements(
        connection, requirements_id=payload.requirements_id,
        app_type=None if payload.app_type is msgspec.UNSET else payload.app_type,
        set_deadline=payload.deadline is not msgspec.UNSET,
        deadline=None if payload.deadline is msgspec.UNSET else payload.deadline)
    if lead_id is None:
        raise NotFound("no such requirements", {"requirements_id": str(payload.requirements_id)})
    document: dict[str, Any] = await queries.requirements_by_id(
        connection, requirements_id=payload.requirements_id)
    return document


def _item_adder(kind: str) -> Handler:
    async def add_item(ctx: Context, payload: AddItem) -> dict[str, Any]:
        """Returns the created item {id, name, description}."""
        connection = ctx.connection
        try:
            [created] = await _insert_items(ctx, connection, kind, payload.requirements_id,
                                            [NewItem(name=payload.name, description=payload.description)])
        except asyncpg.ForeignKeyViolationError:
            raise NotFound("no such requirements",
                           {"requirements_id": str(payload.requirements_id)}) from None
        except asyncpg.UniqueViolationError:
            raise Conflict(f"these requirements already have {kind[:-1]} {payload.name!r}",
                           {"field": "name", "name": payload.name}) from None
        return created
    add_item.__name__ = add_item.__qualname__ = f"add_{kind[:-1]}"
    return add_item


def _popularity(kind: str) -> Handler:
    async def popular(ctx: Context, payload: Popular) -> list[dict[str, Any]] | dict[str, Any]:
        """Top names across all requirements {name, count, share}, most requested first.

        With a period: `items`, the names most often added in it, `share` over the
        requirements created in it."""
        if payload.period is None:
            return [dict(row) async for row in ctx.queries.requirements.popular_items(
                ctx.pool, kind=kind, top=payload.limit)]

        async def figures(period: Period) -> dict[str, Any]:
            rows = ctx.queries.reports.period_popular_items(
                ctx.pool, kind=kind, top=payload.limit, since=period.since, until=period.until)
            return {"items": [{**row, "filters": {"count": {wants: row["name"], "wanted": span(period)}}}
                              async for row in rows]}

        return await reported(resolve(payload.period, ctx.config.business.zone), payload.compare, figures)
    wants = "wants_feature" if kind == "features" else "wants_integration"
    popular.__name__ = popular.__qualname__ = f"get_popular_{kind}"
    return popular


ACTIONS = ActionTable("requirements", [
    read("get_requirements_by_lead", get_requirements_by_lead, LeadId, topics={"requirements"}),
    write("create_requirement_package", create_requirement_package, RequirementPackage,
          changes={"requirements"}),
    write("update_requirements", update_requirements, RequirementsChange, changes={"requirements"}),
    write("add_feature", _item_adder("features"), AddItem, changes={"requirements"}),
    write("add_integration", _item_adder("integrations"), AddItem, changes={"requirements"}),
    read("get_popular_features", _popularity("features"), Popular, cached=True, topics={"requirements"}),
    read("get_popular_integrations", _popularity("integrations"), Popular, cached=True,
         topics={"requirements"}),
])
