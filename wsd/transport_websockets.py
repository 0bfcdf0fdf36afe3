"""wsd on websockets (the default transport): a coroutine per connection reads its frames.

`WsdConnection` is websockets' `ServerConnection` plus what `wsd.transport.Connection`
asks for, counted against `server.max_handshakes` from the TCP accept to the end of its
handshake; `WebsocketsListening` runs `serve` and the read loop, which hands every frame
to `ConnectionHandler.on_frame` and closes with 1008 when it says so.
"""

from __future__ import annotations

import asyncio
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from wsd.config import ServerConfig
from wsd.transport import (CLOSE_SECONDS, CloseCode, ConnectionHandler, ServerPort, abort_socket,
                           text_frame, unsent_bytes)

__all__ = ["WsdConnection", "WebsocketsListening"]


class WsdConnection(ServerConnection):
    """websockets' connection with the methods a `Session` uses."""

    wsd: ConnectionHandler   # set on the subclass each `WebsocketsListening` makes
    _handshaking = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """websockets starts the handshake's task here; past `server.max_handshakes` the
        socket is dropped at once (that task then ends without a word)."""
        super().connection_made(transport)
        if self.wsd.handshake_started(transport.get_extra_info("peername")):
            self._handshaking = True
        else:
            abort_socket(self.transport)

    def handshake_over(self) -> None:
        """The handshake ended (upgraded, or the connection is gone): counted no more."""
        if self._handshaking:
            self._handshaking = False
            self.wsd.handshake_ended()

    def connection_lost(self, exc: Exception | None) -> None:
        self.handshake_over()
        super().connection_lost(exc)

    def is_open(self) -> bool:
        return self.protocol.state is State.OPEN

    def write_text(self, message: bytes) -> None:
        """The frame goes straight to the transport (`text_frame`): websockets writes its own
        frames (pongs, close) as soon as it makes them, so nothing of its can be queued
        behind ours, and the order on the wire is the order of the calls. A closed or
        closing connection takes nothing, which is not an error."""
        if self.protocol.state is not State.OPEN:
            return
        try:
            self.transport.write(text_frame(message))
        except Exception:  # the socket failed under us: the read loop sees it and cleans up
            pass

    def unread_bytes(self) -> int:
        return unsent_bytes(self.transport)

    def abort(self) -> None:
        abort_socket(self.transport)


class WebsocketsListening(ServerPort):
    """`websockets.asyncio.server.serve` with wsd's options and read loop."""

    def __init__(self, handler: ConnectionHandler, settings: ServerConfig) -> None:
        self._wsd = handler
        self._settings = settings
        self._server: Server | None = None

    async def start(self, reuse_port: bool) -> None:
        settings = self._settings

        class Connection(WsdConnection):
            """A connection of this server (websockets makes one per TCP connection)."""

        Connection.wsd = self._wsd
        self._server = await serve(
            self._serve_connection, settings.host, settings.port,
            origins=None,  # checked in process_request: the page's own origin is allowed too
            process_request=self._wsd.process_request,
            create_connection=Connection,
            max_size=settings.max_message_bytes,
            # Small JSON frames: deflate costs ~64 KiB per connection. `text_frame` writes
            # frames without extensions: compression on would need `send_text` back.
            compression=None,
            ping_interval=settings.ping_interval_seconds,
            ping_timeout=settings.ping_timeout_seconds,   # then close 1011
            open_timeout=settings.open_timeout_seconds,
            close_timeout=CLOSE_SECONDS,
            backlog=settings.listen_backlog,
            reuse_port=reuse_port,
            server_header="wsd",
        )

    def stop_accepting(self) -> None:
        assert self._server is not None
        self._server.server.close()

    def close_connections(self) -> None:
        assert self._server is not None
        self._server.close()  # closes open connections with 1001 (going away)

    async def wait_closed(self) -> None:
        assert self._server is not None
        await self._server.wait_closed()

    def abort_remaining(self) -> int:
        """Every connection websockets still tracks, including those whose handler has
        returned but whose TCP close is stuck behind unread data."""
        assert self._server is not None
        stuck = list(self._server.all_connections)
        for connection in stuck:
            connection.transport.abort()
        return len(stuck)

    async def _serve_connection(self, connection: ServerConnection) -> None:
        assert isinstance(connection, WsdConnection)
        connection.handshake_over()
        wsd = self._wsd
        session = wsd.open(connection)
        try:
            while True:
                if session.login_deadline is not None:
                    try:
                        async with asyncio.timeout_at(session.login_deadline):
                            frame = await connection.recv()
                    except TimeoutError:
                        if session.login_deadline is None:   # signed in meanwhile (a task)
                            continue   # websockets' recv() may be cancelled safely
                        await connection.close(CloseCode.POLICY_VIOLATION, "authentication timeout")
                        return
                else:
                    if session.is_behind():   # read nothing more until it takes its replies
                        await session.caught_up()
                    frame = await connection.recv()
                if reason := wsd.on_frame(session, frame):
                    await connection.close(CloseCode.POLICY_VIOLATION, reason)
                    return
        except ConnectionClosed:
            pass
        finally:
            wsd.close(session)
