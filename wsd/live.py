"""Live queries: subscribe to any read action, get its new answer pushed when it changes.

Identical subscriptions (same role, same action, same payload) on every connection share
one `LiveQuery`: one re-run and one encoded answer, from which each subscriber's update
frame is cut. The role is part of it because a read may answer by role (the lead
document's `trail`) or be an admin's (`trail.get_trail`). A topic change marks the queries
that depend on it, and wsd/live_reruns.py re-runs each at most once per
`live.min_interval_ms` (a burst of writes is a handful of re-runs, and the last one always
runs after the last write); a subscriber is sent the answer only when it differs from
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
from collections import Counter
from typing import Any, Callable, Iterable

import orjson

from wsd.config import LiveConfig
from wsd.actions import Action, Caller, Payload, Role
from wsd.dispatcher import Dispatcher, validate_payload
from wsd.errors import InvalidPayload, NotFound, RateLimited, Unavailable
from wsd.live_reruns import LiveQuery, LiveReruns, Run, Subscriber, encode_answer

__all__ = ["LiveQueries", "ChangeHints", "LIVE_RESOURCE", "LIVE_ACTIONS", "HINT_TOPIC", "Hints"]

LIVE_RESOURCE = "live"
HINT_TOPIC = "changes"   # the event topic of ChangeHints


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


class LiveQueries:
    """Every live query of this process, by key and by topic: who may subscribe, within
    which limits, and which queries a change concerns (LiveReruns runs them again)."""

    def __init__(self, dispatcher: Dispatcher, run: Run, settings: LiveConfig,
                 observe_push_lag: Callable[[float], None] = lambda _seconds: None) -> None:
        self._dispatcher = dispatcher
        self._run = run
        self._settings = settings
        self._queries: dict[tuple[str, str, str, bytes], LiveQuery] = {}
        self._by_topic: dict[str, set[LiveQuery]] = {}
        self._per_token: Counter[str] = Counter()   # token name → distinct queries it holds
        self._reruns = LiveReruns(run, settings, observe_push_lag)
        self._next_id = 0

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
                self._reruns.schedule(query)
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
            self._reruns.schedule(query)

    def rerun_all(self) -> None:
        """Re-run every query (after a listener reconnection, and periodically)."""
        for query in list(self._queries.values()):
            self._reruns.schedule(query)

    async def rerun_periodically(self) -> None:
        """The safety net: answers that move with time alone ("today", "last 24 hours"), or
        a change whose notification was lost, reach subscribers within this interval."""
        while True:
            await asyncio.sleep(self._settings.safety_rerun_seconds)
            self.rerun_all()

    async def close(self) -> None:
        await self._reruns.close(self._queries.values())

    def stats(self) -> dict[str, int]:
        return {"queries": len(self._queries),
                "subscriptions": sum(len(q.holders) for q in self._queries.values()),
                "reruns": self._reruns.reruns, "reruns_delayed": self._reruns.reruns_delayed,
                "updates_sent": self._reruns.updates_sent}



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

