"""The WebSocket server: handshake checks, the per-connection read loop, and shutdown.

A request flows: frame → `parse_request` → auth/limits → `Dispatcher.lookup` → a task per
request running `Dispatcher.dispatch` → one encoder → the socket. Requests on one connection
run concurrently; replies carry the request id, so a slow action never holds up a fast one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from wsd.auth import TokenBook, bearer_token
from wsd.config import Config
from wsd.dispatcher import Action, Caller, Context, Dispatcher, Paged
from wsd.errors import InternalError, RateLimited, Unauthorized, Unavailable, WsdError
from wsd.metrics import RequestStats
from wsd.protocol import Request as WsdRequest
from wsd.protocol import error_reply, event_message, parse_request, success_reply

__all__ = ["WsdServer", "Session"]

log = structlog.get_logger("wsd.server")

LOGIN = ("auth", "login")
MAX_FAILED_LOGINS = 5
POLICY_VIOLATION = 1008


@dataclass(eq=False)
class Session:
    """One client connection: who it is and what it has in flight."""

    connection: ServerConnection
    caller: Caller | None = None
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    failed_logins: int = 0

    async def send(self, message: bytes) -> None:
        """Send one encoded message; a client that went away is not an error."""
        try:
            # orjson's UTF-8 bytes go out as a Text frame (browsers parse text, not Blobs)
            # without a decode here and an encode in websockets.
            await self.connection.send(message, text=True)
        except ConnectionClosed:
            pass


class WsdServer:
    """Serves the dispatcher's actions over WebSocket, plus /healthz and /readyz."""

    def __init__(self, config: Config, pool: Any, queries: Any, dispatcher: Dispatcher,
                 services: dict[str, Any] | None = None) -> None:
        self.config = config
        self.pool = pool
        self.queries = queries
        self.dispatcher = dispatcher
        self.services = {"runtime": self.runtime_snapshot, **(services or {})}
        self.tokens = TokenBook(config.auth.tokens)
        self.request_stats = RequestStats()
        self.sessions: set[Session] = set()
        self.started_at = time.monotonic()
        self._handshake_callers: dict[ServerConnection, Caller] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._publishing: set[asyncio.Task[Any]] = set()
        self._draining = False
        self._server: Server | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.config.server
        origins = None if "*" in settings.allowed_origins else [None, *settings.allowed_origins]
        self._server = await serve(
            self._serve_connection, settings.host, settings.port,
            origins=origins,
            process_request=self._process_request,
            max_size=settings.max_message_bytes,
            compression=None,  # small JSON frames: deflate costs ~64 KiB per connection
            ping_interval=20, ping_timeout=20,
            server_header="wsd",
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), then close with 1001."""
        assert self._server is not None
        self._draining = True
        self._server.server.close()
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight),
                                         timeout=self.config.server.shutdown_grace_seconds)
            for task in late:
                task.cancel()
        self._server.close()  # closes open connections with 1001 (going away)
        await self._server.wait_closed()

    # -- handshake -------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            return await self._readiness(connection)
        if path != self.config.server.path:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            token = bearer_token(authorization)
            caller = self.tokens.authenticate(token) if token else None
            if caller is None:
                response = connection.respond(HTTPStatus.UNAUTHORIZED, "invalid token\n")
                response.headers["WWW-Authenticate"] = 'Bearer realm="wsd"'
                return response
            self._handshake_callers[connection] = caller
        return None

    async def _readiness(self, connection: ServerConnection) -> Response:
        try:
            async with asyncio.timeout(2):
                await self.pool.fetchval("SELECT 1")
        except Exception as error:  # any failure means not ready; say which
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"database unavailable: {type(error).__name__}\n")
        return connection.respond(HTTPStatus.OK, "ready\n")

    # -- connection --------------------------------------------------------------------------

    async def _serve_connection(self, connection: ServerConnection) -> None:
        session = Session(connection, caller=self._handshake_callers.pop(connection, None))
        self.sessions.add(session)
        deadline = asyncio.get_running_loop().time() + self.config.server.login_timeout_seconds
        try:
            while True:
                if session.caller is None:
                    try:
                        async with asyncio.timeout_at(deadline):
                            frame = await connection.recv()
                    except TimeoutError:
                        await connection.close(POLICY_VIOLATION, "authentication timeout")
                        return
                else:
                    frame = await connection.recv()
                await self._on_frame(session, frame)
                if session.failed_logins >= MAX_FAILED_LOGINS:
                    await connection.close(POLICY_VIOLATION, "too many failed logins")
                    return
        except ConnectionClosed:
            pass
        finally:
            self.sessions.discard(session)

    async def _on_frame(self, session: Session, frame: str | bytes) -> None:
        """Answer envelope, auth and limit errors inline; run real actions as tasks."""
        try:
            request = parse_request(frame)
        except WsdError as error:
            await session.send(error_reply(getattr(error, "request_id", None), error))
            return
        try:
            if (request.resource, request.action) == LOGIN:
                await session.send(success_reply(request.id, self._login(session, request)))
                return
            if session.caller is None:
                raise Unauthorized("log in first: auth.login with a token, or a Bearer header")
            if self._draining:
                raise Unavailable("the server is shutting down")
            action = self.dispatcher.lookup(request.resource, request.action)
            if len(session.inflight) >= self.config.server.max_inflight_per_connection:
                raise RateLimited("too many requests in flight on this connection",
                                  {"limit": self.config.server.max_inflight_per_connection})
        except WsdError as error:
            await session.send(error_reply(request.id, error))
            return
        task = asyncio.create_task(self._run(session, request, action))
        for group in (session.inflight, self._inflight):
            group.add(task)
            task.add_done_callback(group.discard)

    def _login(self, session: Session, request: WsdRequest) -> dict[str, str]:
        token = request.payload.get("token")
        caller = self.tokens.authenticate(token) if isinstance(token, str) else None
        if caller is None:
            session.failed_logins += 1
            raise Unauthorized("invalid token")
        session.caller = caller
        return {"name": caller.name, "role": caller.role}

    async def _run(self, session: Session, request: WsdRequest, action: Action) -> None:
        started = time.perf_counter()
        assert session.caller is not None
        context = Context(self.pool, self.queries, self.config, session.caller, self.services)
        outcome = "ok"
        try:
            result = await self.dispatcher.dispatch(action, context, request.payload)
            if isinstance(result, Paged):
                reply = success_reply(request.id, result.data, next_cursor=result.next_cursor)
            else:
                reply = success_reply(request.id, result)
        except WsdError as error:
            outcome = str(error.code)
            reply = error_reply(request.id, error)
        except Exception:
            outcome = "internal"
            log.exception("request failed", resource=request.resource, action=request.action,
                          request_id=request.id)
            reply = error_reply(request.id, InternalError(
                "internal error; the server log has the details", {"request_id": request.id}))
        await session.send(reply)
        duration_ms = (time.perf_counter() - started) * 1000
        self.request_stats.record(duration_ms)
        log.info("request", resource=request.resource, action=request.action,
                 request_id=request.id, caller=session.caller.name, outcome=outcome,
                 duration_ms=round(duration_ms, 2))

    def runtime_snapshot(self) -> dict[str, Any]:
        """This instance's own numbers for the real-time dashboard."""
        cache = self.dispatcher.cache
        return {
            "connections": sum(1 for s in self.sessions if s.caller is not None),
            **self.request_stats.summary(),
            "pool": {"size": self.pool.get_size(), "idle": self.pool.get_idle_size(),
                     "max": self.pool.get_max_size()},
            "uptime_seconds": round(time.monotonic() - self.started_at, 1),
            "cache": dataclasses.asdict(cache.stats) if cache is not None else None,
        }

    def publish(self, topic: str, payload: Any) -> None:
        """Push an event to every authenticated client (the live-update channel), without
        waiting: the sending task is kept until it is done so it cannot be collected early."""
        message = event_message(topic, payload)
        task = asyncio.create_task(asyncio.gather(
            *(s.send(message) for s in self.sessions if s.caller is not None)))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
