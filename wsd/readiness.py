"""What /readyz answers: whether this instance can serve right now (the database answers and
the change listener is connected), without a readiness check ever reaching the database."""

from __future__ import annotations

import asyncio

import asyncpg

from wsd.listener import ChangeListener

__all__ = ["Readiness", "PROBE_SECONDS"]

# /readyz is at most this old; the probe gives the database this long to answer.
PROBE_SECONDS = 1.0


class Readiness:
    """What /readyz answers: the change listener's state, and the database's as a background
    probe last found it (at most PROBE_SECONDS old), so a flood of readiness checks never
    reaches the database. Ready = the pool answers and the listener is connected."""

    def __init__(self, pool: asyncpg.Pool, listener: ChangeListener) -> None:
        self._pool = pool
        self._listener = listener
        self._database: tuple[bool, str] = (False, "starting")

    def __call__(self) -> tuple[bool, str]:
        if not self._database[0]:
            return self._database
        return (True, "ready") if self._listener.connected else (False, "database unavailable: change listener reconnecting")

    async def check_database(self) -> None:
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                await self._pool.fetchval("SELECT 1")
        except Exception as error:  # any failure means not ready; say which
            self._database = (False, f"database unavailable: {type(error).__name__}")
        else:
            self._database = (True, "ready")

    async def probe(self) -> None:
        while True:
            await self.check_database()
            await asyncio.sleep(PROBE_SECONDS)
