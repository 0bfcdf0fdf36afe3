"""Every action the daemon serves rejects bad input the same way, and every write is admin-only.

The only admin-only read is the trail.

The list comes from the handlers' own tables, so a new action is covered the day it is added.
"""

from __future__ import annotations

import msgspec
import pytest

from tests.conftest import Client
from wsd.handlers import ALL_TABLES

ACTIONS = [(table.resource, action) for table in ALL_TABLES for action in table.actions]
IDS = [f"{resource}.{action.name}" for resource, action in ACTIONS]


@pytest.mark.parametrize("resource, action", ACTIONS, ids=IDS)
async def test_an_unknown_payload_field_is_invalid_payload(admin: Client, resource, action) -> None:
    error = await admin.error(resource, action.name, {"definitely_not_a_field": 1})
    assert error["code"] == "invalid_payload"
    required = [f.name for f in msgspec.structs.fields(action.payload_type) if f.required]
    # A missing required field may be reported before the unknown one.
    assert error["details"]["field"] in ("definitely_not_a_field", *required)
    assert (await admin.error("nothing", "here"))["code"] == "unknown_action"   # still usable


@pytest.mark.parametrize("resource, action", ACTIONS, ids=IDS)
async def test_a_payload_that_is_not_an_object_is_bad_request(admin: Client, resource, action) -> None:
    reply = await admin.request(resource, action.name, ["not", "an", "object"])
    assert reply["payload"]["code"] == "bad_request"
    assert reply["payload"]["details"] == {"fields": {"payload": "must be a JSON object"}}


WRITES = [(r, a) for r, a in ACTIONS if a.writes]


@pytest.mark.parametrize("resource, action", WRITES, ids=[f"{r}.{a.name}" for r, a in WRITES])
async def test_viewers_cannot_call_writes(viewer: Client, resource, action) -> None:
    error = await viewer.error(resource, action.name, {})
    assert error["code"] == "forbidden" and error["details"]["required_role"] == "admin"


def test_every_write_is_admin_only_and_every_read_but_the_trail_is_not() -> None:
    assert WRITES, "the tables declare writes"
    assert all(action.role == "admin" for _, action in WRITES)
    admin_reads = {(resource, action.name) for resource, action in ACTIONS
                   if not action.writes and action.role == "admin"}
    assert admin_reads == {("trail", "get_trail")}   # who did what: an admin's read
