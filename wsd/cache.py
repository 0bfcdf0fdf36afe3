"""A single-flight TTL cache for aggregate answers.

Many dashboard tabs ask the same question every few seconds: identical concurrent requests
share one computation, answers live `ttl` seconds, and `invalidate(topics)` (on a write)
makes the next request for an answer that depends on those topics compute afresh. A
computation that started before an invalidation of its topics is handed to the requests
that were waiting for it but never stored, so a write is visible to every request that
arrives after it.

Example:
    >>> cache = SingleFlightCache(ttl=2.0)
    >>> stats = await cache.get(("dashboard", "get_dashboard_stats"), {"leads"}, compute_stats)
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Collection, Final, Hashable, Iterable

__all__ = ["SingleFlightCache", "CacheStats", "Missing", "MISS"]


class Missing(enum.Enum):
    """What `peek` returns when no fresh answer is stored: a member of its own type, so it
    can never be mistaken for a stored answer (None is one)."""

    MISS = enum.auto()


MISS: Final = Missing.MISS


@dataclass
class CacheStats:
    hits: int = 0       # answered from a stored entry
    joined: int = 0     # waited for a computation another request started
    computed: int = 0   # ran the computation (one database query each)
    invalidations: int = 0


class SingleFlightCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.stats = CacheStats()
        self._clock = clock
        self._generation = 0                      # bumped by a whole-cache invalidation
        self._topic_generations: dict[str, int] = {}
        self._entries: dict[Hashable, tuple[float, Hashable, Any]] = {}
        self._inflight: dict[tuple[Hashable, Hashable], asyncio.Future[Any]] = {}
        # Stamps of frozen topic sets, forgotten at every invalidation.
        self._stamps: dict[frozenset[str], Hashable] = {}

    def invalidate(self, topics: Iterable[str] | None = None) -> None:
        """Forget stored answers that depend on `topics` (every answer when None, as after a
        listener reconnection); such computations already running will not be stored."""
        self.stats.invalidations += 1
        self._stamps.clear()
        if topics is None:
            self._generation += 1
            self._entries.clear()
            return
        for topic in topics:
            self._topic_generations[topic] = self._topic_generations.get(topic, 0) + 1

    def _stamp(self, topics: Collection[str]) -> Hashable:
        """What must be unchanged for an answer depending on `topics` to stay good."""
        if type(topics) is frozenset:
            stamp = self._stamps.get(topics)
            if stamp is None:
                stamp = self._stamps[topics] = self._compute_stamp(topics)
            return stamp
        return self._compute_stamp(topics)

    def _compute_stamp(self, topics: Collection[str]) -> Hashable:
        return self._generation, tuple(self._topic_generations.get(t, 0) for t in sorted(topics))

    def peek(self, key: Hashable, topics: Collection[str]) -> Any:
        """The stored answer if it is still good (counted as a hit), else `MISS`; never waits."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock() and entry[1] == self._stamp(topics):
            self.stats.hits += 1
            return entry[2]
        return MISS

    async def get(self, key: Hashable, topics: Collection[str], compute: Callable[[], Awaitable[Any]]) -> Any:
        value = self.peek(key, topics)
        if value is not MISS:
            return value
        generation = self._stamp(topics)
        flight = self._inflight.get((key, generation))
        if flight is not None:
            self.stats.joined += 1
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        self._inflight[(key, generation)] = flight
        self.stats.computed += 1
        try:
            value = await compute()
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except Exception as error:
            flight.set_exception(error)
            flight.exception()  # retrieved here so a flight nobody joined logs nothing
            raise
        else:
            flight.set_result(value)
            if self._stamp(topics) == generation:
                self._entries[key] = (self._clock() + self.ttl, generation, value)
            return value
        finally:
            del self._inflight[(key, generation)]
