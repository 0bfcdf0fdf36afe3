"""A restart of wsd with a meeting still pending: the new process pushes it, once.

In a module of its own: no other Outlook-enabled daemon may be running, or its worker
would push the meeting first.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import start_daemon
from tests.fake_graph import FakeGraph
from tests.test_meetings import at, next_weekday
from tests.test_outlook import booked_while_graph_is_down, eventually, outlook_settings, synced


async def test_restart_with_a_pending_meeting(postgres, db, tmp_path: Path) -> None:
    graph = FakeGraph()
    await graph.start()
    try:
        graph.down = True
        first = start_daemon(tmp_path, postgres, outlook=outlook_settings(graph))
        meeting_id = await booked_while_graph_is_down(first.url, graph, db, at(next_weekday(), 10))
        assert first.stop() == 0
        graph.down = False
        second = start_daemon(tmp_path, postgres, outlook=outlook_settings(graph))
        try:
            await eventually(lambda: synced(db, meeting_id))
        finally:
            second.stop()
        assert len(graph.events) == 1
    finally:
        await graph.stop()
