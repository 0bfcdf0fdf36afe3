"""The listening transport's life around the request pipeline: started on the chosen
transport, then drained at shutdown — stop accepting, give in-flight requests the grace,
close clients with 1001, abort the sockets of those that do not close in time."""

from __future__ import annotations

import asyncio
from functools import partial

import structlog

from wsd.config import ServerConfig
from wsd.transport import CLOSE_SECONDS, ConnectionHandler, Listening, ListeningFactory

__all__ = ["Serving"]

log = structlog.get_logger("wsd.serving")


class Serving:
    """One listening transport and the request tasks running on its connections."""

    def __init__(self, settings: ServerConfig, transport: ListeningFactory) -> None:
        self._settings = settings
        self._transport = transport
        self._inflight: set[asyncio.Task[None]] = set()
        self._listening: Listening | None = None
        self.draining = False   # shutdown began: new requests are answered `unavailable`

    async def start(self, handler: ConnectionHandler, reuse_port: bool) -> None:
        listening = self._transport(handler, self._settings)
        await listening.start(reuse_port)
        self._listening = listening

    @property
    def port(self) -> int:
        assert self._listening is not None
        return self._listening.port

    def track(self, task: asyncio.Task[None], session_inflight: set[asyncio.Task[None]]) -> None:
        """A request task, in flight (on its session too) until it ends."""
        session_inflight.add(task)
        self._inflight.add(task)
        task.add_done_callback(partial(self._forget, session_inflight))

    def _forget(self, session_inflight: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        """A request task ended (or was cancelled before it started): in flight no more."""
        session_inflight.discard(task)
        self._inflight.discard(task)

    async def shutdown(self) -> None:
        """Stop accepting; give in-flight requests the grace (then answer them `unavailable`);
        close clients with 1001 and abort the sockets of those that do not close in time."""
        listening = self._listening
        assert listening is not None
        self.draining = True
        listening.stop_accepting()
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight),
                                         timeout=self._settings.shutdown_grace_seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=CLOSE_SECONDS / 2)
        listening.close_connections()  # 1001 (going away)
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await listening.wait_closed()
        except asyncio.TimeoutError:
            # Including connections whose session has ended but whose TCP close is stuck
            # behind unread data.
            stuck = listening.abort_remaining()
            if stuck:
                log.warning("clients did not close in time; aborting their sockets", count=stuck)
