"""A restart of wsd with a meeting still pending: the new process pushes it, once.

In a module of its own: no other Outlook-enabled daemon may be running, or its worker
would push the meeting first.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Client, open_client, start_daemon
from tests.fake_graph import FakeGraph
from tests.test_meetings import at, booking, lead_at, next_weekday
from tests.test_outlook import eventually, outlook_settings, stored


async def test_restart_with_a_pending_meeting(postgres, db, tmp_path: Path) -> None:
    graph = FakeGraph()
    await graph.start()
    try:
        lead_id, user_id = await lead_at(db, "bant")
        graph.down = True
        first = start_daemon(tmp_path, postgres, outlook=outlook_settings(graph))
        async with open_client(first.url) as connection:
            meeting = await Client(connection).data("meetings", "create_meeting",
                                                    booking(lead_id, user_id, at(next_weekday(), 10)))
        assert meeting["sync_status"] == "pending"
        assert first.stop() == 0
        graph.down = False
        second = start_daemon(tmp_path, postgres, outlook=outlook_settings(graph))
        try:
            async def synced():
                return (await stored(db, meeting["id"]))["sync_status"] == "synced"
            await eventually(synced)
        finally:
            second.stop()
        assert len(graph.events) == 1
    finally:
        await graph.stop()
