"""systemd's notify protocol: READY=1, STATUS=, STOPPING=1 and WATCHDOG=1 as datagrams.

With `Type=notify` systemd passes a datagram socket in $NOTIFY_SOCKET (a path, or an
abstract name written with a leading `@`) and counts the service started only when READY=1
arrives, so `systemctl start` and units ordered after wsd wait for the pool, the migrations
and the change listener. With `WatchdogSec=` it also passes $WATCHDOG_USEC; WATCHDOG=1 must
then arrive more often than that or systemd kills and restarts the service. The pings come
from a task on the event loop, so a loop blocked by a bug stops them: that is the point.

The protocol is a few lines, so no library. Without $NOTIFY_SOCKET every call does nothing.

Example:
    >>> notifier = Notifier.from_environment()
    >>> notifier.send("READY=1", "STATUS=serving")
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from typing import MutableMapping

import structlog

__all__ = ["Notifier", "install_test_loop_block"]

log = structlog.get_logger("wsd.sdnotify")

# Hidden, test-only: with this set, SIGUSR2 blocks the event loop for that many seconds, so a
# test can see the watchdog pings stop. Unset (always, in production) SIGUSR2 is untouched.
TEST_BLOCK_ENV = "WSD_TEST_BLOCK_LOOP_SECONDS"


class Notifier:
    """Sends notify datagrams to systemd (or to nobody, when not started by systemd)."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Take (and remove, as sd_notify's unset_environment does) the variables systemd
        set, so processes wsd starts (the embedded PostgreSQL) do not notify in its name."""
        environ = os.environ if environ is None else environ
        address = environ.pop("NOTIFY_SOCKET", None) or None
        usec = environ.pop("WATCHDOG_USEC", None)
        pid = environ.pop("WATCHDOG_PID", None)
        watchdog = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(address, watchdog)

    @property
    def watchdog_seconds(self) -> float | None:
        """How often to ping: half the watchdog timeout (what sd_watchdog_enabled advises)."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec and self.address else None

    def send(self, *fields: str) -> bool:
        """One datagram of `KEY=value` lines. Never blocks and never raises: a lost status
        line must not take the daemon down. Returns whether it was sent."""
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(fields).encode(), target)
        except OSError as error:
            log.warning("sd_notify failed", error=type(error).__name__, fields=fields[0])
            return False
        return True

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    async def watchdog(self) -> None:
        """WATCHDOG=1 every `watchdog_seconds`, from the event loop (run it supervised)."""
        interval = self.watchdog_seconds
        if interval is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)


def install_test_loop_block(loop: asyncio.AbstractEventLoop,
                            environ: MutableMapping[str, str] | None = None) -> None:
    """The test-only trigger of a blocked loop (see TEST_BLOCK_ENV); nothing when unset."""
    environ = os.environ if environ is None else environ
    seconds = environ.get(TEST_BLOCK_ENV)
    if not seconds:
        return
    log.warning("test hook armed: SIGUSR2 blocks the event loop", seconds=float(seconds))
    loop.add_signal_handler(signal.SIGUSR2, time.sleep, float(seconds))
