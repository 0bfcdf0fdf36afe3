"""Counters that protect the daemon from floods, in constant memory.

`FailureThrottle` counts failed logins and refused tokens per client address per minute;
`QuietLog` turns a flood of identical refusals into one log line per reason every few
seconds with the count, so an attack cannot fill the disk through the log either.
"""

from __future__ import annotations

import time
from typing import Any, Callable


__all__ = ["FailureThrottle", "QuietLog"]

# Addresses remembered at most; past it the oldest minute's entries are forgotten first.
MAX_ADDRESSES = 100_000


class FailureThrottle:
    """Failed authentications per address in the current minute; `blocked` past the limit."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._minute = -1
        self._failures: dict[str, int] = {}

    def _roll(self) -> None:
        minute = int(self._clock() // 60)
        if minute != self._minute or len(self._failures) > MAX_ADDRESSES:
            self._minute = minute
            self._failures = {}

    def failed(self, address: str) -> None:
        self._roll()
        self._failures[address] = self._failures.get(address, 0) + 1

    def blocked(self, address: str) -> bool:
        self._roll()
        return self._failures.get(address, 0) >= self.per_minute


class QuietLog:
    """Logs an event at most once per `every` seconds per event and reason, with how many
    occurred since the last line."""

    def __init__(self, logger: Any, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._every = every
        self._clock = clock
        self._pending: dict[tuple[str, Any], tuple[int, dict[str, Any]]] = {}
        self._last: dict[tuple[str, Any], float] = {}

    def warning(self, event: str, **fields: Any) -> None:
        now = self._clock()
        key = (event, fields.get("reason"))
        self._pending[key] = (self._pending[key][0] + 1, fields) if key in self._pending else (1, fields)
        if now - self._last.get(key, -self._every) >= self._every:
            self._write(key, now)

    def flush(self, force: bool = False) -> None:
        """Write the counts held back for a full interval (all of them when `force`, at
        shutdown), so a flood that stops is still reported whole."""
        now = self._clock()
        for key in list(self._pending):
            if force or now - self._last.get(key, -self._every) >= self._every:
                self._write(key, now)

    def _write(self, key: tuple[str, Any], now: float) -> None:
        count, fields = self._pending.pop(key)
        self._log.warning(key[0], count=count, **fields)
        self._last[key] = now
