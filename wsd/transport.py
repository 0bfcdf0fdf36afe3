"""The seam between a WebSocket library and wsd: what each side may call of the other.

As websockets' `Server(handler, process_request=...)`: a transport owns the socket and the
frames and calls a `ConnectionHandler` (`WsdServer` implements it) for everything else.

- `ConnectionHandler`: what a transport calls (`process_request` for the HTTP handshake,
  `open` once upgraded, `on_frame` per message, `close` at the end).
- `Peer`: what a transport reads of the session `open` gave it (the login deadline, whether
  its client is behind on its replies and a wait until it catches up), so that neither rule
  is written twice.

- `Connection`: what a `Session` uses of its client's connection (is it open, write a Text
  frame without waiting, bytes written that the socket has not taken, abort, close).
- `Handshake`: what `ConnectionHandler.process_request` uses of a connection still in its HTTP
  handshake (the peer's address and `respond`); the request itself is websockets'
  `Request`, parsed by websockets' sans-I/O handshake on both transports, so every
  refusal, plain HTTP answer and upgrade error has the same status, headers and body.
- `Listening`: the listening side, for the port and shutdown.

Implementations: `wsd.transport_websockets` (the default) and `wsd.transport_picows`
(`server.transport = "picows"`, the optional `picows` extra: Cython frame layer); `wsd.app`
picks one (`wsd.transports.listening_for`). Close codes are websockets' `CloseCode`.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any, Callable, Protocol

from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from wsd.config import ServerConfig

__all__ = ["Connection", "ConnectionHandler", "Handshake", "Listening", "ListeningFactory", "Peer",
           "CloseCode", "text_frame", "unsent_bytes", "abort_socket", "CLOSE_SECONDS",
           "CAUGHT_UP_POLL", "ServerPort"]

# After the grace, clients get this long for the closing handshake before their sockets are
# aborted; with PostgreSQL's stop this keeps the exit within grace + 2 s.
CLOSE_SECONDS = 1.0
# How often a client that is behind on its replies is looked at again (`Peer.caught_up`).
CAUGHT_UP_POLL = 0.05


def text_frame(message: bytes) -> bytes:
    """One unfragmented, unmasked Text frame (RFC 6455 §5.2), as a server sends it.

    What websockets' `send_text` writes for the same message with no extension negotiated
    (the server turns compression off), for a tenth of its cost on the hot path.
    """
    length = len(message)
    if length < 126:
        return bytes((0x81, length)) + message
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big") + message
    return b"\x81\x7f" + length.to_bytes(8, "big") + message


def unsent_bytes(transport: asyncio.WriteTransport | None) -> int:
    """Bytes written to a connection's socket that it has not taken yet (0 once gone): how
    far behind its client reads, on either transport."""
    return transport.get_write_buffer_size() if transport is not None else 0


def abort_socket(transport: asyncio.WriteTransport | None) -> None:
    """Drop a connection's socket at once (no closing handshake); nothing when it is gone."""
    if transport is not None:
        transport.abort()


class Connection(Protocol):
    """One open WebSocket connection, as a `Session` sees it."""

    # The handshake's request (its Authorization header names the caller).
    request: Request | None

    @property
    def remote_address(self) -> Any: ...

    def is_open(self) -> bool:
        """True until a close frame was sent or received, or the socket went away."""
        ...

    def write_text(self, message: bytes) -> None:
        """Write `message` as one Text frame without waiting; nothing when not open."""
        ...

    def unread_bytes(self) -> int:
        """Bytes written for this client that its socket has not taken yet."""
        ...

    def abort(self) -> None:
        """Drop the socket now, without a closing handshake."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and wait (at most the close timeout) for the connection to end."""
        ...


class Handshake(Protocol):
    """A connection in its HTTP handshake, as `ConnectionHandler.process_request` sees it."""

    @property
    def remote_address(self) -> Any: ...

    def respond(self, status: HTTPStatus, text: str) -> Response:
        """A plain-text answer (Date, Connection: close, Content-Length, Content-Type)."""
        ...


class ServerPort:
    """`Listening.port` for a transport whose `_server` has `sockets` (asyncio's, websockets')."""

    _server: Any

    @property
    def port(self) -> int:
        """The port the first listening socket is bound to (`server.port = 0`: a free one)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])


class Listening(Protocol):
    """The listening socket and every connection it accepted."""

    async def start(self, reuse_port: bool) -> None:
        """Listen on `server.host`/`server.port`; `reuse_port`: SO_REUSEPORT (workers)."""
        ...

    @property
    def port(self) -> int: ...

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections stay."""
        ...

    def close_connections(self) -> None:
        """Close every open connection with 1001 (going away); handshakes still in progress
        are refused with 503."""
        ...

    async def wait_closed(self) -> None:
        """Until every connection has ended."""
        ...

    def abort_remaining(self) -> int:
        """Abort the sockets of connections still open; how many there were."""
        ...


class Peer(Protocol):
    """The session `ConnectionHandler.open` made for a connection, as its transport sees it."""

    @property
    def login_deadline(self) -> float | None:
        """The event loop time by which it must have logged in (close 1008 then); None once
        it has."""
        ...

    def is_behind(self) -> bool:
        """Its client has not taken its replies: read nothing more from it until `caught_up`."""
        ...

    async def caught_up(self) -> None:
        """Until its client has taken its replies, or the connection is no longer open."""
        ...


class ConnectionHandler(Protocol):
    """What a transport calls: the daemon's side of every connection."""

    async def process_request(self, connection: Handshake, request: Request) -> Response | None:
        """The HTTP handshake: a response ends it (plain HTTP, refusals), None upgrades."""
        ...

    def handshake_started(self, peer: Any) -> bool:
        """A TCP connection was accepted; False: close it at once (too many handshakes)."""
        ...

    def handshake_ended(self) -> None:
        """A counted handshake ended: upgraded, answered, timed out or dropped."""
        ...

    def open(self, connection: Connection) -> Peer:
        """An upgraded connection: its session."""
        ...

    def on_frame(self, peer: Any, frame: str | bytes) -> str | None:
        """One message; a reason when the connection must be closed with 1008."""
        ...

    def close(self, peer: Any) -> None:
        """The connection ended."""
        ...


# A transport: built with the handler it calls and the server settings, then `start`ed.
ListeningFactory = Callable[[ConnectionHandler, ServerConfig], Listening]
