"""Where a change goes once PostgreSQL announced it: the one object the change listener
hands every notification and every resynchronisation to.

A `changes` notification ({"topic": ...}) drops the topic's cached answers
(`SingleFlightCache.invalidate`), re-runs its live queries (`LiveQueries.changed`) and
sends a `changes` hint (`ChangeHints`, batched); any other channel's payload is pushed to
clients as the event `wsd.topics.EVENT_CHANNELS` names. A resync (the listener reconnected
and may have missed notifications, or local midnight moved "today") does all three for
every topic.
"""

from __future__ import annotations

from typing import Any, Callable

import orjson

from wsd.cache import SingleFlightCache
from wsd.live import HINT_TOPIC, ChangeHints, LiveQueries
from wsd.topics import CHANGES_CHANNEL, EVENT_CHANNELS

__all__ = ["ChangeRouter"]


class ChangeRouter:
    """Notifications and resyncs → cache invalidation, live re-runs, hints and events."""

    def __init__(self, cache: SingleFlightCache | None, live: LiveQueries,
                 publish: Callable[[str, Any], None]) -> None:
        self._cache = cache
        self._live = live
        self._publish = publish
        self._hints = ChangeHints(publish)

    def notified(self, channel: str, payload: str) -> None:
        """One NOTIFY on one of `EVENT_CHANNELS`."""
        message = orjson.loads(payload)
        if channel != CHANGES_CHANNEL:
            self._publish(EVENT_CHANNELS[channel], message)
            return
        topic = message["topic"]
        if self._cache is not None:
            self._cache.invalidate({topic})
        self._live.changed({topic})
        self._hints.changed(topic)

    def resync(self) -> None:
        """Anything may have changed: drop every cached answer, re-run every live query."""
        if self._cache is not None:
            self._cache.invalidate()
        self._live.rerun_all()
        self._publish(HINT_TOPIC, {"topic": "*"})
