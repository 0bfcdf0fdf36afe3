"""wsd on picows (`server.transport = "picows"`): the core of the protocol on a daemon started
with it, so the default run of the suite covers the optional transport too. The whole suite
runs on picows with `WSD_SERVER_TRANSPORT=picows make test` (tests/conftest.py writes it into
every test daemon's config)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests import factories
from tests.conftest import ADMIN_TOKEN, Client, Daemon, open_client, start_daemon


@pytest.fixture(scope="module")
def picows_daemon(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = start_daemon(tmp_path_factory.mktemp("picows"), postgres, cache_ttl=2.0,
                           transport="picows")
    yield running
    assert running.stop() == 0


@pytest.fixture
async def picows_admin(picows_daemon: Daemon, db: Any) -> AsyncIterator[Client]:
    async with open_client(picows_daemon.url) as connection:
        yield Client(connection)


async def test_the_daemon_runs_on_picows(picows_daemon: Daemon) -> None:
    assert '"transport":"picows"' in picows_daemon.log().replace(" ", "")
    assert picows_daemon.http("/healthz") == (200, "ok\n")
    status, _ = picows_daemon.http("/")
    assert status == 200


async def test_login_cached_and_point_reads_and_an_error_envelope(picows_daemon: Daemon, db: Any) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    lead_id = await factories.lead(db, [("start", now - dt.timedelta(days=2), "agent"),
                                        ("consent", now - dt.timedelta(days=1), "agent")],
                                   full_name="Paula Ortega")
    async with open_client(picows_daemon.url, token=None) as connection:
        client = Client(connection)
        assert (await client.error("leads", "get_all_leads"))["code"] == "unauthorized"
        assert await client.data("auth", "login", {"token": ADMIN_TOKEN}) == {
            "name": "test-admin", "role": "admin"}
        first = await client.data("dashboard", "get_dashboard_stats")
        assert await client.data("dashboard", "get_dashboard_stats") == first   # from the cache
        lead = await client.data("leads", "get_lead_with_complete_data", {"lead_id": str(lead_id)})
        assert lead["id"] == str(lead_id) and lead["current_step"] == "consent"
        assert lead["user"]["full_name"] == "Paula Ortega"
        error = await client.error("leads", "no_such_action")
        assert error["code"] == "unknown_action"
        reply = await client.request("leads", "get_lead_with_complete_data", {"lead_id": "x"})
        assert reply["type"] == "error" and reply["payload"]["code"] == "invalid_payload"
        await connection.send("not json")
        assert (await client.next_reply())["payload"]["code"] == "bad_json"


async def test_handshake_refusals_and_closes(picows_daemon: Daemon, picows_admin: Client) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_client(picows_daemon.url, token="not-a-token"):
            pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"] == 'Bearer realm="wsd"'
    assert refused.value.response.body == b"invalid token\n"
    with pytest.raises(InvalidStatus) as refused:
        async with open_client(picows_daemon.url, origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with open_client(picows_daemon.url, token=None) as connection:
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await connection.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "authentication timeout"
    async with open_client(picows_daemon.url) as connection:
        await connection.send('{"resource": "x", "action": "y", "payload": "' + "a" * 70_000 + '"}')
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await connection.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert (await picows_admin.data("auth", "login", {"token": ADMIN_TOKEN}))["role"] == "admin"
