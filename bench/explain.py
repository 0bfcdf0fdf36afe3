"""Print the plan of every lead and requirements query on a database, and flag full scans.

Usage: python -m bench.explain [--config PATH]   (the database of that config, e.g. after
`wsd seed --demo --leads 100000`). Each query runs under EXPLAIN ANALYZE with typical
parameters; a sequential scan of a big table is flagged.
"""

from __future__ import annotations

import argparse
import asyncio
import re

from wsd.config import load_config
from wsd.database import Database, load_queries

BIG_TABLES = ("lead_qualifications", "users", "messages", "lead_step_history", "lead_step_entries",
              "features", "integrations", "requirements", "bant_data", "conversations", "meetings")


async def explain_all(database: Database) -> int:
    queries = load_queries()
    connection = await database.connect()
    lead_id = await connection.fetchval("SELECT id FROM lead_qualifications ORDER BY created_at DESC OFFSET 500 LIMIT 1")
    requirements_id = await connection.fetchval("SELECT id FROM requirements LIMIT 1")
    cursor_row = await connection.fetchrow("SELECT created_at, id FROM lead_qualifications "
                                           "ORDER BY created_at DESC, id DESC OFFSET 100 LIMIT 1")
    cases = {
        "leads.all_leads (first page)": ("leads", "all_leads", dict(step=None, search=None, after_created_at=None, after_id=None, page_size=101)),
        "leads.all_leads (next page)": ("leads", "all_leads", dict(step=None, search=None, after_created_at=cursor_row["created_at"], after_id=cursor_row["id"], page_size=101)),
        "leads.all_leads (step)": ("leads", "all_leads", dict(step="bant", search=None, after_created_at=None, after_id=None, page_size=101)),
        "leads.all_leads (search)": ("leads", "all_leads", dict(step=None, search="garcía", after_created_at=None, after_id=None, page_size=101)),
        "leads.lead_pipeline": ("leads", "lead_pipeline", {}),
        "leads.lead_with_complete_data": ("leads", "lead_with_complete_data", dict(lead_id=lead_id)),
        "leads.lead_by_id": ("leads", "lead_by_id", dict(lead_id=lead_id)),
        "leads.conversion_stats": ("leads", "conversion_stats", {}),
        "leads.abandoned_leads": ("leads", "abandoned_leads", dict(days=7, after_activity_at=None, after_id=None, page_size=101)),
        "requirements.requirements_by_lead": ("requirements", "requirements_by_lead", dict(lead_id=lead_id)),
        "requirements.requirements_by_id": ("requirements", "requirements_by_id", dict(requirements_id=requirements_id)),
        "requirements.popular_items": ("requirements", "popular_items", dict(kind="features", top=10)),
    }
    full_scans = 0
    for title, (resource, name, params) in cases.items():
        group = getattr(queries, resource)
        # aiosql numbers parameters in order of first use in the SQL text.
        ordered = [params[p] for p in group.driver_adapter.var_sorted[name]]
        sql = getattr(group, name).sql
        await connection.fetch(sql, *ordered)  # once to warm the buffers: the plan shows steady state
        plan = await connection.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", *ordered)
        lines = [row[0] for row in plan]
        scans = [l for l in lines if re.search(rf"Seq Scan on ({'|'.join(BIG_TABLES)})\b", l)]
        full_scans += len(scans)
        print(f"\n== {title}{'   <-- FULL SCAN' if scans else ''}")
        print("\n".join(lines))
    await connection.close()
    return full_scans


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    args = parser.parse_args()
    database = Database(load_config(args.config))
    await database.start(pooled=False)
    try:
        scans = await explain_all(database)
    finally:
        await database.stop()
    print(f"\n{scans} full scans of big tables")


if __name__ == "__main__":
    asyncio.run(main())
