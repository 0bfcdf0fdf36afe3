"""Exports: a list read's whole result as CSV, streamed from a server-side cursor.

An export mirrors one paginated read (`leads.get_all_leads`, ...): the same payload type,
role and filters, every row instead of a page. The read's own statement runs on a cursor in
a read-only transaction, wrapped so that PostgreSQL turns each row's JSON document into
one CSV line (`csv_line`, migration 0014); `BATCH_ROWS` lines at a time are joined and
handed to `send` (the server's bounded send path, which waits while the client is behind),
so wsd holds one batch at a time whatever the list's size, and spends little more than a
join per batch on it (bench/export.py measured a Python formatter at 5× the other clients'
median latency).

CSV: RFC 4180 (comma, `"` quoting, CRLF line ends), UTF-8, a header row, optionally a
byte-order mark first (Excel wants it to read UTF-8). Nested documents are flattened into
the export's dotted columns (`user.email`); a null is an empty cell, other values their
JSON text (strings unquoted; a trail entry's `payload` object as JSON). A cell that begins
with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'` (OWASP's CSV-injection
advice), so a spreadsheet shows it as text instead of running it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

from wsd.database import statement_of
from wsd.dispatcher import Caller, Context, Payload
from wsd.trail import entry_fields

__all__ = ["Export", "BATCH_ROWS", "PAGING", "run_export"]

# Rows per cursor fetch and chunk: ~100 kB of CSV for leads, under half the default send
# limit, so a chunk goes out as soon as the client has read the one before.
BATCH_ROWS = 300
BOM = "\ufeff"
# The read's paging fields, which an export (the whole list) does without.
PAGING = ("limit", "cursor")

Parameters = Callable[[Context, Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Export:
    """One exportable list.

    Args:
        name: the export's action (`export.<name>`) and file name.
        read: the (resource, action) it mirrors: its payload type and role apply.
        query: the read's SQL as (folder, name); its keyset and page-size parameters get
            NULL (LIMIT NULL: every row).
        document: the column of the query's rows holding the JSON document.
        parameters: the read's filters as the query's keyword parameters.
        columns: the CSV columns, dotted paths into the document, in order.
    """
    name: str
    read: tuple[str, str]
    query: tuple[str, str]
    document: str
    parameters: Parameters
    columns: tuple[str, ...]


async def _batches(ctx: Context, export: Export, arguments: Payload) -> AsyncIterator[tuple[str, int]]:
    """The export's rows as CSV text, a batch at a time, each with its count of rows."""
    sql, names = statement_of(ctx.queries, *export.query)
    parameters = export.parameters(ctx, arguments)
    values = [parameters.get(name) for name in names]  # keyset and page size: NULL
    # The read's statement as it is, each row's document made a CSV line; the subquery's
    # ORDER BY is kept (nothing above it joins, groups or sorts).
    lines = (f"SELECT csv_line(r.{export.document}::json, ${len(names) + 1}::text[]) "
             f"FROM ({sql.strip().rstrip(';')}) AS r")
    async with ctx.pool.acquire() as connection, connection.transaction(readonly=True):
        cursor = await connection.cursor(lines, *values, list(export.columns))
        while rows := await cursor.fetch(BATCH_ROWS):
            yield "".join([row[0] for row in rows]), len(rows)


async def run_export(ctx: Context, export: Export, arguments: Payload, bom: bool,
                     send: Callable[[str], Awaitable[None]]) -> dict[str, Any]:
    """Stream the export's CSV to `send` (header first) and put it on the trail, whatever
    its outcome. Returns {filename, content_type, rows}.

    `send` raises to stop the export (the client went away); the error propagates after
    the trail entry is written with outcome `failed`.
    """
    header = (BOM if bom else "") + ",".join(export.columns) + "\r\n"   # names need no quoting
    rows = 0
    outcome = "failed"
    try:
        await send(header)
        async for text, count in _batches(ctx, export, arguments):
            await send(text)
            rows += count
        outcome = "completed"
    finally:
        await _record(ctx, export, arguments, f"{outcome} ({rows} rows)")
    return {"filename": f"{export.name}.csv", "content_type": "text/csv; charset=utf-8", "rows": rows}


async def _record(ctx: Context, export: Export, arguments: Payload, outcome: str) -> None:
    """The export's trail entry: who, which list with which filters (masked), how it ended."""
    caller: Caller = ctx.caller
    fields = entry_fields(arguments, None)
    fields["payload"] = {k: v for k, v in fields["payload"].items() if k not in PAGING}
    await ctx.queries.trail.record_entry(
        ctx.pool, actor=caller.name, actor_role=caller.role, resource="export", action=export.name,
        outcome=outcome, **fields)
