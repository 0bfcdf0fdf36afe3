"""A `--workers` worker's link to its parent: it stops when the parent is gone, and says
when it listens.

`kill -9` of the parent used to leave its workers serving as children of PID 1, beside the
next parent's. Each worker now gets one end of a socket pair (its descriptor number in
`WSD_PARENT_FD`); only the parent holds the other end, so the kernel closes it when the
parent dies, however it dies. The worker reads end-of-file and drains as on SIGTERM. This
needs neither systemd's cgroup nor Linux (PR_SET_PDEATHSIG is Linux-only, and fires when the
parent's *thread* ends, not its process), and it cannot miss a parent that died before the
worker started watching: the end-of-file is already there to read.

The same socket carries one message the other way, `listening`, so the parent knows which
workers serve the port (`wsd.workers` restarts the last of them without a backoff).
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Callable, MutableMapping

import structlog

__all__ = ["ParentLink", "PARENT_FD", "LISTENING"]

log = structlog.get_logger("wsd.parent")

PARENT_FD = "WSD_PARENT_FD"
LISTENING = b"listening\n"


class ParentLink:
    """The worker's end of the socket pair its parent made for it."""

    def __init__(self, link: socket.socket) -> None:
        self._link = link
        self._link.setblocking(False)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> ParentLink | None:
        """The link a `--workers` parent passed down; None for a process started otherwise.
        The variable is taken out, so nothing this process starts thinks it has the link."""
        fd = environ.pop(PARENT_FD, None)
        return cls(socket.socket(fileno=int(fd))) if fd else None

    def watch(self, on_gone: Callable[[], None]) -> None:
        """Call `on_gone` once the parent has exited (at once if it already has)."""
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                if self._link.recv(64):
                    return   # the parent sends nothing; ignore anything all the same
            except BlockingIOError:
                return
            except OSError:
                pass
            loop.remove_reader(self._link.fileno())
            log.warning("parent process gone; stopping", parent_fd=self._link.fileno())
            on_gone()

        loop.add_reader(self._link.fileno(), readable)

    def listening(self) -> None:
        """Tell the parent this worker now accepts connections on the port."""
        try:
            self._link.send(LISTENING)
        except OSError:
            pass   # the parent is gone: `watch` stops this worker
