"""Authentication, roles and origins: no data leaves to anonymous or foreign clients."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests import factories
from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN, Client, open_client


async def test_no_token_means_unauthorized_until_login(daemon, db) -> None:
    conversation_id = await factories.conversation(db)
    async with open_client(daemon.url, token=None) as connection:
        client = Client(connection)
        error = await client.error("conversations", "update_agent_status",
                                   {"conversation_id": str(conversation_id), "enabled": False})
        assert error["code"] == "unauthorized"
        # Even unknown actions say unauthorized: an anonymous client learns nothing.
        assert (await client.error("leads", "get_all_leads"))["code"] == "unauthorized"
        assert await client.data("auth", "login", {"token": ADMIN_TOKEN}) == {
            "name": "test-admin", "role": "admin"}
        data = await client.data("conversations", "update_agent_status",
                                 {"conversation_id": str(conversation_id), "enabled": False})
        assert data["agent_enabled"] is False
    assert await db.fetchval("SELECT agent_enabled FROM conversations WHERE id = $1",
                             conversation_id) is False


async def test_wrong_login_token_is_refused_and_connection_stays(daemon, db) -> None:
    async with open_client(daemon.url, token=None) as connection:
        client = Client(connection)
        assert (await client.error("auth", "login", {"token": "guess"}))["code"] == "unauthorized"
        assert (await client.error("auth", "login", {}))["code"] == "unauthorized"
        assert (await client.data("auth", "login", {"token": VIEWER_TOKEN}))["role"] == "viewer"


async def test_repeated_failed_logins_close_the_connection(daemon) -> None:
    async with open_client(daemon.url, token=None) as connection:
        client = Client(connection)
        for _ in range(5):
            await client.send("auth", "login", {"token": "guess"})
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.receive()
        assert closed.value.rcvd.code == 1008


async def test_wrong_bearer_token_is_refused_at_handshake(daemon) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_client(daemon.url, token="not-a-token"):
            pass
    assert refused.value.response.status_code == 401


async def test_no_login_within_the_timeout_closes_with_1008(daemon) -> None:
    # The test daemon's login timeout is 1 s (config.toml's default is 10 s).
    async with open_client(daemon.url, token=None) as connection:
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await connection.recv()
        assert closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason == "authentication timeout"


async def test_authenticated_clients_are_not_timed_out(daemon, admin: Client) -> None:
    await asyncio.sleep(1.5)
    assert (await admin.error("x", "y"))["code"] == "unknown_action"


async def test_viewer_cannot_write(viewer: Client, db) -> None:
    conversation_id = await factories.conversation(db)
    error = await viewer.error("conversations", "update_agent_status",
                               {"conversation_id": str(conversation_id), "enabled": False})
    assert error == {"code": "forbidden", "message": "this action needs the admin role",
                     "details": {"required_role": "admin", "role": "viewer"}}
    assert await db.fetchval("SELECT agent_enabled FROM conversations WHERE id = $1",
                             conversation_id) is True


async def test_foreign_origin_is_refused(daemon) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_client(daemon.url, origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_allowed_origin_connects(daemon, db) -> None:
    async with open_client(daemon.url, origin="http://dashboard.test") as connection:
        assert (await Client(connection).error("x", "y"))["code"] == "unknown_action"


async def test_tokens_never_reach_the_log(daemon, admin: Client) -> None:
    await admin.error("x", "y")
    async with open_client(daemon.url, token=None) as connection:
        await Client(connection).data("auth", "login", {"token": ADMIN_TOKEN})
    log = daemon.log()
    assert ADMIN_TOKEN not in log and VIEWER_TOKEN not in log
