"""What a running daemon lends its handlers beyond the database: its own figures and, when
Outlook is on, the calendar sync.

The server builds one `Runtime` and puts it on every `Context`; a handler reads
`ctx.runtime.figures()` instead of reaching back into the server.

Example:
    >>> runtime = Runtime(figures=figures.snapshot, calendar=calendar_sync)
    >>> runtime.figures()["connections"]
    3
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from wsd.calendar_sync import CalendarSync

__all__ = ["Runtime", "INSTANCE"]

# Which process this is: host and pid (the workers of one machine share host and port). It is
# in get_real_time_metrics and in the User-Agent of calls to Microsoft Graph.
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"


def _no_figures() -> dict[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class Runtime:
    """`figures()`: the daemon's counters now (connections, request rates, latency, pool,
    uptime, cache); `calendar`: the Outlook sync, None while Outlook is disabled."""

    figures: Callable[[], dict[str, Any]] = _no_figures
    calendar: CalendarSync | None = None
