"""This instance's own figures, read where they are kept: for the real-time dashboard
(`snapshot`, through `Runtime.figures`) and for /metrics' scrape-time series (the
`wsd.metrics_export.DaemonState` it implements)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable

import asyncpg

from wsd.cache import SingleFlightCache
from wsd.live import LiveQueries
from wsd.metrics import RequestTally
from wsd.routes import Readiness
from wsd.runtime import INSTANCE
from wsd.sessions import Sessions

__all__ = ["DaemonFigures"]


class DaemonFigures:
    """Reads the sessions, the request counter, the pool, the cache and the live queries."""

    def __init__(self, sessions: Sessions, requests: RequestTally, pool: asyncpg.Pool,
                 cache: SingleFlightCache | None, live: LiveQueries, readiness: Readiness) -> None:
        self.pool = pool
        self.readiness = readiness
        self._sessions = sessions
        self._requests = requests
        self._cache = cache
        self._live = live
        self._started_at = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        """This instance's own numbers for the real-time dashboard."""
        cache = self._cache
        return {
            "instance": INSTANCE,
            "connections": self._sessions.authenticated(),
            "people": self._sessions.people(),
            **self._requests.summary(),
            "pool": {"size": self.pool.get_size(), "idle": self.pool.get_idle_size(),
                     "max": self.pool.get_max_size()},
            "uptime_seconds": round(time.monotonic() - self._started_at, 1),
            "cache": dataclasses.asdict(cache.stats) if cache is not None else None,
            "slow_clients_dropped": self.slow_clients_dropped,
            "live": self._live.stats(),
        }

    # -- wsd.metrics_export.DaemonState ----------------------------------------------------------

    def roles(self) -> Iterable[str]:
        return (session.caller.role if session.caller else "unauthenticated"
                for session in self._sessions.all)

    def live_figures(self) -> dict[str, int]:
        return self._live.stats()

    @property
    def slow_clients_dropped(self) -> int:
        return self._sessions.slow_clients_dropped
