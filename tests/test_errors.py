"""The error codes no shipped action can provoke on purpose (internal, conflict, upstream_error),
checked through a real server on a real socket, with a table of test-only actions."""

from __future__ import annotations

import uuid
from typing import AsyncIterator

import pytest

from tests import factories
from tests.conftest import ADMIN_TOKEN, Client, open_client
from wsd.config import TokenEntry, load_config
from wsd.auth import hash_token
from wsd.database import create_pool, load_queries
from wsd.actions import Action, ActionTable, Payload
from wsd.dispatcher import Dispatcher
from wsd.errors import UpstreamError
from wsd.server import WsdServer


class UserEmail(Payload):
    user_id: uuid.UUID
    email: str


async def crash(ctx, payload) -> None:
    raise RuntimeError("secret internals: password=hunter2")


async def copy_email(ctx, payload: UserEmail) -> None:
    # users.email is not unique, but the users primary key is: insert the same id twice.
    await ctx.pool.execute("INSERT INTO users (id, full_name, email) "
                           "SELECT $1, full_name, email FROM users WHERE id = $1", payload.user_id)


async def graph_down(ctx, payload) -> None:
    raise UpstreamError("Outlook answered with an error", {"graph_code": "ErrorItemNotFound"})


TEST_TABLE = ActionTable("test", [
    Action("crash", crash),
    Action("duplicate_user", copy_email, UserEmail, role="admin"),
    Action("graph_down", graph_down),
])


@pytest.fixture
async def in_process(postgres, db) -> AsyncIterator[Client]:
    config = load_config(environ={"WSD_SERVER_PORT": "0"})
    config.auth.tokens = [TokenEntry(name="t", role="admin", sha256=hash_token(ADMIN_TOKEN))]
    pool = await create_pool(postgres, 1, 2)
    server = WsdServer(config, pool, load_queries(), Dispatcher([TEST_TABLE]))
    await server.start()
    try:
        async with open_client(f"ws://127.0.0.1:{server.port}/ws") as connection:
            yield Client(connection)
    finally:
        await server.shutdown()
        await pool.close()


async def test_unexpected_exceptions_are_internal_without_leaking(in_process: Client) -> None:
    reply = await in_process.request("test", "crash")
    assert reply["payload"] == {"code": "internal",
                                "message": "internal error; the server log has the details",
                                "details": {"request_id": reply["id"]}}
    assert "hunter2" not in str(reply)
    assert (await in_process.error("test", "graph_down"))["code"] == "upstream_error"


async def test_unique_violations_are_conflicts(in_process: Client, db) -> None:
    user_id = await factories.user(db)
    error = await in_process.error("test", "duplicate_user", {"user_id": str(user_id), "email": "x@y.z"})
    assert error == {"code": "conflict", "message": "a record with the same key already exists",
                     "details": {"constraint": "users_pkey"}}
    assert await db.fetchval("SELECT count(*) FROM users") == 1


def test_two_actions_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        Dispatcher([TEST_TABLE, TEST_TABLE])
