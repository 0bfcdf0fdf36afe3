"""GET /metrics: the daemon's series in Prometheus (or OpenMetrics) text, for alerting.

Two kinds of series, one per-process `CollectorRegistry` (never the global one, so two
daemons in one test process, or a library that registers its own, never collide):

- counted as things happen (`DaemonMetrics`): requests by resource/action/code and their
  durations, handshakes refused by reason, requests refused before they ran, live push lag;
- read from the daemon's own state at scrape time (`StateCollector`): connections by role,
  the pool, live queries, slow clients dropped, the change listener, Outlook pushes, and the
  Outlook outbox (one cheap SQL query, `OutboxProbe`, cached a few seconds so a scrape storm
  never reaches the database). Reading state is simpler than mirroring it into counters and
  cannot drift from what the daemon itself uses.

Labels carry no personal data and no ids: resource and action are the registered names
(unknown ones are refused before they are counted), codes and reasons are fixed sets.

Access: a client address in `metrics.allowed_addresses` (default loopback) whose Host
header names this server by an IP address or a name in `metrics.allowed_hosts` (default
`localhost`), or a Bearer token whose SHA-256 is `metrics.token_sha256`; anything else gets
403. The Host rule stops DNS rebinding: a page on a hostile name that resolves to 127.0.0.1
reaches wsd from an allowed address, but with its own name in Host.

With `serve --workers N` each worker keeps its own registry and a scrape reaches whichever
worker the kernel hands the connection to (docs/scaling.md). Scraping every worker would
need a metrics port per worker; prometheus-client's multiprocess mode is no answer, as it
cannot run the scrape-time collectors above.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import time
from collections import Counter as Tally
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from websockets.http11 import Request, Response

from wsd.auth import bearer_token
from wsd.metrics import RequestTally
from wsd.config import MetricsConfig
from wsd.static import request_host

if TYPE_CHECKING:
    import asyncpg

    from wsd.calendar_sync import CalendarSync
    from wsd.listener import ChangeListener
    from wsd.queries import OutlookQueries
    from wsd.transport import Handshake

__all__ = ["DaemonMetrics", "DaemonState", "StateCollector", "OutboxProbe", "REFUSAL_REASONS"]

log = structlog.get_logger("wsd.metrics")

# The reasons `wsd.admission.Admission` refuses a handshake for; each starts at 0 so a rate() over
# it exists at once.
REFUSAL_REASONS = ("auth_throttled", "max_connections", "max_unauthenticated", "invalid_token",
                   "max_connections_per_token", "max_handshakes")
ROLES = ("admin", "viewer")
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OUTBOX_QUERY_SECONDS = 2.0


class DaemonMetrics:
    """The registry, the counters the server feeds, and the /metrics endpoint."""

    def __init__(self, settings: MetricsConfig) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestTally()   # also the dashboard's last-minute figures
        self.registry.register(self.requests)
        self.requests_refused = Counter("wsd_requests_refused", "Requests answered with an error "
                                        "before they ran (unknown action, not logged in, too many "
                                        "in flight, bad envelope), by code", ("code",),
                                        registry=self.registry)
        self.handshakes_refused = Counter("wsd_handshakes_refused", "WebSocket handshakes refused, "
                                          "by reason", ("reason",), registry=self.registry)
        for reason in REFUSAL_REASONS:
            self.handshakes_refused.labels(reason)
        self.push_lag = Histogram("wsd_live_push_lag_seconds", "From a change reaching a live "
                                  "query (notification, periodic or resync re-run) to its new "
                                  "answer being handed to subscribers", buckets=LAG_BUCKETS,
                                  registry=self.registry)
        ProcessCollector(registry=self.registry)
        self._outbox: OutboxProbe | None = None

    # -- fed by the server ---------------------------------------------------------------------

    def observe_request(self, resource: str, action: str, code: str, seconds: float) -> None:
        self.requests.observe(resource, action, code, seconds)

    def refused(self, reason: str) -> None:
        self.handshakes_refused.labels(reason).inc()

    def watch(self, collector: StateCollector) -> None:
        """Adds the scrape-time series of a running daemon (once its parts exist)."""
        self.registry.register(collector)
        self._outbox = collector.outbox

    # -- the endpoint --------------------------------------------------------------------------

    async def respond(self, connection: Handshake, request: Request) -> Response:
        """The answer to GET /metrics: 404 when off, 403 to a caller not allowed."""
        if not self.settings.enabled:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if not self.allowed(connection, request):
            return connection.respond(HTTPStatus.FORBIDDEN, "forbidden\n")
        if self._outbox is not None:
            await self._outbox.refresh()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        response = connection.respond(HTTPStatus.OK, encoder(self.registry).decode())
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = content_type
        return response

    def allowed(self, connection: Handshake, request: Request) -> bool:
        token = bearer_token(request.headers.get("Authorization"))
        if token and self.settings.token_sha256:
            digest = hashlib.sha256(token.encode("utf-8")).digest()
            if hmac.compare_digest(digest, bytes.fromhex(self.settings.token_sha256)):
                return True
        if not self.host_allowed(request):
            return False
        peer = connection.remote_address
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in ipaddress.ip_network(allowed, strict=False)
                   for allowed in self.settings.allowed_addresses)

    def host_allowed(self, request: Request) -> bool:
        """The Host header names this server by an IP address (no DNS, so nothing to rebind)
        or by a name in `metrics.allowed_hosts`."""
        host = request_host(request)
        if host is None:
            return False
        name = host[1:host.index("]")] if host.startswith("[") else host.partition(":")[0]
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            allowed = self.settings.allowed_hosts
            return "*" in allowed or name.lower().rstrip(".") in (entry.lower() for entry in allowed)


class OutboxProbe:
    """The Outlook outbox as one small query, reused for `outbox_cache_seconds`.

    A scrape awaits `refresh()` before collecting (collectors cannot await); concurrent
    scrapes share one query. A failed or slow query drops the outbox series from that scrape
    (and logs why) rather than failing the whole page.
    """

    def __init__(self, pool: asyncpg.Pool, queries: OutlookQueries, mailbox: str,
                 cache_seconds: float) -> None:
        self._pool = pool
        self._queries = queries
        self._mailbox = mailbox
        self._cache_seconds = cache_seconds
        self._lock = asyncio.Lock()
        self._fetched_at = float("-inf")
        self.row: dict[str, Any] | None = None

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self._cache_seconds:
                return
            try:
                async with asyncio.timeout(OUTBOX_QUERY_SECONDS):
                    row = await self._queries.outbox_metrics(self._pool, mailbox=self._mailbox)
            except Exception as error:  # the database is down or slow: no outbox series now
                log.warning("metrics: outbox query failed", error=type(error).__name__)
                self.row = None
            else:
                self.row = dict(row) if row is not None else None
            self._fetched_at = time.monotonic()


class DaemonState(Protocol):
    """What the scrape-time series read of the running daemon (`wsd.figures.DaemonFigures`)."""

    pool: asyncpg.Pool
    readiness: Callable[[], tuple[bool, str]]

    def roles(self) -> Iterable[str]:
        """Each open connection's role ('unauthenticated' before login)."""
        ...

    def live_figures(self) -> dict[str, int]:
        """`LiveQueries.stats()`."""
        ...

    @property
    def slow_clients_dropped(self) -> int: ...


class StateCollector(Collector):
    """Series read from the running daemon at scrape time."""

    def __init__(self, server: DaemonState, listener: ChangeListener,
                 calendar: CalendarSync | None = None, outbox: OutboxProbe | None = None) -> None:
        self.server = server
        self.listener = listener
        self.calendar = calendar
        self.outbox = outbox

    def collect(self) -> Iterable[Metric]:
        server = self.server
        roles: Tally[str] = Tally({role: 0 for role in (*ROLES, "unauthenticated")})
        roles.update(server.roles())
        connections = GaugeMetricFamily("wsd_connections", "Open WebSocket connections, by role "
                                        "('unauthenticated': not logged in yet)", labels=("role",))
        for role, count in sorted(roles.items()):
            connections.add_metric((role,), count)
        yield connections
        ready, _ = server.readiness()
        yield GaugeMetricFamily("wsd_ready", "1 when /readyz answers 200", value=int(ready))
        pool = server.pool
        yield GaugeMetricFamily("wsd_pool_size", "Connections the pool holds", value=pool.get_size())
        yield GaugeMetricFamily("wsd_pool_idle", "Pool connections free now", value=pool.get_idle_size())
        yield GaugeMetricFamily("wsd_pool_max", "database.pool_max_size", value=pool.get_max_size())
        yield GaugeMetricFamily("wsd_pool_waiting", "Acquires in progress (waiting for a free "
                                "connection, or for one to open)", value=getattr(pool, "waiting", 0))
        live = server.live_figures()
        yield GaugeMetricFamily("wsd_live_queries", "Distinct live queries", value=live["queries"])
        yield GaugeMetricFamily("wsd_live_subscriptions", "Live subscriptions over all connections",
                                value=live["subscriptions"])
        yield CounterMetricFamily("wsd_live_reruns", "Live query re-runs", value=live["reruns"])
        yield CounterMetricFamily("wsd_live_reruns_delayed", "Live re-runs that waited for their turn "
                                  "(live.max_reruns_per_second spent)", value=live["reruns_delayed"])
        yield CounterMetricFamily("wsd_live_updates_sent", "Live updates handed to subscribers",
                                  value=live["updates_sent"])
        yield CounterMetricFamily("wsd_slow_clients_dropped", "Clients disconnected for not reading",
                                  value=server.slow_clients_dropped)
        yield GaugeMetricFamily("wsd_listener_connected", "1 while the change listener LISTENs",
                                value=int(self.listener.connected))
        yield CounterMetricFamily("wsd_listener_reconnects", "Change listener reconnections",
                                  value=self.listener.reconnects)
        if self.calendar is not None:
            pushes = CounterMetricFamily("wsd_outlook_pushes", "Outlook pushes, by the meeting's "
                                         "sync_status afterwards", labels=("outcome",))
            for outcome, count in sorted(self.calendar.pushes.items()):
                pushes.add_metric((outcome,), count)
            yield pushes
        yield from self._outbox()

    def _outbox(self) -> Iterable[Metric]:
        row = self.outbox.row if self.outbox is not None else None
        if row is None:
            return
        depth = GaugeMetricFamily("wsd_outlook_outbox_meetings", "Meetings waiting for an Outlook "
                                  "push, by sync_status", labels=("sync_status",))
        depth.add_metric(("pending",), row["pending"])
        depth.add_metric(("failed",), row["failed"])
        yield depth
        yield GaugeMetricFamily("wsd_outlook_oldest_pending_seconds", "Age of the oldest pending "
                                "meeting's unpushed change (0: none pending)",
                                value=row["oldest_pending_seconds"])
        if row["last_success_at"] is not None:
            yield GaugeMetricFamily("wsd_outlook_last_delta_sync_timestamp_seconds",
                                    "When the last delta sync with Outlook succeeded (Unix time)",
                                    value=row["last_success_at"].timestamp())
