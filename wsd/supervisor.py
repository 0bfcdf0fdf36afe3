"""Background work that never dies silently: crash → JSON log line with traceback → restart.

Every long-running task of the daemon (the change listener, the Outlook worker, the embedded
PostgreSQL watch, the slow-client sweep) runs under `supervise`, inside the daemon's one
`TaskGroup`. A crash is logged with its traceback and the task restarted after a backoff
that doubles up to `max_backoff` and starts again from `first_backoff` once a run has lasted
a minute. Only `Fatal` ends the daemon: the TaskGroup then cancels everything else, the
lifespan unwinds, and the process exits non-zero so systemd restarts it.

Example:
    >>> async with asyncio.TaskGroup() as tasks:
    ...     tasks.create_task(supervise("outlook worker", calendar.run_worker))
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import structlog

__all__ = ["Fatal", "supervise"]

log = structlog.get_logger("wsd.supervisor")

# A run that lasted this long was healthy: the next crash starts the backoff afresh.
HEALTHY_RUN_SECONDS = 60.0


class Fatal(Exception):
    """A failure that restarting the task cannot mend: the daemon must stop (exit 1)."""


async def supervise(name: str, run: Callable[[], Awaitable[None]], *,
                    first_backoff: float = 0.5, max_backoff: float = 30.0,
                    delay: Callable[[float], float] | None = None) -> None:
    """Run `run()` until cancelled, restarting it whenever it returns or raises.

    Args:
        name: what the log lines call the task.
        run: makes one run of the task; a return is logged as unexpected and restarted too.
        first_backoff: seconds before the first restart.
        max_backoff: the longest wait between restarts.
        delay: given the backoff, the wait before this restart: a caller who knows that
            waiting would hurt more than a crash loop shortens it (`wsd.workers`).
    """
    backoff = first_backoff
    while True:
        started = time.monotonic()
        failure: Exception | None = None
        try:
            await run()
        except (asyncio.CancelledError, Fatal):
            raise
        except Exception as error:
            failure = error
        if time.monotonic() - started >= HEALTHY_RUN_SECONDS:
            backoff = first_backoff
        wait = backoff if delay is None else delay(backoff)
        if failure is not None:
            log.error("background task crashed", task=name, restart_in_seconds=wait,
                      exc_info=failure)
        else:
            log.error("background task returned", task=name, restart_in_seconds=wait)
        await asyncio.sleep(wait)
        backoff = min(backoff * 2, max_backoff)
