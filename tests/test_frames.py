"""Replies are Text frames, as a browser's `JSON.parse(event.data)` needs."""

from __future__ import annotations

from tests.conftest import Client


async def next_frame(client: Client) -> str | bytes:
    """The next reply frame as received, skipping pushed events."""
    while True:
        frame = await client.connection.recv()
        if '"type":"event"' not in (frame if isinstance(frame, str) else frame.decode()):
            return frame


async def test_replies_and_errors_are_text_frames(admin: Client, db) -> None:
    await admin.connection.send('{"resource": "x", "action": "y", "id": 1}')
    reply = await next_frame(admin)
    assert isinstance(reply, str) and reply.startswith('{"type":"error"')
    await admin.connection.send('{"resource": "dashboard", "action": "get_dashboard_stats", "id": 2}')
    assert isinstance(await next_frame(admin), str)
