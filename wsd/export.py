"""Exports: a list read's whole result as CSV, streamed by PostgreSQL's COPY.

An export mirrors one paginated read (`leads.get_all_leads`, ...): the same payload type,
role and filters, every row instead of a page. The read's own statement runs inside
`COPY (...) TO STDOUT (FORMAT csv)`, its JSON documents flattened into the export's columns
by PostgreSQL, so the CSV is written in C and wsd only forwards text: COPY's buffers are
decoded, their record ends made CRLF, and handed to `send` about `CHUNK_CHARS` at a time
(the server's bounded send path, which waits while the client is behind; while it waits
wsd reads no more of COPY's output, so PostgreSQL waits too). wsd holds one chunk at a time
whatever the list's size. (bench/export.py measured the alternatives: rows formatted in
Python on the event loop held other clients' requests up to 5× their median latency; lines
built by SQL functions were cheap for wsd and 4× slower overall.)

CSV: RFC 4180 (comma, `"` quoting where needed, CRLF line ends), UTF-8, a header row,
optionally a byte-order mark first (Excel wants it to read UTF-8). Nested documents are
flattened into dotted columns (`user.email`); null is an empty cell, other values their
JSON text (strings unquoted, `true`/`false`; a trail entry's `payload` object as JSON). A
cell that begins with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`
(`csv_safe`, OWASP's CSV-injection advice), so a spreadsheet shows it as text.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from wsd.database import statement_of
from wsd.actions import Caller, Context, Payload
from wsd.trail import entry_fields

__all__ = ["Export", "CHUNK_CHARS", "PAGING", "run_export"]

# Characters of CSV per chunk: under half the default send limit, so a chunk goes out as
# soon as the client has read the one before.
CHUNK_CHARS = 96 * 1024
# The longest an export may run (COPY is one statement; the pool's command timeout is 60 s).
LONGEST_SECONDS = 3600.0
BOM = "\ufeff"
# The read's paging fields, which an export (the whole list) does without.
PAGING = ("limit", "cursor")

# A list read's query, (folder, name), and its filters as the query's parameters.
Query = Callable[[Context, Any], tuple[tuple[str, str], dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Export:
    """One exportable list.

    Args:
        name: the export's action (`export.<name>`) and file name.
        read: the (resource, action) it mirrors: its payload type and role apply.
        query: the read's own choice of SQL, (folder, name), and its filters as that query's
            parameters; the keyset and page-size parameters get NULL (LIMIT NULL: every row).
        document: the column of the query's rows holding the JSON document.
        columns: the CSV columns, dotted paths into the document, in order.
    """
    name: str
    read: tuple[str, str]
    query: Query
    document: str
    columns: tuple[str, ...]


class _CsvChunks:
    """COPY's CSV output as RFC 4180 chunks for `send`.

    UTF-8 is decoded across COPY's buffer boundaries; a line feed ends a record (and becomes
    CRLF) when the quotes before it are even, since COPY doubles a quote inside a quoted
    field, so a line feed inside a quoted value is kept as it is.
    """

    def __init__(self, send: Callable[[str], Awaitable[None]]) -> None:
        self.send = send
        self.rows = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._quoted = False
        self._pending: list[str] = []
        self._size = 0

    async def write(self, data: bytes) -> None:
        parts = self._decoder.decode(data).split("\n")
        quoted = self._quoted ^ bool(parts[0].count('"') & 1)
        out = [parts[0]]
        for part in parts[1:]:
            if quoted:
                out.append("\n")
            else:
                out.append("\r\n")
                self.rows += 1
            out.append(part)
            quoted ^= bool(part.count('"') & 1)
        self._quoted = quoted
        text = "".join(out)
        self._pending.append(text)
        self._size += len(text)
        if self._size >= CHUNK_CHARS:
            await self.flush()

    async def flush(self) -> None:
        text = "".join(self._pending) + self._decoder.decode(b"", final=True)
        self._pending, self._size = [], 0
        if text:
            await self.send(text)


async def _copy(ctx: Context, export: Export, arguments: Payload, chunks: _CsvChunks) -> None:
    """The read's statement (keyset and page size NULL: every row) inside COPY, each row's
    document made the export's columns."""
    query_name, parameters = export.query(ctx, arguments)
    sql, names = statement_of(ctx.queries, *query_name)
    values = [parameters.get(name) for name in names]
    paths = [column.split(".") for column in export.columns]
    # Only $n placeholders are put into the statement; the subquery's ORDER BY is kept
    # (nothing above it joins, groups or sorts). A row without a document (a filtered list's
    # row that only carries its total) is no line.
    cells = ", ".join(f"csv_safe(r.d #>> ${len(names) + n}::text[])" for n in range(1, len(paths) + 1))
    copied = (f"SELECT {cells} FROM (SELECT q.{export.document}::jsonb AS d "
              f"FROM ({sql.strip().rstrip(';')}) AS q WHERE q.{export.document} IS NOT NULL) AS r")
    async with ctx.pool.acquire() as connection:
        await connection.copy_from_query(copied, *values, *paths, output=chunks.write, format="csv",
                                         timeout=LONGEST_SECONDS)
    await chunks.flush()


async def run_export(ctx: Context, export: Export, arguments: Payload, bom: bool,
                     send: Callable[[str], Awaitable[None]]) -> dict[str, Any]:
    """Stream the export's CSV to `send` (header first) and put it on the trail, whatever
    its outcome. Returns {filename, content_type, rows}.

    `send` raises to stop the export (the client went away); the error propagates after
    the trail entry is written with outcome `failed`.
    """
    chunks = _CsvChunks(send)
    outcome = "failed"
    try:
        await send((BOM if bom else "") + ",".join(export.columns) + "\r\n")  # names need no quoting
        await _copy(ctx, export, arguments, chunks)
        outcome = "completed"
    finally:
        await _record(ctx, export, arguments, f"{outcome} ({chunks.rows} rows)")
    return {"filename": f"{export.name}.csv", "content_type": "text/csv; charset=utf-8", "rows": chunks.rows}


async def _record(ctx: Context, export: Export, arguments: Payload, outcome: str) -> None:
    """The export's trail entry: who, which list with which filters (masked), how it ended."""
    caller: Caller = ctx.caller
    fields = entry_fields(arguments, None)
    fields["payload"] = {k: v for k, v in fields["payload"].items() if k not in PAGING}
    await ctx.queries.trail.record_entry(
        ctx.pool, **caller.trail_actor(), resource="export", action=export.name,
        outcome=outcome, **fields)
