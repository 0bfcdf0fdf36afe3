"""The WebSocket server: handshake checks, what each frame does, bounded sending, shutdown.

One server logic on either WebSocket library (`server.transport`): the library reads frames
and hands each to `_on_frame`, runs the HTTP handshake through `_process_request`, and
gives each `Session` a `wsd.transport.Connection` (websockets: `wsd.transport_websockets`,
the default; picows: `wsd.transport_picows`, the optional extra).

A request flows: frame → `parse_request` → auth/limits → `Dispatcher.lookup` → a task per
request running `Dispatcher.dispatch` → one encoder → `Session.push` → the socket. Requests
on one connection run concurrently; replies carry the request id, so a slow action never
holds up a fast one.

Nothing here awaits a client's socket: every message is written without waiting
(`Session.push`), events are dropped for a client whose unread bytes exceed
`server.max_send_buffer_bytes`, its next request is not read until it catches up, and a
sweep disconnects a client that stays past the limit for `server.send_timeout_seconds`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Coroutine
from urllib.parse import urlsplit

import asyncpg
import structlog
from websockets.http11 import Request, Response

from wsd.auth import TokenBook, bearer_token
from wsd.calendar_sync import CalendarSync
from wsd.client_address import ClientAddresses
from wsd.config import Config
from wsd.dispatcher import Action, Caller, Context, Dispatcher, Paged, Payload, database_error, validate_payload
from wsd.errors import (InternalError, InvalidPayload, RateLimited, Unauthorized, Unavailable, UnknownAction,
                        WsdError)
from wsd.export import PAGING, Export, run_export
from wsd.cache import MISS
from wsd.guards import FailureThrottle, QuietLog
from wsd.live import HINT_TOPIC, LIVE_RESOURCE, Hints, LiveQueries, LiveQuery
from wsd.logs import log_request
from wsd.metrics import RequestStats
from wsd.metrics_export import DaemonMetrics
from wsd.protocol import Request as WsdRequest
from wsd.protocol import chunk_message, error_reply, event_message, parse_request, success_reply
from wsd.queries import Queries
from wsd.runtime import INSTANCE, Runtime
from wsd.static import StaticFiles, origin_allowed
from wsd.transport import CLOSE_SECONDS, Connection, Handshake, Listening, text_frame
from wsd.transport_websockets import WebsocketsListening

__all__ = ["WsdServer", "Session", "text_frame"]

log = structlog.get_logger("wsd.server")

LOGIN = ("auth", "login")
EXPORT_RESOURCE = "export"
# How often an export waiting for its client to read looks again.
EXPORT_WAIT_SECONDS = 0.005
MAX_FAILED_LOGINS = 5
POLICY_VIOLATION = 1008
SWEEP_SECONDS = 0.5


@dataclass(eq=False)
class Session:
    """One client connection: who it is, what it has in flight, how far behind it reads."""

    connection: Connection   # wsd.transport: websockets' or picows's, behind one interface
    address: str
    send_limit: int
    caller: Caller | None = None
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    failed_logins: int = 0
    messages_before_login: int = 0
    behind_since: float | None = None   # when it first fell behind the send limit
    events_dropped: int = 0
    subscriptions: dict[str, LiveQuery] = field(default_factory=dict)
    # Live updates held back while the client is behind: the newest per subscription only.
    held_updates: dict[str, bytes] = field(default_factory=dict)
    closed: bool = False   # its connection ended (a live subscribe still running must not register)
    context: Context | None = None   # what its requests' handlers get, built once per caller
    wants_hints: bool = False   # `changes` events only after live.hints (opt-in)
    # Its token was removed or changed by a reload: nothing it sends from then on runs.
    revoked: bool = False

    def unread_bytes(self) -> int:
        """Bytes written for this client that its socket has not taken yet."""
        return self.connection.unread_bytes()

    def push(self, message: bytes) -> None:
        """Write one encoded message without waiting (a Text frame: browsers parse text),
        in the order of the calls. A closed or closing connection takes nothing, which is
        not an error."""
        self.connection.write_text(message)

    def has_room(self, frame: bytes) -> bool:
        """Whether `frame` may be written now: the limit bounds what waits unread, not one
        frame, so an empty buffer takes the next frame whatever its size (a live update of a
        1,000-lead page is ~590 KB, over the default 256 KiB)."""
        unread = self.unread_bytes()
        return unread == 0 or unread + len(frame) <= self.send_limit

    def push_event(self, message: bytes) -> bool:
        """Push an event unless the client is too far behind; False when it was dropped."""
        if not self.has_room(message):
            self.events_dropped += 1
            self._fell_behind()
            return False
        self.push(message)
        return True

    def push_update(self, subscription: str, frame: bytes) -> None:
        """Push a live update; a client that is behind keeps only the newest per subscription,
        sent when it catches up (`release_held_updates`)."""
        if self.held_updates or not self.has_room(frame):
            self.held_updates.pop(subscription, None)
            self.held_updates[subscription] = frame
            self._fell_behind()
            return
        self.push(frame)

    def release_held_updates(self) -> None:
        while self.held_updates:
            subscription, frame = next(iter(self.held_updates.items()))
            if not self.has_room(frame):
                return
            del self.held_updates[subscription]
            self.push(frame)

    def _fell_behind(self) -> None:
        if self.behind_since is None:
            self.behind_since = time.monotonic()


class WsdServer:
    """Serves the dispatcher's actions over WebSocket, plus /healthz, /readyz and the
    dashboard page with its JavaScript client (wsd/static.py)."""

    def __init__(self, config: Config, pool: asyncpg.Pool, queries: Queries, dispatcher: Dispatcher,
                 calendar: CalendarSync | None = None,
                 readiness: Callable[[], tuple[bool, str]] | None = None,
                 exports: dict[str, Export] | None = None) -> None:
        self.config = config
        self.pool = pool
        self.queries = queries
        self.dispatcher = dispatcher
        self.runtime = Runtime(figures=self.runtime_snapshot, calendar=calendar)
        self.readiness = readiness or (lambda: (True, "ready"))
        self.live = LiveQueries(dispatcher, self._execute, config.live)
        self.tokens = TokenBook(config.auth.tokens)
        self.request_stats = RequestStats()
        self.metrics = DaemonMetrics(config.metrics)
        self.live.observe_push_lag = self.metrics.push_lag.observe
        # websockets reads this list at every handshake; a reload (SIGHUP) changes it in place.
        self.sessions: set[Session] = set()
        self.started_at = time.monotonic()
        self.slow_clients_dropped = 0
        self._per_token: Counter[str] = Counter()
        self._unauthenticated = 0
        self._failures = FailureThrottle(config.auth.max_failures_per_minute)
        self._addresses = ClientAddresses(config.server.trusted_proxies)
        self._refusals = QuietLog(log)
        self._inflight: set[asyncio.Task[None]] = set()
        self._draining = False
        self._listening: Listening | None = None
        self.static = StaticFiles(config.server.path, config.business.timezone)
        self.exports = exports or {}
        self._exporting: set[str] = set()   # callers (token names) with an export running

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, reuse_port: bool = False) -> None:
        """Listen; `reuse_port` lets worker processes share the port (SO_REUSEPORT)."""
        listening: Listening
        if self.config.server.transport == "picows":
            from wsd.transport_picows import PicowsListening   # the optional `picows` extra
            listening = PicowsListening(self)
        else:
            listening = WebsocketsListening(self)
        await listening.start(reuse_port)
        self._listening = listening

    @property
    def port(self) -> int:
        assert self._listening is not None
        return self._listening.port

    async def shutdown(self) -> None:
        """Stop accepting; give in-flight requests the grace (then answer them `unavailable`);
        close clients with 1001 and abort the sockets of those that do not close in time."""
        listening = self._listening
        assert listening is not None
        self._draining = True
        listening.stop_accepting()
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight),
                                         timeout=self.config.server.shutdown_grace_seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=CLOSE_SECONDS / 2)
        listening.close_connections()  # 1001 (going away)
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await listening.wait_closed()
        except asyncio.TimeoutError:
            # Including connections whose session has ended but whose TCP close is stuck
            # behind unread data.
            stuck = listening.abort_remaining()
            if stuck:
                log.warning("clients did not close in time; aborting their sockets", count=stuck)
        self._refusals.flush(force=True)

    async def sweep_slow_clients(self) -> None:
        """Disconnect clients that stay past the send buffer limit for the send timeout."""
        limit = self.config.server.max_send_buffer_bytes
        timeout = self.config.server.send_timeout_seconds
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self._refusals.flush()
            now = time.monotonic()
            for session in list(self.sessions):
                session.release_held_updates()
                unread = session.unread_bytes()
                if unread <= limit // 2 and not session.held_updates:
                    session.behind_since = None  # caught up (or never behind)
                elif session.behind_since is None:
                    session.behind_since = now
                elif now - session.behind_since >= timeout:
                    self.slow_clients_dropped += 1
                    log.warning("slow client dropped", address=session.address,
                                caller=session.caller.name if session.caller else None,
                                unread_bytes=session.unread_bytes(),
                                events_dropped=session.events_dropped,
                                behind_seconds=round(now - session.behind_since, 1))
                    session.connection.abort()

    # -- handshake -------------------------------------------------------------------------

    async def _process_request(self, connection: Handshake, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            ready, reason = self.readiness()
            return connection.respond(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
                                      reason + "\n")
        if path == "/metrics":
            return await self.metrics.respond(connection, request)
        if path != self.config.server.path or "Upgrade" not in request.headers:
            if self.static.serves(path):
                return self.static.response(path, request)
        if path != self.config.server.path:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        settings = self.config.server
        address = self._client_address(connection, request)
        if not origin_allowed(request, settings.allowed_origins):
            return self._refuse(connection, HTTPStatus.FORBIDDEN, "origin not allowed", address,
                                "origin")
        if self._failures.blocked(address):
            return self._refuse(connection, HTTPStatus.TOO_MANY_REQUESTS, "too many failed logins",
                                address, "auth_throttled")
        if len(self.sessions) >= settings.max_connections:
            return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, "too many connections",
                                address, "max_connections")
        authorization = request.headers.get("Authorization")
        if authorization is None:
            if self._unauthenticated >= settings.max_unauthenticated:
                return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE,
                                    "too many connections waiting to log in", address,
                                    "max_unauthenticated")
            return None
        caller = self._caller_of(request)
        if caller is None:
            self._failures.failed(address)
            response = self._refuse(connection, HTTPStatus.UNAUTHORIZED, "invalid token", address,
                                    "invalid_token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="wsd"'
            return response
        if self._per_token[caller.name] >= settings.max_connections_per_token:
            return self._refuse(connection, HTTPStatus.TOO_MANY_REQUESTS,
                                "too many connections for this token", address,
                                "max_connections_per_token")
        return None

    def _caller_of(self, request: Request | None) -> Caller | None:
        """The caller a handshake's Bearer header names. Read again from the request kept on
        the connection, so nothing outlives a handshake that does not complete."""
        token = bearer_token(request.headers.get("Authorization")) if request is not None else None
        return self.tokens.authenticate(token) if token else None

    def _client_address(self, connection: Connection | Handshake, request: Request | None) -> str:
        """Who the throttle and the logs see: the peer, or behind a trusted proxy the client
        its X-Forwarded-For names."""
        forwarded = request.headers.get_all("X-Forwarded-For") if request is not None else []
        return self._addresses.of(connection.remote_address, forwarded)

    def _refuse(self, connection: Handshake, status: HTTPStatus, text: str, address: str,
                reason: str) -> Response:
        self._refusals.warning("handshake refused", reason=reason, address=address)
        self.metrics.refused(reason)
        return connection.respond(status, text + "\n")

    # -- connection --------------------------------------------------------------------------

    def open_session(self, connection: Connection) -> Session:
        """A connection whose handshake completed: its session, counted against the limits.
        The transport reads its frames into `_on_frame` and calls `close_session` at the end."""
        session = Session(connection, self._client_address(connection, connection.request),
                          self.config.server.max_send_buffer_bytes,
                          caller=self._caller_of(connection.request))
        self.sessions.add(session)
        if session.caller is not None:
            self._per_token[session.caller.name] += 1
        else:
            self._unauthenticated += 1
        return session

    def revoke(self, session: Session) -> Coroutine[Any, Any, None]:
        """Its token was removed or changed: close it with 1008 ("token revoked"). Marked
        first, so that nothing it sends after this moment runs — websockets still reads
        frames during the closing handshake (up to a second), and a client may keep
        sending through it."""
        session.revoked = True
        return session.connection.close(POLICY_VIOLATION, "token revoked")

    def close_session(self, session: Session) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        session.closed = True
        self.live.drop(session)
        if session.caller is not None:
            self._per_token[session.caller.name] -= 1
            if not self._per_token[session.caller.name]:
                del self._per_token[session.caller.name]
        else:
            self._unauthenticated -= 1

    def _on_frame(self, session: Session, frame: str | bytes) -> str | None:
        """Answer envelope, auth and limit errors inline; run real actions as tasks.

        Returns a reason when the connection must be closed with 1008.
        """
        if session.revoked:
            return None   # already closing with 1008; frames still arriving are not run
        try:
            request = parse_request(frame)
        except WsdError as error:
            session.push(error_reply(getattr(error, "request_id", None), error))
            self.metrics.requests_refused.labels(str(error.code)).inc()
            return self._count_before_login(session)
        try:
            if (request.resource, request.action) == LOGIN:
                session.push(success_reply(request.id, self._login(session, request)))
                return None
            if session.caller is None:
                raise Unauthorized("log in first: auth.login with a token, or a Bearer header")
            if self._draining:
                raise Unavailable("the server is shutting down", {"reason": "shutting_down"})
            if len(session.inflight) >= self.config.server.max_inflight_per_connection:
                raise RateLimited("too many requests in flight on this connection",
                                  {"limit": self.config.server.max_inflight_per_connection})
            if request.resource == LIVE_RESOURCE:
                call, writes = self._live_call_for(session, request)
            elif request.resource == EXPORT_RESOURCE:
                call, writes = self._export_call_for(session, request)
            else:
                action = self.dispatcher.lookup(request.resource, request.action)
                if action.cached and self._answer_stored(session, request, action):
                    return None
                call, writes = self._call_for(session, request, action)
        except WsdError as error:
            session.push(error_reply(request.id, error))
            self.metrics.requests_refused.labels(str(error.code)).inc()
            if session.failed_logins >= MAX_FAILED_LOGINS:
                return "too many failed logins"
            if self._failures.blocked(session.address) and session.caller is None:
                return "too many failed logins from this address"
            return self._count_before_login(session)
        task = asyncio.create_task(self._run(session, request, call, writes))
        session.inflight.add(task)
        self._inflight.add(task)
        task.add_done_callback(partial(self._forget, session.inflight))
        return None

    def _forget(self, session_inflight: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        """A request task ended (or was cancelled before it started): in flight no more."""
        session_inflight.discard(task)
        self._inflight.discard(task)

    def _answer_stored(self, session: Session, request: WsdRequest, action: Action) -> bool:
        """Answer a cached action inline when its answer is stored: the same role check,
        validation, reply, metrics and log line as a dispatched request, without a task.
        False when nothing fresh is stored (the request is dispatched as usual)."""
        started = time.perf_counter()
        caller = session.caller
        assert caller is not None
        try:
            answer = self.dispatcher.stored_answer(
                action, self.dispatcher.authorize(action, caller, request.payload))
        except WsdError as error:
            session.push(error_reply(request.id, error))
            self._done(request, caller, str(error.code), started)
            return True
        if answer is MISS:
            return False
        session.push(success_reply(request.id, answer))
        self._done(request, caller, "ok", started)
        return True

    def _done(self, request: WsdRequest, caller: Caller, outcome: str, started: float) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        self.request_stats.record(duration_ms)
        self.metrics.observe_request(request.resource, request.action, outcome, duration_ms / 1000)
        log_request(request.resource, request.action, request.id, caller.name, outcome,
                    round(duration_ms, 2))

    def _live_call_for(self, session: Session, request: WsdRequest) -> tuple[Callable[[], Awaitable[Any]], bool]:
        """What a live request runs (a subscription's first answer, an unsubscribe). Raises
        UnknownAction before anything runs."""
        if request.action == "subscribe":
            return (lambda: self.live.subscribe(session, request.payload)), False
        if request.action == "unsubscribe":
            async def unsubscribe() -> dict[str, Any]:
                self.live.unsubscribe(session, request.payload)
                return {"subscription": request.payload.get("subscription")}
            return unsubscribe, False
        if request.action == "hints":
            async def hints() -> dict[str, bool]:
                wanted = validate_payload(request.payload, Hints)
                assert isinstance(wanted, Hints)
                session.wants_hints = wanted.enabled
                return {"hints": wanted.enabled}
            return hints, False
        raise UnknownAction(f"no action live.{request.action}",
                            {"resource": LIVE_RESOURCE, "action": request.action})

    def _call_for(self, session: Session, request: WsdRequest,
                  action: Action) -> tuple[Callable[[], Awaitable[Any]], bool]:
        """What a request for `action` runs, and whether it writes."""
        context = self._context_of(session)
        return (lambda: self.dispatcher.dispatch(action, context, request.payload)), action.writes

    def _context_of(self, session: Session) -> Context:
        """The session's handler context, built once per caller."""
        assert session.caller is not None
        context = session.context
        if context is None or context.caller is not session.caller:
            context = session.context = Context(self.pool, self.queries, self.config, session.caller,
                                                self.runtime)
        return context

    def _export_call_for(self, session: Session, request: WsdRequest) -> tuple[Callable[[], Awaitable[Any]], bool]:
        """What an export runs: the read it mirrors decides the role and checks the payload
        (less `limit` and `cursor`, plus `bom`) before anything runs."""
        export = self.exports.get(request.action)
        if export is None:
            raise UnknownAction(f"no action export.{request.action}",
                                {"resource": EXPORT_RESOURCE, "action": request.action})
        payload = {k: v for k, v in request.payload.items() if k not in (*PAGING, "bom")}
        bom = request.payload.get("bom", False)
        if not isinstance(bom, bool):
            raise InvalidPayload("bom is true or false", {"field": "bom"})
        assert session.caller is not None
        arguments = self.dispatcher.authorize(self.dispatcher.lookup(*export.read), session.caller, payload)
        context = self._context_of(session)
        return (lambda: self._export(session, request, export, context, arguments, bom)), False

    async def _export(self, session: Session, request: WsdRequest, export: Export, context: Context,
                      arguments: Payload, bom: bool) -> dict[str, Any]:
        """Stream an export as `chunk` messages, one export at a time per caller."""
        caller = context.caller.name
        if caller in self._exporting:
            raise RateLimited("an export is already running for this caller: one at a time", {"limit": 1})
        self._exporting.add(caller)

        async def send(text: str) -> None:
            # The bounded send path: wait while the client has half the send limit unread,
            # so the cursor pauses for a slow reader and wsd holds one batch at a time.
            while session.unread_bytes() > session.send_limit // 2 and session.connection.is_open():
                await asyncio.sleep(EXPORT_WAIT_SECONDS)
            if not session.connection.is_open():
                raise Unavailable("the client went away during the export", {"reason": "closed"})
            session.push(chunk_message(request.id, text))

        try:
            return await run_export(context, export, arguments, bom, send)
        except Exception as error:
            mapped = database_error(error)
            if mapped is error:
                raise
            raise mapped from None
        finally:
            self._exporting.discard(caller)

    async def _execute(self, action: Action, payload: dict[str, Any], caller: Caller) -> Any:
        """Run a read action for a live query, exactly as a direct call runs it."""
        context = Context(self.pool, self.queries, self.config, caller, self.runtime)
        return await self.dispatcher.dispatch(action, context, payload)

    def _count_before_login(self, session: Session) -> str | None:
        if session.caller is not None:
            return None
        session.messages_before_login += 1
        if session.messages_before_login >= self.config.server.max_messages_before_login:
            self._refusals.warning("connection closed before login", reason="messages_before_login",
                                   address=session.address)
            return "too many messages before login"
        return None

    def _login(self, session: Session, request: WsdRequest) -> dict[str, str]:
        if self._failures.blocked(session.address):
            self._refusals.warning("login refused", reason="auth_throttled", address=session.address)
            raise RateLimited("too many failed logins from this address; try again in a minute",
                              {"retry_after_seconds": 60})
        token = request.payload.get("token")
        caller = self.tokens.authenticate(token) if isinstance(token, str) else None
        if caller is None:
            session.failed_logins += 1
            self._failures.failed(session.address)
            self._refusals.warning("login failed", address=session.address)
            raise Unauthorized("invalid token")
        if session.caller is None and \
                self._per_token[caller.name] >= self.config.server.max_connections_per_token:
            self._refusals.warning("login refused", reason="max_connections_per_token",
                                   address=session.address)
            raise RateLimited("too many connections for this token",
                              {"limit": self.config.server.max_connections_per_token})
        if session.caller is None:
            self._unauthenticated -= 1
        else:
            self._per_token[session.caller.name] -= 1
        session.caller = caller
        self._per_token[caller.name] += 1
        return {"name": caller.name, "role": caller.role}

    async def _run(self, session: Session, request: WsdRequest, call: Callable[[], Awaitable[Any]],
                   writes: bool) -> None:
        started = time.perf_counter()
        assert session.caller is not None
        outcome = "ok"
        try:
            result = await call()
            if isinstance(result, Paged):
                reply = success_reply(request.id, result.data, **result.extra())
            else:
                reply = success_reply(request.id, result)
        except WsdError as error:
            outcome = str(error.code)
            reply = error_reply(request.id, error)
        except asyncio.CancelledError:
            log.warning("request cut off at shutdown", resource=request.resource,
                        action=request.action, request_id=request.id, caller=session.caller.name,
                        duration_ms=round((time.perf_counter() - started) * 1000, 2))
            details = {"reason": "shutting_down", **({"outcome": "unknown"} if writes else {})}
            session.push(error_reply(request.id, Unavailable(
                "the server shut down before this request finished", details)))
            raise
        except Exception:
            outcome = "internal"
            log.exception("request failed", resource=request.resource, action=request.action,
                          request_id=request.id)
            reply = error_reply(request.id, InternalError(
                "internal error; the server log has the details", {"request_id": request.id}))
        session.push(reply)
        self._done(request, session.caller, outcome, started)

    def runtime_snapshot(self) -> dict[str, Any]:
        """This instance's own numbers for the real-time dashboard."""
        cache = self.dispatcher.cache
        return {
            "instance": INSTANCE,
            "connections": sum(1 for s in self.sessions if s.caller is not None),
            **self.request_stats.summary(),
            "pool": {"size": self.pool.get_size(), "idle": self.pool.get_idle_size(),
                     "max": self.pool.get_max_size()},
            "uptime_seconds": round(time.monotonic() - self.started_at, 1),
            "cache": dataclasses.asdict(cache.stats) if cache is not None else None,
            "slow_clients_dropped": self.slow_clients_dropped,
            "live": self.live.stats(),
        }

    def publish(self, topic: str, payload: Any) -> None:
        """Push an event to every authenticated client (`changes` hints only to those that
        asked with live.hints): encoded once, written without waiting, dropped for a client
        that is too far behind (it learns nothing it would not get by asking again)."""
        message = event_message(topic, payload)
        hint = topic == HINT_TOPIC
        for session in self.sessions:
            if session.caller is not None and (session.wants_hints or not hint):
                session.push_event(message)
