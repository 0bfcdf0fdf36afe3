"""The flood guards on their own: failure counts per address, and the aggregated refusal log."""

from __future__ import annotations

from typing import Any

from wsd.guards import FailureThrottle, QuietLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def test_failures_block_an_address_for_the_rest_of_the_minute() -> None:
    clock = Clock()
    throttle = FailureThrottle(3, clock)
    for _ in range(3):
        assert not throttle.blocked("10.0.0.1")
        throttle.failed("10.0.0.1")
    assert throttle.blocked("10.0.0.1") and not throttle.blocked("10.0.0.2")
    clock.now += 60
    assert not throttle.blocked("10.0.0.1")


def test_a_flood_is_one_line_per_reason_per_interval_and_every_count_is_written() -> None:
    clock, out = Clock(), Lines()
    quiet = QuietLog(out, every=10, clock=clock)
    for _ in range(500):
        quiet.warning("handshake refused", reason="invalid_token", address="10.0.0.1")
    quiet.warning("handshake refused", reason="max_connections", address="10.0.0.1")
    assert [(e, f["reason"], f["count"]) for e, f in out.lines] == [
        ("handshake refused", "invalid_token", 1), ("handshake refused", "max_connections", 1)]
    clock.now += 5
    quiet.flush()
    assert len(out.lines) == 2                      # the interval is not over yet
    clock.now += 5
    quiet.flush()
    assert out.lines[-1][1]["count"] == 499         # the rest of the flood, once it is over
    for _ in range(7):
        quiet.warning("handshake refused", reason="invalid_token", address="10.0.0.9")
    quiet.flush(force=True)                         # at shutdown
    assert out.lines[-1][1] == {"count": 7, "reason": "invalid_token", "address": "10.0.0.9"}
