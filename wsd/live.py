"""Live queries: subscribe to any read action, get its new answer pushed when it changes.

Identical subscriptions (same role, same action, same payload) on every connection share
one `LiveQuery`: one re-run and one encoded answer, from which each subscriber's update
frame is cut. The role is part of it because a read may answer by role (the lead
document's `trail`) or be an admin's (`trail.get_trail`). A topic change marks the queries that depend on it; each re-runs at most once per
`live.min_interval_ms` (a burst of writes is a handful of re-runs, and the last one always
runs after the last write), and a subscriber is sent the answer only when it differs from
the last one it was sent. A periodic re-run and a full re-run after the change listener
reconnects cover anything a notification missed.

Everything is bounded: subscriptions per connection, distinct queries per token name and in
the whole process (each reserved before the first answer is awaited, so concurrent
subscribes cannot pass a limit, and released when the connection closes, so no query
outlives its connection), and re-runs per second (`RerunBudget`: past it a re-run waits for
its turn, and the changes that arrive meanwhile join it).

Example exchange:
    → {"resource": "live", "action": "subscribe", "id": 1,
       "payload": {"resource": "dashboard", "action": "get_dashboard_stats"}}
    ← {"type": "success", "id": 1, "payload": {"data": {"subscription": "s1", "data": {...}}}}
    ← {"type": "update", "subscription": "s1", "payload": {"data": {...}}}
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Protocol

import orjson
import structlog

from wsd.config import LiveConfig
from wsd.actions import Action, Caller, Paged, Payload, Role
from wsd.dispatcher import Dispatcher, validate_payload
from wsd.errors import InvalidPayload, NotFound, RateLimited, Unavailable, WsdError
from wsd.protocol import encode

__all__ = ["LiveQueries", "LiveQuery", "Subscriber", "RerunBudget", "ChangeHints", "LIVE_RESOURCE", "LIVE_ACTIONS",
           "HINT_TOPIC", "Hints"]

log = structlog.get_logger("wsd.live")

LIVE_RESOURCE = "live"
HINT_TOPIC = "changes"   # the event topic of ChangeHints


class Subscriber(Protocol):
    """What a live query needs of a connection (the server's Session)."""

    caller: Caller | None
    # Its subscriptions, those still waiting for their first answer included.
    subscriptions: dict[str, "LiveQuery"]
    # Set when the connection ended: a subscribe still running must not register then.
    closed: bool

    def push_update(self, subscription: str, frame: bytes) -> None: ...


class Subscribe(Payload):
    resource: str
    action: str
    payload: dict[str, Any] = {}


class Unsubscribe(Payload):
    subscription: str


class Hints(Payload):
    """`changes` hints ({"topic"} events) to this connection: off until asked for, since
    live queries are how a client stays current and a hint is a frame per write burst."""
    enabled: bool = True


# The `live` resource's actions and their payloads (the dispatcher's tables hold the rest).
LIVE_ACTIONS: dict[str, type[Payload]] = {"subscribe": Subscribe, "unsubscribe": Unsubscribe, "hints": Hints}


Run = Callable[[Action, dict[str, Any], Caller], Awaitable[Any]]


@dataclass(eq=False)
class LiveQuery:
    """One distinct (role, action, payload) that at least one connection subscribed to.

    Re-runs run as `caller`: no request's caller but its subscribers' role, since a read may
    answer by role (the lead document's trail is an admin's) or be an admin's (the trail)."""

    key: tuple[str, str, str, bytes]
    action: Action
    payload: dict[str, Any]
    caller: Caller
    # (connection, subscription id) → the answer last sent to it, encoded.
    subscribers: dict[tuple[Subscriber, str], bytes] = field(default_factory=dict)
    # (connection, subscription id) → the token name it was taken under, for every
    # subscription that holds the query, those still waiting for their first answer too.
    holders: dict[tuple[Subscriber, str], str] = field(default_factory=dict)
    tokens: Counter[str] = field(default_factory=Counter)   # token name → its holders
    dirty: bool = False
    running: bool = False
    last_run: float = float("-inf")
    timer: asyncio.TimerHandle | None = None
    reruns: int = 0
    changed_at: float | None = None   # when the first change not yet re-run arrived


def encode_answer(result: Any) -> bytes:
    """An answer as it goes into a reply's or update's payload: {"data": ...} plus the
    next page's cursor for a paged action."""
    if isinstance(result, Paged):
        return encode({"data": result.data, **result.extra()})
    return encode({"data": result})


def update_frame(subscription: str, answer: bytes) -> bytes:
    return b'{"type":"update","subscription":' + orjson.dumps(subscription) + b',"payload":' + answer + b"}"


class RerunBudget:
    """At most `per_second` re-runs start in any one second, as a whole: each asks for its
    turn, and past the budget its turn is later (a generic cell rate algorithm with one
    second's burst). A query waits for its turn holding no task, and changes that arrive
    meanwhile join the re-run it waits for, so a spent budget widens the re-run intervals
    instead of queueing re-runs: what waits is at most one re-run per query.

    Example:
        >>> budget = RerunBudget(2)
        >>> [round(budget.turn(now=10.0), 2) for _ in range(4)]
        [0.0, 0.0, 0.5, 1.0]
    """

    def __init__(self, per_second: int) -> None:
        self._step = 1 / per_second
        self._burst = 1.0 - self._step   # how far ahead of now the turns may have run
        self._next = float("-inf")       # the turn after the last one taken

    def turn(self, now: float) -> float:
        """Take the next turn; the seconds until it comes (0: now)."""
        start = max(now, self._next - self._burst)
        self._next = max(self._next, now) + self._step
        return start - now


class LiveQueries:
    """Every live query of this process, by key and by topic."""

    def __init__(self, dispatcher: Dispatcher, run: Run, settings: LiveConfig,
                 observe_push_lag: Callable[[float], None] = lambda _seconds: None) -> None:
        self._dispatcher = dispatcher
        self._run = run
        self._settings = settings
        self._queries: dict[tuple[str, str, str, bytes], LiveQuery] = {}
        self._by_topic: dict[str, set[LiveQuery]] = {}
        self._per_token: Counter[str] = Counter()   # token name → distinct queries it holds
        self._reruns: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrent_reruns)
        self._budget = RerunBudget(settings.max_reruns_per_second)
        self._next_id = 0
        self.reruns = 0
        self.reruns_delayed = 0
        self.updates_sent = 0
        # Seconds from a change reaching a query to its new answer going out (/metrics).
        self.observe_push_lag = observe_push_lag

    # -- the client's side ---------------------------------------------------------------------

    async def subscribe(self, subscriber: Subscriber, payload: dict[str, Any]) -> dict[str, Any]:
        """Validate like a direct call, answer like a direct call, and keep the query live.

        The subscription holds its place from before its first answer is awaited, and lets
        it go if that answer fails or the connection closes meanwhile.

        Raises:
            WsdError: what a direct call of the action would answer, `invalid_payload` for a
                write action, `rate_limited` past live.max_subscriptions_per_connection,
                live.max_queries_per_token or live.max_queries.
        """
        caller = subscriber.caller
        assert caller is not None
        request = validate_payload(payload, Subscribe)
        assert isinstance(request, Subscribe)
        action = self._dispatcher.lookup(request.resource, request.action)
        if action.writes:
            raise InvalidPayload("only read actions can be subscribed to",
                                 {"field": "action", "action": request.action})
        if subscriber.closed:   # the request task started after its connection ended
            raise Unavailable("the connection closed", {"reason": "closed"})
        # The error a direct call gets, before the payload is keyed: orjson refuses values
        # nested past 255 levels or integers past 64 bits, which no valid payload holds.
        self._dispatcher.authorize(action, caller, request.payload)
        key = (caller.role, request.resource, request.action,
               orjson.dumps(request.payload, option=orjson.OPT_SORT_KEYS))
        subscription = self._reserve(subscriber, caller.name, caller.role, key, action, request.payload)
        query = subscriber.subscriptions[subscription]
        try:
            result = await self._run(action, request.payload, caller)
        except BaseException:
            if subscriber.subscriptions.get(subscription) is query:
                self._forget(subscriber, subscription)
            raise
        answer = encode_answer(result)
        if subscriber.subscriptions.get(subscription) is query:   # not dropped meanwhile
            query.subscribers[(subscriber, subscription)] = answer
            if query.dirty:   # a change came while it had no subscriber to re-run for
                self._schedule(query)
        return {"subscription": subscription, **orjson.loads(answer)}

    def _reserve(self, subscriber: Subscriber, token: str, token_role: Role, key: tuple[str, str, str, bytes],
                 action: Action, payload: dict[str, Any]) -> str:
        """Check every limit and take the subscription's place at once (nothing awaits in
        between, so subscribes running together cannot pass a limit); its id."""
        settings = self._settings
        if len(subscriber.subscriptions) >= settings.max_subscriptions_per_connection:
            raise RateLimited("too many subscriptions on this connection",
                              {"limit": settings.max_subscriptions_per_connection})
        query = self._queries.get(key)
        if query is None and len(self._queries) >= settings.max_queries:
            raise RateLimited("too many distinct live queries on this server",
                              {"limit": settings.max_queries})
        if (query is None or not query.tokens[token]) and \
                self._per_token[token] >= settings.max_queries_per_token:
            raise RateLimited("too many distinct live queries for this token",
                              {"limit": settings.max_queries_per_token})
        if query is None:
            query = self._queries[key] = LiveQuery(key, action, payload, Caller("live", token_role))
            for topic in action.topics:
                self._by_topic.setdefault(topic, set()).add(query)
        self._next_id += 1
        subscription = f"s{self._next_id}"
        query.holders[(subscriber, subscription)] = token
        query.tokens[token] += 1
        if query.tokens[token] == 1:
            self._per_token[token] += 1
        subscriber.subscriptions[subscription] = query
        return subscription

    def unsubscribe(self, subscriber: Subscriber, payload: dict[str, Any]) -> None:
        """Raises NotFound for a subscription this connection does not have (or whose first
        answer has not been sent yet)."""
        unsubscribe = validate_payload(payload, Unsubscribe)
        assert isinstance(unsubscribe, Unsubscribe)
        subscription = unsubscribe.subscription
        query = subscriber.subscriptions.get(subscription)
        if query is None or (subscriber, subscription) not in query.subscribers:
            raise NotFound("no such subscription on this connection", {"subscription": subscription})
        self._forget(subscriber, subscription)

    def drop(self, subscriber: Subscriber) -> None:
        """A connection closed: its subscriptions end with it, those still waiting for their
        first answer too."""
        for subscription in list(subscriber.subscriptions):
            self._forget(subscriber, subscription)

    def _forget(self, subscriber: Subscriber, subscription: str) -> None:
        query = subscriber.subscriptions.pop(subscription)
        query.subscribers.pop((subscriber, subscription), None)
        token = query.holders.pop((subscriber, subscription))
        query.tokens[token] -= 1
        if not query.tokens[token]:
            del query.tokens[token]
            self._per_token[token] -= 1
            if not self._per_token[token]:
                del self._per_token[token]
        if query.holders:
            return
        del self._queries[query.key]
        for topic in query.action.topics:
            self._by_topic[topic].discard(query)
        if query.timer is not None:
            query.timer.cancel()

    # -- changes -------------------------------------------------------------------------------

    def changed(self, topics: Iterable[str]) -> None:
        """Topics changed (a NOTIFY arrived): re-run every query that depends on them."""
        due: set[LiveQuery] = set()
        for topic in topics:
            due |= self._by_topic.get(topic, set())
        for query in due:
            self._schedule(query)

    def rerun_all(self) -> None:
        """Re-run every query (after a listener reconnection, and periodically)."""
        for query in list(self._queries.values()):
            self._schedule(query)

    async def rerun_periodically(self) -> None:
        """The safety net: answers that move with time alone ("today", "last 24 hours"), or
        a change whose notification was lost, reach subscribers within this interval."""
        while True:
            await asyncio.sleep(self._settings.safety_rerun_seconds)
            self.rerun_all()

    def _schedule(self, query: LiveQuery) -> None:
        query.dirty = True
        if query.changed_at is None:
            query.changed_at = time.monotonic()
        if query.running or query.timer is not None:
            return  # it runs again when the running one ends, or when its timer fires
        wait = query.last_run + self._settings.min_interval_ms / 1000 - time.monotonic()
        if wait > 0:
            query.timer = asyncio.get_running_loop().call_later(wait, self._start, query)
        else:
            self._start(query)

    def _start(self, query: LiveQuery) -> None:
        """Its interval is over: re-run now if the budget allows, else at its turn."""
        query.timer = None
        if not query.subscribers or query.running:
            return
        wait = self._budget.turn(time.monotonic())
        if wait > 0:
            self.reruns_delayed += 1
            query.timer = asyncio.get_running_loop().call_later(wait, self._begin, query)
            return
        self._begin(query)

    def _begin(self, query: LiveQuery) -> None:
        query.timer = None
        if not query.subscribers or query.running:
            return
        query.dirty = False
        query.running = True
        query.last_run = time.monotonic()
        changed_at, query.changed_at = query.changed_at, None
        task = asyncio.create_task(self._rerun(query, changed_at))
        self._reruns.add(task)
        task.add_done_callback(lambda done: self._finished(query, done))

    def _finished(self, query: LiveQuery, task: asyncio.Task[None]) -> None:
        self._reruns.discard(task)
        query.running = False
        if query.dirty and query.subscribers and not task.cancelled():
            self._schedule(query)

    async def _rerun(self, query: LiveQuery, changed_at: float | None = None) -> None:
        async with self._slots:
            try:
                result = await self._run(query.action, query.payload, query.caller)
            except WsdError as error:  # e.g. the subscribed lead was deleted, or PostgreSQL is down
                log.info("live re-run answered an error", action=query.action.name, code=str(error.code))
                return
            except Exception:
                log.exception("live re-run failed", action=query.action.name)
                return
        query.reruns += 1
        self.reruns += 1
        answer = encode_answer(result)
        pushed = False
        for (subscriber, subscription), sent in list(query.subscribers.items()):
            if sent != answer:
                query.subscribers[(subscriber, subscription)] = answer
                subscriber.push_update(subscription, update_frame(subscription, answer))
                self.updates_sent += 1
                pushed = True
        if pushed and changed_at is not None:
            self.observe_push_lag(time.monotonic() - changed_at)

    async def close(self) -> None:
        for query in self._queries.values():
            if query.timer is not None:
                query.timer.cancel()
        for task in list(self._reruns):
            task.cancel()
        if self._reruns:
            await asyncio.wait(self._reruns)

    def stats(self) -> dict[str, int]:
        return {"queries": len(self._queries),
                "subscriptions": sum(len(q.holders) for q in self._queries.values()),
                "reruns": self.reruns, "reruns_delayed": self.reruns_delayed,
                "updates_sent": self.updates_sent}


class ChangeHints:
    """The `changes` hints to clients, at most one per topic per `interval` seconds.

    The AI agent's activity raises a topic many times a second, and each hint is a frame to
    every connection: relaying each one cost more CPU than the live re-runs themselves. A hint
    says only that a topic changed, so the ones within an interval say it once.
    """

    def __init__(self, publish: Callable[[str, Any], None], interval: float = 0.25) -> None:
        self._publish = publish
        self._interval = interval
        self._pending: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None

    def changed(self, topic: str) -> None:
        self._pending.add(topic)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._flush)

    def _flush(self) -> None:
        self._timer = None
        topics, self._pending = sorted(self._pending), set()
        for topic in topics:
            self._publish(HINT_TOPIC, {"topic": topic})

