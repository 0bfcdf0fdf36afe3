"""Checking the kept aggregates: every kept figure recomputed from the raw tables and compared.

The dashboard's expensive figures are kept by triggers (migrations 0009, 0011, 0013, 0014) so that reads stay
cheap at any size; a trigger bug, a bulk load with triggers off, or a hand edit would make
them silently wrong. `wsd verify-aggregates` and the tests run `differences()` to catch that.

Example:
    async with pool.acquire() as connection:
        for difference in await differences(connection, load_queries()):
            print(difference)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from wsd.queries import Queries, one_row

__all__ = ["Difference", "differences"]

# The kept figures, each with the query that lists where it differs from its recomputation.
CHECKS = ("lead_step_count_differences", "step_hours_differences", "step_interval_count_differences",
          "requirement_item_name_differences", "activity_count_differences",
          "reply_delay_count_differences", "lead_cohort_count_differences", "step_entry_count_differences",
          "lead_step_time_differences", "step_time_count_differences", "requirement_item_day_differences",
          "step_interval_day_differences", "handoff_differences")

# The windows whose agent-performance percentiles are checked against percentile_cont, as
# (start, end) before the check's own clock: the dashboard's default week, the week before
# it, and the longest period it accepts (90 days). None is aligned to an hour, so both the
# kept whole hours and the raw-row ends are exercised.
PERCENTILE_WINDOWS = ((dt.timedelta(days=7), dt.timedelta(0)), (dt.timedelta(days=14), dt.timedelta(days=7)),
                      (dt.timedelta(days=90), dt.timedelta(0)))


@dataclass(frozen=True)
class Difference:
    """One kept figure that does not match the raw tables."""
    figure: str
    key: str
    kept: str | None
    recomputed: str | None

    def __str__(self) -> str:
        return f"{self.figure} [{self.key}]: kept {self.kept}, recomputed {self.recomputed}"


async def differences(connection: asyncpg.Connection, queries: Queries) -> list[Difference]:
    """Every kept figure that differs from its recomputation; empty when all agree.

    Runs in one repeatable-read transaction, so kept rows and raw rows are read from the same
    snapshot while writers go on. Also checks the answers read through kept rows against the
    exact computation: conversion_stats' medians against percentile_cont over every pair of
    step entries, and agent_performance's reply-delay median and p90 against percentile_cont
    over the window's replies (PERCENTILE_WINDOWS).
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
        now = dt.datetime.now(dt.timezone.utc)
        for start, end in PERCENTILE_WINDOWS:
            found.extend(await _percentile_differences(connection, queries, now - start, now - end))
    return found


async def _percentile_differences(connection: asyncpg.Connection, queries: Queries,
                                  since: dt.datetime, until: dt.datetime) -> list[Difference]:
    """agent_performance's median and p90 in [since, until) where they are not bit-equal to
    percentile_cont's: the kept histogram only says where to look, so any difference is a bug."""
    row = one_row(await queries.dashboard.agent_performance(connection, since=since, until=until))
    replies: Any = row["replies"]
    if isinstance(replies, str):  # a connection without wsd's json codec
        replies = orjson.loads(replies)
    exact = one_row(await queries.aggregates.exact_reply_percentiles(connection, since=since, until=until))
    return [Difference(f"agent_performance {name}", f"{since.isoformat()} to {until.isoformat()}",
                       repr(replies[name]), repr(exact[name]))
            for name in ("median", "p90") if replies[name] != exact[name]]
