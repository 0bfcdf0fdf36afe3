"""The database brought up to date, once for every command that needs it: start it (the
embedded PostgreSQL when configured), apply pending migrations, seed the demo data when
asked, and stop it at the end — shared by `wsd serve`, its workers' parent and the CLI's
database commands.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import structlog

from wsd import demo
from wsd.config import Config
from wsd.database import Database, apply_migrations

__all__ = ["prepared_database"]

log = structlog.get_logger("wsd.startup")


@asynccontextmanager
async def prepared_database(config: Config, *, pooled: bool = True, seed_demo: bool = False,
                            name: str = "wsd") -> AsyncIterator[Database]:
    """The started, migrated (and with `seed_demo`, seeded when empty) database; stopped on
    exit, also when start-up fails half-way. `pooled`: with the daemon's pool; `name`: the
    application_name of the connection that migrates."""
    database = Database(config)
    try:
        await database.start(pooled=pooled)
        connection = await database.connect(name)
        try:
            applied = await apply_migrations(connection)
            if applied:
                log.info("migrations applied", names=applied)
            if seed_demo:
                await demo.seed_if_empty(connection, leads=demo.DEFAULT_LEADS, seed=1)
        finally:
            await connection.close()
        yield database
    finally:
        await database.stop()
