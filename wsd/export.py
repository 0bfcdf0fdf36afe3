"""Exports: a list read's whole result as CSV, streamed from a server-side cursor.

An export mirrors one paginated read (`leads.get_all_leads`, ...): the same payload type,
role and filters, every row instead of a page. Rows come from the read's own SQL through a
cursor in a read-only transaction, `BATCH_ROWS` at a time, each batch turned into CSV text
and handed to `send` (the server's bounded send path, which waits while the client is
behind), so wsd holds one batch at a time whatever the list's size.

CSV: RFC 4180 (comma, `"` quoting, CRLF line ends), UTF-8, a header row, optionally a
byte-order mark first (Excel wants it to read UTF-8). Nested documents are flattened into
the export's dotted columns (`user.email`); a null is an empty cell, booleans are `true` /
`false`, other JSON values (a trail entry's `payload`) are their JSON text. A cell that
begins with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'` (OWASP's
CSV-injection advice), so a spreadsheet shows it as text instead of running it.

Example:
    >>> csv_rows([{"id": 1, "user": {"email": "=cmd"}}], ("id", "user.email"))
    "1,'=cmd\\r\\n"
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import orjson

from wsd.database import statement_of
from wsd.dispatcher import Caller, Context, Payload
from wsd.trail import entry_fields

__all__ = ["Export", "BATCH_ROWS", "PAGING", "FORMULA_STARTS", "cell", "csv_text", "csv_rows", "run_export"]

# Rows per cursor fetch: one batch's CSV is formatted between two turns of the event loop,
# so it bounds how long an export holds other requests up (bench/export.py measures it).
BATCH_ROWS = 200
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
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


def cell(document: dict[str, Any], column: str) -> str:
    """The CSV text of `column` (a dotted path) in a JSON document, neutralised."""
    value: Any = document
    for key in column.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (dict, list)):
        text = orjson.dumps(value).decode()
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(lines: Iterable[list[str]]) -> str:
    """Lines of cells as CSV text (RFC 4180: quoted where needed, CRLF line ends)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(lines)
    return out.getvalue()


def csv_rows(documents: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """The CSV text of JSON documents, one line each."""
    return csv_text([cell(document, column) for column in columns] for document in documents)


async def _batches(ctx: Context, export: Export, arguments: Payload) -> AsyncIterator[tuple[str, int]]:
    """The export's rows as CSV text, a batch at a time, each with its count of rows."""
    sql, names = statement_of(ctx.queries, *export.query)
    parameters = export.parameters(ctx, arguments)
    values = [parameters.get(name) for name in names]  # keyset and page size: NULL
    async with ctx.pool.acquire() as connection, connection.transaction(readonly=True):
        cursor = await connection.cursor(sql, *values)
        while rows := await cursor.fetch(BATCH_ROWS):
            yield csv_rows((row[export.document] for row in rows), export.columns), len(rows)


async def run_export(ctx: Context, export: Export, arguments: Payload, bom: bool,
                     send: Callable[[str], Awaitable[None]]) -> dict[str, Any]:
    """Stream the export's CSV to `send` (header first) and put it on the trail, whatever
    its outcome. Returns {filename, content_type, rows}.

    `send` raises to stop the export (the client went away); the error propagates after
    the trail entry is written with outcome `failed`.
    """
    header = (BOM if bom else "") + csv_text([list(export.columns)])
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
