"""Live re-runs: when each live query runs again, and sending its new answer.

A query marked changed re-runs at most once per `live.min_interval_ms` (the last change of
a burst always gets its re-run), within `live.max_reruns_per_second` for the whole process
(`RerunBudget`) and `live.max_concurrent_reruns` at once; each subscriber is sent the new
answer only when it differs from the last one it was sent. Who may subscribe, and the
limits on queries, is wsd/live.py's job.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Protocol

import orjson
import structlog

from wsd.actions import Action, Caller, Paged
from wsd.config import LiveConfig
from wsd.errors import WsdError
from wsd.protocol import encode

__all__ = ["LiveQuery", "LiveReruns", "RerunBudget", "Run", "Subscriber", "encode_answer"]

log = structlog.get_logger("wsd.live_reruns")

Run = Callable[[Action, dict[str, Any], Caller], Awaitable[Any]]


class Subscriber(Protocol):
    """What a live query needs of a connection (the server's Session)."""

    caller: Caller | None
    # Its subscriptions, those still waiting for their first answer included.
    subscriptions: dict[str, "LiveQuery"]
    # Set when the connection ended: a subscribe still running must not register then.
    closed: bool

    def push_update(self, subscription: str, frame: bytes) -> None: ...


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


class LiveReruns:
    """The re-runs of every live query of this process: their timing, budget and sending."""

    def __init__(self, run: Run, settings: LiveConfig,
                 observe_push_lag: Callable[[float], None] = lambda _seconds: None) -> None:
        self._run = run
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrent_reruns)
        self._budget = RerunBudget(settings.max_reruns_per_second)
        self.reruns = 0
        self.reruns_delayed = 0
        self.updates_sent = 0
        # Seconds from a change reaching a query to its new answer going out (/metrics).
        self._observe_push_lag = observe_push_lag

    def schedule(self, query: LiveQuery) -> None:
        """The query's answer may have changed: re-run it when its interval allows."""
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
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(query, done))

    def _finished(self, query: LiveQuery, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        query.running = False
        if query.dirty and query.subscribers and not task.cancelled():
            self.schedule(query)

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
            self._observe_push_lag(time.monotonic() - changed_at)

    async def close(self, queries: Iterable[LiveQuery]) -> None:
        """Stop waiting re-runs of these queries and cancel the running ones."""
        for query in queries:
            if query.timer is not None:
                query.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
