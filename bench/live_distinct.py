"""live-distinct: what distinct live queries cost PostgreSQL and wsd under the agent's writes.

Every viewer looking at another lead is another live query (`get_lead_with_complete_data`
of its own lead): none shares a re-run, and every write the simulated AI agent makes to a
lead, user, message or conversation marks them all. The scenario holds `queries` of them
(100 per connection) while `wsd demo-activity` writes for `seconds`, once with the re-run
budget (`live.max_reruns_per_second`, default 500) and once with it out of reach; a run with
no live query at all is the floor (the agent's writes alone). PostgreSQL and wsd CPU are
measured as in live-load (bench/live.py), on the same pinning. The runs write into a
throw-away copy of the seeded database, so the seeded one stays at its size.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import asyncpg

from bench.harness import Daemon, Data
from bench.live import (LIVE_ENV, SERVER_CPUS, Subscribers, demo_agent, load_average, measure_load,
                        metrics_connection)

PER_CONNECTION = 100   # live.max_subscriptions_per_connection
UNBOUNDED = "1000000"  # a re-run budget no run reaches


async def lead_ids(dsn: str, count: int) -> list[str]:
    connection = await asyncpg.connect(dsn)
    rows = await connection.fetch("SELECT id::text FROM lead_qualifications ORDER BY created_at DESC, id LIMIT $1",
                                  count)
    await connection.close()
    return [row[0] for row in rows]


@asynccontextmanager
async def scratch_copy(data: Data) -> AsyncIterator[None]:
    """`data.dsn` names a copy of the seeded database (CREATE DATABASE … TEMPLATE) until the
    end of the block; the copy is dropped then."""
    seeded = data.dsn
    admin = await asyncpg.connect(seeded)
    template = await admin.fetchval("SELECT current_database()")
    await admin.close()
    admin = await asyncpg.connect(seeded.replace(f"/{template}?", "/template1?"))
    await admin.execute("DROP DATABASE IF EXISTS live_distinct")
    await admin.execute(f'CREATE DATABASE live_distinct TEMPLATE "{template}"')
    data.dsn = seeded.replace(f"/{template}?", "/live_distinct?")
    try:
        yield
    finally:
        data.dsn = seeded
        await admin.execute("DROP DATABASE live_distinct WITH (FORCE)")
        await admin.close()


async def live_distinct(leads: int, queries: int, seconds: float, agent_rate: float,
                        budgets: list[str]) -> dict[str, Any]:
    """The floor, then `queries` distinct queries under each re-run budget in `budgets`
    ("default" or a number; "none" for out of reach)."""
    async with Data(leads) as data, scratch_copy(data):
        ids = await lead_ids(data.dsn, queries)
        assert len(ids) == queries, f"{leads} leads hold fewer than {queries} distinct queries"
        per_connection = [[{"resource": "leads", "action": "get_lead_with_complete_data",
                            "payload": {"lead_id": lead_id}} for lead_id in ids[n:n + PER_CONNECTION]]
                          for n in range(0, queries, PER_CONNECTION)]
        runs = {"floor": await _run(data, [], seconds, agent_rate, {})}
        for budget in budgets:
            env = {} if budget == "default" else \
                {"WSD_LIVE_MAX_RERUNS_PER_SECOND": UNBOUNDED if budget == "none" else budget}
            runs[f"budget {budget}"] = await _run(data, per_connection, seconds, agent_rate, env)
    floor = runs["floor"]
    for name, run in runs.items():
        if name != "floor":
            thousands = queries / 1000
            run["postgres_cores_per_1000_queries"] = (run["postgres_cpu_share"] - floor["postgres_cpu_share"]) / thousands
            run["wsd_cores_per_1000_queries"] = (run["wsd_cpu_share"] - floor["wsd_cpu_share"]) / thousands
    return {"leads": leads, "queries": queries, "seconds": seconds, "agent_rate": agent_rate, "runs": runs}


async def _run(data: Data, per_connection: list[list[dict]], seconds: float, agent_rate: float,
               env: dict[str, str]) -> dict[str, Any]:
    # A connection sends its 100 subscribes at once; one token holds them all.
    settings = {**LIVE_ENV, "WSD_SERVER_MAX_INFLIGHT_PER_CONNECTION": str(PER_CONNECTION),
                "WSD_LIVE_MAX_QUERIES_PER_TOKEN": "100000", "WSD_LIVE_MAX_QUERIES": "100000", **env}
    with Daemon(data.dsn, cache_ttl=2.0, cpus=SERVER_CPUS, env=settings) as daemon:
        async with metrics_connection(daemon) as ws:
            subscribers = await Subscribers.start(daemon, len(per_connection), per_connection)
            agent = demo_agent(data.dsn, agent_rate)
            try:
                # One timestamped commit a second, as in live-load (its figures are not used here).
                _, arrivals, before, after, written = await measure_load(ws, daemon, data, subscribers, agent,
                                                                         seconds, 1.0)
            finally:
                agent.kill()
                agent.wait()
                subscribers.kill()
    elapsed = after[3] - before[3]
    return {"subscriptions": subscribers.ready["subscriptions"], "live_after": after[0],
            "load_average_before": before[4], "load_average_after": load_average(),
            "postgres_cpu_share": (after[2] - before[2]) / elapsed,
            "wsd_cpu_share": (after[1] - before[1]) / elapsed,
            "reruns_per_s": (after[0]["reruns"] - before[0]["reruns"]) / elapsed,
            "reruns_delayed_per_s": (after[0]["reruns_delayed"] - before[0]["reruns_delayed"]) / elapsed,
            "updates_sent_per_s": (after[0]["updates_sent"] - before[0]["updates_sent"]) / elapsed,
            "updates_delivered": len(arrivals["arrivals"]["t"]), "errors": arrivals["errors"],
            "agent_rows_written_per_s": written}
