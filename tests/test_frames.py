"""Replies are Text frames, as a browser's `JSON.parse(event.data)` needs."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from tests.conftest import Client
from wsd.transport import text_frame


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


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_text_frame_is_the_frame_websockets_would_write(length: int) -> None:
    """`Session.push` writes its frames itself: byte for byte what websockets' own
    serializer writes for a server's Text frame, at each of the three length encodings."""
    message = bytes(range(97, 123)) * (length // 26) + b"x" * (length % 26)
    expected = Frame(Opcode.TEXT, message).serialize(mask=False, extensions=[])
    assert text_frame(message) == expected
