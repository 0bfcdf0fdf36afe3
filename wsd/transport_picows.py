"""wsd on picows (`server.transport = "picows"`, the optional `picows` extra).

picows parses frames in Cython and hands each to a callback (`WSListener.on_ws_frame`)
instead of a coroutine per connection reading `recv()`; `ConnectionHandler.on_frame` is already
synchronous (it spawns its own tasks), so the callback calls it directly.

The HTTP handshake is not picows's: picows's listener factory is synchronous and is not told
the peer's address, while `ConnectionHandler.process_request` is a coroutine (GET /metrics awaits
the outbox query) and needs the address (failed-login throttle, /metrics access). So each
TCP connection starts with `_HttpFront`, which runs websockets' own sans-I/O handshake
(`websockets.server.ServerProtocol`: the same parser, limits, 4xx answers and upgrade
checks as the default transport) and awaits `process_request` exactly as websockets does.
Only an accepted upgrade is handed to picows: the transport switches to a picows
`WSProtocol`, which is fed a minimal upgrade request carrying the client's key (already
validated) and the bytes that followed it, answers 101 with wsd's headers, and from then on
delivers frames to `PicowsConnection`.

What picows does not do, `PicowsConnection` does as websockets does: fragmented messages
are reassembled (limit: `server.max_message_bytes` over the whole message, 1009), Text
frames must be UTF-8 (1007), a client's close frame is echoed, a close sent by wsd waits
`CLOSE_SECONDS` for the client's, keepalive pings every `server.ping_interval_seconds` close
with 1011 when no pong comes within `server.ping_timeout_seconds`, and a client that is behind
on its replies is not read (`pause_reading`) until it catches up. Both transports count a
connection against `server.max_handshakes` until its handshake ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Callable, cast

import structlog
from picows import (WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeResponse,
                    WSUpgradeResponseWithListener)
from picows.picows import WSAutoPingStrategy
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in picows's stubs
from websockets.exceptions import PayloadTooBig
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from wsd.config import ServerConfig
from wsd.transport import (CLOSE_SECONDS, CloseCode, ConnectionHandler, Peer, ServerPort,
                           abort_socket, unsent_bytes)

__all__ = ["PicowsConnection", "PicowsListening"]

log = structlog.get_logger("wsd.transport_picows")

POLICY_VIOLATION = CloseCode.POLICY_VIOLATION
GOING_AWAY = CloseCode.GOING_AWAY
INVALID_DATA = CloseCode.INVALID_DATA
MESSAGE_TOO_BIG = CloseCode.MESSAGE_TOO_BIG
INTERNAL_ERROR = CloseCode.INTERNAL_ERROR
TEXT, BINARY, CONTINUATION, CLOSE, PONG = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION,
                                           WSMsgType.CLOSE, WSMsgType.PONG)


class PicowsListening(ServerPort):
    """The listening socket: `_HttpFront` per accepted connection, `PicowsConnection` per
    upgraded one."""

    def __init__(self, handler: ConnectionHandler, settings: ServerConfig) -> None:
        self.wsd = handler
        self.settings = settings
        self.serving = False
        self.fronts: set[_HttpFront] = set()
        self.connections: set[PicowsConnection] = set()
        self._server: asyncio.Server | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.picows_logger = _PicowsLog(logging.getLogger("picows.server"), {})

    async def start(self, reuse_port: bool) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _HttpFront(self), settings.host, settings.port,
            backlog=settings.listen_backlog, reuse_port=reuse_port)
        self.serving = True

    def stop_accepting(self) -> None:
        assert self._server is not None
        self.serving = False
        self._server.close()

    def close_connections(self) -> None:
        self.serving = False   # handshakes still running get 503, as on websockets
        for connection in list(self.connections):
            if connection.is_open():
                task = asyncio.create_task(connection.close(GOING_AWAY))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def wait_closed(self) -> None:
        while self.connections or self.fronts:
            await asyncio.wait([*(connection.ended for connection in self.connections),
                                *(front.ended for front in self.fronts)])

    def abort_remaining(self) -> int:
        connections, fronts = list(self.connections), list(self.fronts)
        for connection in connections:
            connection.abort()
        for front in fronts:
            front.abort()
        return len(connections) + len(fronts)

    def protocol_for(self, listener: PicowsConnection, response: Response) -> WSProtocol:
        """picows's protocol for an accepted upgrade: its 101 carries the headers websockets
        would have sent (Date, Server) besides picows's own upgrade headers."""
        extra = [(name, value) for name, value in response.headers.raw_items()
                 if name.lower() not in ("upgrade", "connection", "sec-websocket-accept")]
        upgrade = WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(extra), listener)

        def factory(request: Any) -> WSUpgradeResponseWithListener:
            return upgrade

        settings = self.settings
        protocol: WSProtocol = WSProtocol(
            None, None, False, factory, self.picows_logger,
            True,                      # disconnect_on_exception
            None,                      # handshake timeout: the front already had its own
            False, settings.ping_interval_seconds, settings.ping_timeout_seconds,
            WSAutoPingStrategy.PING_PERIODICALLY,   # picows's pings off: ours, as websockets's
            True,                      # answer pings with pongs
            settings.max_message_bytes,  # larger frames: picows closes with 1009
            None,                      # extra headers (client side only)
            16 * 1024)                 # initial read buffer
        return protocol


class _HttpFront(asyncio.Protocol):
    """A connection in its HTTP handshake: websockets' sans-I/O handshake, wsd's checks."""

    def __init__(self, listening: PicowsListening) -> None:
        self.listening = listening
        self.protocol = ServerProtocol(origins=None, extensions=[], subprotocols=None,
                                       max_size=listening.settings.max_message_bytes)
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._timeout: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._peer: Any = None
        self._counted = False   # against server.max_handshakes, until `_end`

    # -- wsd.transport.Handshake ---------------------------------------------------------------

    @property
    def remote_address(self) -> Any:
        return self._peer

    def respond(self, status: Any, text: str) -> Response:
        return self.protocol.reject(status, text)

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)   # uvloop's is not a subclass
        self._peer = transport.get_extra_info("peername")
        wsd = self.listening.wsd
        if not wsd.handshake_started(self._peer):   # past server.max_handshakes
            self.abort()
            return
        self._counted = True
        self.listening.fronts.add(self)
        self._timeout = asyncio.get_running_loop().call_later(
            self.listening.settings.open_timeout_seconds, self.abort)

    def data_received(self, data: bytes) -> None:
        if self._task is not None:      # the request is in; more bytes wait for the upgrade
            self.received += data
            return
        self.received += data
        self.protocol.receive_data(data)
        events = self.protocol.events_received()
        if events:
            request = events[0]
            assert isinstance(request, Request)
            assert self.transport is not None
            self.transport.pause_reading()
            self._task = asyncio.create_task(self._handshake(request))
            self._task.add_done_callback(_log_failure)
        elif self.protocol.handshake_exc is not None:   # refused by websockets (400, 414, 431)
            self._finish()

    def eof_received(self) -> bool | None:
        if self._task is None:
            self.abort()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def abort(self) -> None:
        abort_socket(self.transport)
        self._end()

    # -- the handshake -------------------------------------------------------------------------

    async def _handshake(self, request: Request) -> None:
        """What websockets' `ServerConnection.handshake` does, with picows taking over on 101."""
        protocol = self.protocol
        try:
            response = await self.listening.wsd.process_request(self, request)
        except Exception as exc:
            protocol.handshake_exc = exc
            logging.getLogger("websockets.server").error("process_request failed", exc_info=True)
            response = protocol.reject(500, "Failed to open a WebSocket connection.\n"
                                            "See server log for more information.\n")
        if response is None:
            response = protocol.accept(request)
        response.headers["Server"] = "wsd"
        if response.status_code == 101 and not self.listening.serving:
            response = protocol.reject(503, "Server is shutting down.\n")
        transport = self.transport
        if transport is None or transport.is_closing() or self.ended.done():
            return
        if response.status_code != 101:
            protocol.send_response(response)
            self._finish()
            return
        self._upgrade(request, response, transport)

    def _finish(self) -> None:
        """Write what websockets' protocol has to send (a refusal), then close."""
        assert self.transport is not None
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
        self.transport.close()
        self._end()

    def _upgrade(self, request: Request, response: Response, transport: asyncio.Transport) -> None:
        """Hand the connection to picows: its protocol reads a minimal upgrade request with
        the client's key (websockets' `accept` has checked the real one), answers 101 and
        parses every frame after it."""
        received = bytes(self.received)
        head_end = received.index(b"\r\n\r\n") + 4
        key = request.headers["Sec-WebSocket-Key"].encode("ascii")
        upgrade = (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
        listener = PicowsConnection(self.listening, request, self._peer)
        ws_protocol = self.listening.protocol_for(listener, response)
        self._end()
        transport.set_protocol(ws_protocol)
        ws_protocol.connection_made(transport)
        _feed(ws_protocol, upgrade + received[head_end:])
        if not transport.is_closing():
            transport.resume_reading()

    def _end(self) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        self.listening.fronts.discard(self)
        if self._counted:
            self._counted = False
            self.listening.wsd.handshake_ended()
        if not self.ended.done():
            self.ended.set_result(None)


class _PicowsLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows's logger for wsd's connections. A frame the client got wrong (too large,
    malformed) is the client's fault, not an error of wsd's: picows logs it at ERROR,
    websockets at DEBUG; here it is INFO (below the daemon's WARNING for libraries). One
    adapter for every connection also spares picows a `Logger` per connection."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level >= logging.ERROR and isinstance(msg, str) and msg.startswith("WS parser error"):
            level = logging.INFO
        super().log(level, msg, *args, **kwargs)


def _feed(protocol: asyncio.BufferedProtocol, data: bytes) -> None:
    """Give `protocol` bytes as if the socket had just read them."""
    view = memoryview(data)
    while view:
        buffer = memoryview(protocol.get_buffer(len(view)))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


class PicowsConnection(WSListener):
    """One upgraded client: picows's listener and wsd's `transport.Connection` in one."""

    _ws: WSTransport   # set by on_ws_connected, with _raw

    def __init__(self, listening: PicowsListening, request: Request, remote_address: Any) -> None:
        super().__init__()
        self.listening = listening
        self.request: Request | None = request
        self._remote_address = remote_address
        self._raw: asyncio.Transport | None = None
        self._open = False
        self._session: Peer | None = None
        self._message: list[bytes] | None = None   # the fragments of a message being read
        self._message_text = False
        self._message_size = 0
        self._held: deque[str | bytes] | None = None   # frames read while the client is behind
        self._timers: list[asyncio.TimerHandle] = []
        self._ping_timer: asyncio.TimerHandle | None = None
        self._awaiting_pong = False
        self._loop = asyncio.get_running_loop()
        self._on_frame = listening.wsd.on_frame
        self._settings = listening.settings
        self.ended: asyncio.Future[None] = self._loop.create_future()

    # -- wsd.transport.Connection --------------------------------------------------------------

    @property
    def remote_address(self) -> Any:
        return self._remote_address

    def is_open(self) -> bool:
        return self._open

    def write_text(self, message: bytes) -> None:
        if self._open:
            try:
                self._ws.send(TEXT, message)
            except Exception:  # the socket failed under us: on_ws_disconnected cleans up
                pass

    def unread_bytes(self) -> int:
        return unsent_bytes(self._raw)

    def abort(self) -> None:
        abort_socket(self._raw)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._close_soon(code, reason)
        await asyncio.wait([self.ended], timeout=2 * CLOSE_SECONDS)

    # -- picows's callbacks ----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._ws = transport
        self._raw = transport.underlying_transport
        self._open = True
        self.listening.connections.add(self)
        wsd = self.listening.wsd
        session = self._session = wsd.open(self)
        if session.login_deadline is not None:
            self._later(session.login_deadline - self._loop.time(), self._login_deadline)
        self._ping_timer = self._loop.call_later(self._settings.ping_interval_seconds, self._ping)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if not self._open:
            if kind is CLOSE:   # the client's answer to our close: the handshake is done
                transport.disconnect()
            return
        if kind is TEXT and frame.fin:
            try:
                self._deliver(frame.get_payload_as_utf8_text())
            except UnicodeDecodeError as error:
                self._fail(INVALID_DATA, f"{error.reason} at position {error.start}")
        elif kind is BINARY and frame.fin:
            self._deliver(frame.get_payload_as_bytes())
        elif kind is CLOSE:
            self._open = False
            transport.send(CLOSE, frame.get_payload_as_bytes())   # echoed, as websockets does
            transport.disconnect()
        elif kind is PONG:
            self._awaiting_pong = False
        elif kind is TEXT or kind is BINARY or kind is CONTINUATION:
            self._fragment(kind, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._open = False
        for timer in self._timers:
            timer.cancel()
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        self._held = None
        if self._session is not None:
            self.listening.wsd.close(self._session)
        self.listening.connections.discard(self)
        if not self.ended.done():
            self.ended.set_result(None)

    # -- reading ---------------------------------------------------------------------------------

    def _deliver(self, frame: str | bytes) -> None:
        """One message to `on_frame`, unless the client is behind on its replies: then it
        waits, with every message read after it, and the socket is not read until it
        catches up (websockets' read loop stops calling recv() then)."""
        session = self._session
        assert session is not None
        if self._held is not None:
            self._held.append(frame)
            return
        if session.is_behind():
            self._held = deque((frame,))
            if self._raw is not None:
                self._raw.pause_reading()
            task = self._loop.create_task(self._catch_up(session))
            task.add_done_callback(_log_failure)
            return
        if reason := self._on_frame(session, frame):
            self._close_soon(POLICY_VIOLATION, reason)

    async def _catch_up(self, session: Peer) -> None:
        held = self._held
        assert held is not None
        while held and self._open:
            await session.caught_up()
            if not self._open:
                break
            if reason := self._on_frame(session, held.popleft()):
                self._close_soon(POLICY_VIOLATION, reason)
                break
        self._held = None
        if self._open and self._raw is not None and not self._raw.is_closing():
            self._raw.resume_reading()

    def _fragment(self, kind: WSMsgType, frame: WSFrame) -> None:
        """A fragmented message, reassembled as websockets does; its limit is the whole
        message's size."""
        if kind is not CONTINUATION:
            self._message, self._message_text, self._message_size = [], kind is TEXT, 0
        elif self._message is None:
            self._fail(1002, "unexpected continuation frame")
            return
        limit = self.listening.settings.max_message_bytes
        size = self._message_size + frame.payload_size
        if size > limit:
            self._fail(MESSAGE_TOO_BIG, str(PayloadTooBig(frame.payload_size, limit,
                                                          self._message_size)))
            return
        self._message.append(frame.get_payload_as_bytes())
        self._message_size = size
        if not frame.fin:
            return
        data, self._message = b"".join(self._message), None
        if not self._message_text:
            self._deliver(data)
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            self._fail(INVALID_DATA, f"{error.reason} at position {error.start}")
            return
        self._deliver(text)

    # -- closing, timers -------------------------------------------------------------------------

    def _close_soon(self, code: int, reason: str) -> None:
        """A close frame now; the client gets `CLOSE_SECONDS` to answer with its own, then the
        socket is closed (and aborted after as long again), as websockets' `close` does."""
        if not self._open:
            return
        self._open = False
        self._ws.send_close(WSCloseCode(code), reason.encode())
        self._later(CLOSE_SECONDS, self._ws.disconnect)
        self._later(2 * CLOSE_SECONDS, self.abort)

    def _fail(self, code: int, reason: str) -> None:
        """A protocol error: a close frame and the socket closed at once (websockets' fail)."""
        if self._raw is None:
            return
        if self._open:
            self._open = False
            self._ws.send_close(WSCloseCode(code), reason.encode())
        self._ws.disconnect()

    def _login_deadline(self) -> None:
        if self._session is not None and self._session.login_deadline is not None:
            self._close_soon(POLICY_VIOLATION, "authentication timeout")

    def _ping(self) -> None:
        """websockets' keepalive: a ping every `server.ping_interval_seconds`; no pong within
        `server.ping_timeout_seconds` of one closes the connection with 1011."""
        if not self._open:
            return
        self._awaiting_pong = True
        self._ws.send_ping(b"")
        self._ping_timer = self._loop.call_later(self._settings.ping_timeout_seconds, self._pong_due)

    def _pong_due(self) -> None:
        if not self._open:
            return
        if self._awaiting_pong:
            self._fail(INTERNAL_ERROR, "keepalive ping timeout")
            return
        settings = self._settings
        self._ping_timer = self._loop.call_later(
            max(settings.ping_interval_seconds - settings.ping_timeout_seconds, 0.0), self._ping)

    def _later(self, seconds: float, callback: Callable[[], object]) -> None:
        self._timers.append(self._loop.call_later(seconds, callback))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("picows connection task failed", error=repr(task.exception()))

