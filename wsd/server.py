"""The frame → request pipeline: what each message on a connection does, and the lifecycle
of the listening transport around it.

`WsdServer` is the `wsd.transport.ConnectionHandler` a transport calls (websockets or
picows, chosen in `wsd.app` through `wsd.transports`); it composes the parts with one job
each: `HttpRoutes` (plain HTTP and the handshake), `Admission` (limits, tokens, login),
`Sessions` (the connected clients and their bounded sending), `LiveQueries` and the
`Dispatcher`.

A request flows: frame → `parse_request` → auth/limits → `Dispatcher.lookup` → a task per
request running `Dispatcher.dispatch` → one encoder → `Session.push` → the socket. Requests
on one connection run concurrently; replies carry the request id, so a slow action never
holds up a fast one. A cached action whose answer is stored is answered inline, without a
task (`_answer_stored`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Awaitable, Callable

import asyncpg
import structlog
from websockets.http11 import Request, Response

from wsd.admission import Admission
from wsd.calendar_sync import CalendarSync
from wsd.cache import MISS
from wsd.config import Config
from wsd.actions import Action, Caller, Context, Paged
from wsd.dispatcher import Dispatcher
from wsd.export import Export
from wsd.export_stream import EXPORT_RESOURCE, Exports
from wsd.errors import InternalError, RateLimited, Unauthorized, Unavailable, UnknownAction, WsdError
from wsd.figures import DaemonFigures
from wsd.oidc import provider_origins
from wsd.live import LIVE_RESOURCE, LiveQueries
from wsd.live_requests import LiveRequests
from wsd.logs import log_request
from wsd.metrics_export import DaemonMetrics
from wsd.protocol import Request as WsdRequest
from wsd.protocol import error_reply, parse_request, success_reply
from wsd.queries import Queries
from wsd.routes import HttpRoutes, Readiness, always_ready
from wsd.runtime import Runtime
from wsd.sessions import Session, Sessions
from wsd.static import StaticFiles
from wsd.serving import Serving
from wsd.transport import CloseCode, Connection, Handshake, ListeningFactory

__all__ = ["WsdServer", "Call"]

log = structlog.get_logger("wsd.server")

LOGIN = ("auth", "login")
REFRESH = ("auth", "refresh")
SWEEP_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Call:
    """What a request task runs, and whether it writes (a write cut off at shutdown answers
    `outcome: unknown`)."""

    run: Callable[[], Awaitable[Any]]
    writes: bool = False


class WsdServer:
    """Serves the dispatcher's actions over WebSocket, plus /healthz, /readyz, /metrics and
    the dashboard page with its JavaScript client (wsd/static.py)."""

    def __init__(self, config: Config, pool: asyncpg.Pool, queries: Queries, dispatcher: Dispatcher,
                 calendar: CalendarSync | None = None, readiness: Readiness = always_ready,
                 exports: dict[str, Export] | None = None, *,
                 transport: ListeningFactory | None = None) -> None:
        self.config = config
        self.pool = pool
        self.queries = queries
        self.dispatcher = dispatcher
        self.metrics = DaemonMetrics(config.metrics)
        self.sessions = Sessions(config.server)
        self.live = LiveQueries(dispatcher, self._execute, config.live,
                                observe_push_lag=self.metrics.push_lag.observe)
        self.live_requests = LiveRequests(self.live)
        self.figures = DaemonFigures(self.sessions, self.metrics.requests, pool, dispatcher.cache,
                                     self.live, readiness)
        self.runtime = Runtime(figures=self.figures.snapshot, calendar=calendar)
        self.admission = Admission(config, self.sessions, self.metrics)
        self.exports = Exports(dispatcher, exports)
        self.routes = HttpRoutes(config.server.path,
                                 StaticFiles(config.server.path, config.business.timezone,
                                             provider_origins(config.oidc)),
                                 self.metrics, self.admission, readiness)
        if transport is None:   # a server built on its own (tests, tools): `server.transport`
            from wsd.transports import listening_for   # the transports sit above the server
            transport = listening_for
        self.serving = Serving(config.server, transport)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, reuse_port: bool = False) -> None:
        """Listen; `reuse_port` lets worker processes share the port (SO_REUSEPORT)."""
        await self.serving.start(self, reuse_port)

    @property
    def port(self) -> int:
        return self.serving.port

    async def shutdown(self) -> None:
        """Drain (`Serving.shutdown`), then log what the refusal log still counts."""
        await self.serving.shutdown()
        self.admission.refusals.flush(force=True)
        await self.admission.provider_keys.aclose()

    async def sweep_slow_clients(self) -> None:
        """Every SWEEP_SECONDS: the refusal log's counts, `Sessions.sweep`, and people whose
        token expires (`Sessions.expire`)."""
        oidc = self.config.oidc
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.admission.refusals.flush()
            self.sessions.sweep()
            self.sessions.expire(time.time(), oidc.expiry_notice_seconds, oidc.leeway_seconds)

    # -- wsd.transport.ConnectionHandler -----------------------------------------------------

    async def process_request(self, connection: Handshake, request: Request) -> Response | None:
        return await self.routes.process_request(connection, request)

    def handshake_started(self, peer: Any) -> bool:
        return self.admission.handshake_started(peer)

    def handshake_ended(self) -> None:
        self.admission.handshake_ended()

    def open(self, connection: Connection) -> Session:
        """A connection whose handshake completed: its session, counted against the limits."""
        session = Session(connection, self.admission.client_address(connection, connection.request),
                          self.config.server.max_send_buffer_bytes,
                          caller=self.admission.caller_of(connection.request),
                          deadline=asyncio.get_running_loop().time()
                          + self.config.server.login_timeout_seconds)
        self.sessions.add(session)
        return session

    def close(self, session: Session) -> None:
        if self.sessions.discard(session):
            self.live.drop(session)

    def on_frame(self, session: Session, frame: str | bytes) -> str | None:
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
            return self.admission.count_before_login(session)
        try:
            call = self._call_for(session, request)
        except WsdError as error:
            session.push(error_reply(request.id, error))
            self.metrics.requests_refused.labels(str(error.code)).inc()
            return self.admission.close_reason(session)
        if call is not None:
            self.serving.track(asyncio.create_task(self._run(session, request, call)),
                               session.inflight)
        return None

    # -- the request pipeline ----------------------------------------------------------------

    def _call_for(self, session: Session, request: WsdRequest) -> Call | None:
        """What a request runs; None when it was answered inline (a login, a stored answer).
        Raises the error to answer it with before anything runs."""
        if (request.resource, request.action) == LOGIN and "id_token" not in request.payload:
            session.push(success_reply(request.id, self.admission.login(session, request)))
            return None
        if (request.resource, request.action) in (LOGIN, REFRESH):
            # A person's token: its provider's keys may have to be fetched, so it runs as a task.
            self.serving.track(asyncio.create_task(self._sign_in(session, request)), session.inflight)
            return None
        if session.caller is None:
            raise Unauthorized("log in first: auth.login with a token, or a Bearer header")
        if self.serving.draining:
            raise Unavailable("the server is shutting down", {"reason": "shutting_down"})
        if len(session.inflight) >= self.config.server.max_inflight_per_connection:
            raise RateLimited("too many requests in flight on this connection",
                              {"limit": self.config.server.max_inflight_per_connection})
        if request.resource == LIVE_RESOURCE:
            return Call(self.live_requests.call_for(session, request))
        if request.resource == EXPORT_RESOURCE:
            return Call(self.exports.call_for(session, request, self._context_of(session)))
        action = self.dispatcher.lookup(request.resource, request.action)
        if action.cached and self._answer_stored(session, request, action):
            return None
        return self._action_call(session, request, action)

    async def _sign_in(self, session: Session, request: WsdRequest) -> None:
        """`auth.login` with `id_token`, or `auth.refresh`: answered, and after a refusal the
        connection closed with 1008 when the failed-login bounds say so (as `on_frame` does)."""
        admission = self.admission
        run = admission.refresh if request.action == REFRESH[1] else admission.sign_in
        try:
            session.push(success_reply(request.id, await run(session, request)))
            return
        except WsdError as error:
            session.push(error_reply(request.id, error))
            self.metrics.requests_refused.labels(str(error.code)).inc()
        except Exception:
            log.exception("sign-in failed", action=request.action, request_id=request.id)
            session.push(error_reply(request.id, InternalError(
                "internal error; the server log has the details", {"request_id": request.id})))
            return
        if reason := admission.close_reason(session):
            await session.connection.close(CloseCode.POLICY_VIOLATION, reason)

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
        self.metrics.observe_request(request.resource, request.action, outcome, duration_ms / 1000)
        log_request(request.resource, request.action, request.id, caller.name, outcome,
                    round(duration_ms, 2))

    def _action_call(self, session: Session, request: WsdRequest, action: Action) -> Call:
        """What a request for `action` runs, with its session's context."""
        return Call(partial(self.dispatcher.dispatch, action, self._context_of(session),
                            request.payload), action.writes)

    def _context_of(self, session: Session) -> Context:
        """The session's handler context, built once per caller."""
        assert session.caller is not None
        context = session.context
        if context is None or context.caller is not session.caller:
            context = session.context = Context(self.pool, self.queries, self.config, session.caller,
                                                self.runtime)
        return context

    async def _execute(self, action: Action, payload: dict[str, Any], caller: Caller) -> Any:
        """Run a read action for a live query, exactly as a direct call runs it."""
        context = Context(self.pool, self.queries, self.config, caller, self.runtime)
        return await self.dispatcher.dispatch(action, context, payload)

    async def _run(self, session: Session, request: WsdRequest, call: Call) -> None:
        started = time.perf_counter()
        assert session.caller is not None
        outcome = "ok"
        try:
            result = await call.run()
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
            details = {"reason": "shutting_down", **({"outcome": "unknown"} if call.writes else {})}
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

    def publish(self, topic: str, payload: Any) -> None:
        """Push an event to every authenticated client (`Sessions.publish`)."""
        self.sessions.publish(topic, payload)
