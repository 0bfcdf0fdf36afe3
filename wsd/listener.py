"""The change listener: one dedicated connection LISTENing on wsd's notification channels.

Writes through any wsd instance, and the AI agent's writes straight into PostgreSQL, are
announced with NOTIFY; this connection hears them. PostgreSQL does not queue notifications
for a connection that is gone, so after any reconnection the listener tells its handler
that notifications may have been missed (`ChangeHandler.resync`), and it drops or re-runs
everything once. A connection that silently stops answering is found by a periodic probe.

Example:
    >>> listener = ChangeListener(database.connect, EVENT_CHANNELS)
    >>> tasks.create_task(supervise("change listener", partial(listener.run, router)))
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Iterable, Protocol

import asyncpg
import structlog

__all__ = ["ChangeListener", "ChangeHandler"]

log = structlog.get_logger("wsd.listener")

_CONNECTION_FAILURES = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class ChangeHandler(Protocol):
    """Where the listener hands what it hears (`wsd.change_router.ChangeRouter`)."""

    def notified(self, channel: str, payload: str) -> None: ...

    def resync(self) -> None: ...


class ChangeListener:
    """Keeps a LISTEN connection open, reconnecting with backoff; `connected` says if it is."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], channels: Iterable[str],
                 *, probe_seconds: float = 5.0, max_backoff: float = 5.0) -> None:
        self._connect = connect
        self._channels = list(channels)
        self._probe_seconds = probe_seconds
        self._max_backoff = max_backoff
        self.connected = False
        self.reconnects = 0
        self.up = asyncio.Event()   # set once the first LISTEN is in place

    async def run(self, handler: ChangeHandler) -> None:
        """Listen until cancelled, handing `handler` every notification; every connection
        after the first also calls its `resync`."""
        backoff = 0.1
        while True:
            try:
                async with asyncio.timeout(10):
                    connection = await self._connect()
            except _CONNECTION_FAILURES as error:
                log.warning("change listener cannot connect", error=type(error).__name__,
                            retry_in_seconds=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.1
            try:
                await self._listen(connection, handler)
            finally:
                self.connected = False
                connection.terminate()

    async def _listen(self, connection: asyncpg.Connection, handler: ChangeHandler) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        relay = _Relay(handler)
        try:
            for channel in self._channels:
                await connection.add_listener(channel, relay)
        except _CONNECTION_FAILURES as error:
            log.warning("change listener could not LISTEN", error=type(error).__name__)
            return
        self.connected = True
        if self.up.is_set():
            self.reconnects += 1
            log.info("change listener reconnected; consumers resynchronise",
                     reconnects=self.reconnects)
            handler.resync()
        self.up.set()
        while not await self._lost_within(lost, self._probe_seconds):
            try:
                async with asyncio.timeout(self._probe_seconds):
                    await connection.fetchval("SELECT 1")
            except _CONNECTION_FAILURES as error:
                log.warning("change listener probe failed", error=type(error).__name__)
                return
        log.warning("change listener lost its connection")

    @staticmethod
    async def _lost_within(lost: asyncio.Event, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await lost.wait()
        except asyncio.TimeoutError:
            return False
        return True


class _Relay:
    """asyncpg's listener callback, handing the channel and payload on."""

    def __init__(self, handler: ChangeHandler) -> None:
        self._handler = handler

    def __call__(self, _connection: object, _pid: int, channel: str, payload: object) -> None:
        self._handler.notified(channel, str(payload))
