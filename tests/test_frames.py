"""Replies are Text frames, as a browser's `JSON.parse(event.data)` needs."""

from __future__ import annotations

from tests.conftest import Client


async def test_replies_and_errors_are_text_frames(admin: Client, db) -> None:
    await admin.connection.send('{"resource": "x", "action": "y", "id": 1}')
    reply = await admin.connection.recv()
    assert isinstance(reply, str) and reply.startswith('{"type":"error"')
    await admin.connection.send('{"resource": "dashboard", "action": "get_dashboard_stats", "id": 2}')
    assert isinstance(await admin.connection.recv(), str)
