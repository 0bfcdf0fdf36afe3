"""Checking the kept aggregates: every kept figure recomputed from the raw tables and compared.

The dashboard's expensive figures are kept by triggers (migration 0008) so that reads stay
cheap at any size; a trigger bug, a bulk load with triggers off, or a hand edit would make
them silently wrong. `wsd verify-aggregates` and the tests run `differences()` to catch that.

Example:
    async with pool.acquire() as connection:
        for difference in await differences(connection, load_queries()):
            print(difference)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import asyncpg

__all__ = ["Difference", "differences"]

# The kept figures, each with the query that lists where it differs from its recomputation.
CHECKS = ("lead_step_count_differences", "step_hours_differences", "step_interval_count_differences",
          "requirement_item_name_differences", "activity_count_differences")


@dataclass(frozen=True)
class Difference:
    """One kept figure that does not match the raw tables."""
    figure: str
    key: str
    kept: str | None
    recomputed: str | None

    def __str__(self) -> str:
        return f"{self.figure} [{self.key}]: kept {self.kept}, recomputed {self.recomputed}"


async def differences(connection: asyncpg.Connection, queries: SimpleNamespace) -> list[Difference]:
    """Every kept figure that differs from its recomputation; empty when all agree.

    Runs in one repeatable-read transaction, so kept rows and raw rows are read from the same
    snapshot while writers go on. Also checks that conversion_stats' medians (read through
    the kept rows) equal percentile_cont over every pair of step entries.
    """
    found: list[Difference] = []
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        for check in CHECKS:
            figure = check.removesuffix("_differences")
            found.extend([Difference(figure, row["key"], row["kept"], row["recomputed"])
                          async for row in getattr(queries.aggregates, check)(connection)])
        kept = {row["to_step"]: row["median_hours"] async for row in queries.leads.conversion_stats(connection)}
        async for row in queries.aggregates.exact_conversion_medians(connection):
            if kept.get(row["to_step"]) != row["median_hours"]:
                found.append(Difference("conversion_stats median_hours", row["to_step"],
                                        repr(kept.get(row["to_step"])), repr(row["median_hours"])))
    return found
