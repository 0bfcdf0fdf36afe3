"""The daemon's own request counters: rate and latency over the last minute, in constant memory.

Each of the last 60 seconds has a request count and a latency histogram with geometric
bins (each 25 % wider than the last, 0.05 ms to about a minute), so percentiles come out
within one bin's width (±12 %) whatever the traffic, and memory never grows.
"""

from __future__ import annotations

import math
import time
from typing import Callable

__all__ = ["RequestStats"]

WINDOW_SECONDS = 60
SMALLEST_MS = 0.05
GROWTH = 1.25
BINS = 64


def _bin_of(latency_ms: float) -> int:
    if latency_ms <= SMALLEST_MS:
        return 0
    return min(BINS - 1, 1 + int(math.log(latency_ms / SMALLEST_MS, GROWTH)))


def _bin_middle_ms(index: int) -> float:
    """The geometric middle of a bin: the value a percentile falling in it is reported as."""
    if index == 0:
        return SMALLEST_MS
    return float(SMALLEST_MS * GROWTH ** (index - 0.5))


class RequestStats:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seconds = [-1] * WINDOW_SECONDS        # which second each slot holds
        self._counts = [[0] * BINS for _ in range(WINDOW_SECONDS)]

    def record(self, latency_ms: float) -> None:
        second = int(self._clock())
        slot = second % WINDOW_SECONDS
        if self._seconds[slot] != second:
            self._seconds[slot] = second
            self._counts[slot] = [0] * BINS
        self._counts[slot][_bin_of(latency_ms)] += 1

    def summary(self) -> dict[str, float | int | None]:
        """Requests in the last minute, per second, and p50/p95 latency in milliseconds."""
        now = int(self._clock())
        merged = [0] * BINS
        for slot, second in enumerate(self._seconds):
            if now - WINDOW_SECONDS < second <= now:
                for index, count in enumerate(self._counts[slot]):
                    merged[index] += count
        total = sum(merged)
        return {"requests_last_minute": total,
                "requests_per_second": round(total / WINDOW_SECONDS, 3),
                "p50_ms": self._percentile(merged, total, 0.50),
                "p95_ms": self._percentile(merged, total, 0.95)}

    @staticmethod
    def _percentile(merged: list[int], total: int, fraction: float) -> float | None:
        if total == 0:
            return None
        rank = math.ceil(fraction * total)
        running = 0
        for index, count in enumerate(merged):
            running += count
            if running >= rank:
                return round(_bin_middle_ms(index), 3)
        return None  # unreachable: running reaches total
