"""`python -m bench.logcost`: the access log line's cost on its own, per line.

Both set-ups log the request line wsd writes (same fields) to a real file, N times, in a
fresh process each so structlog's global configuration is that set-up's alone: the one wsd
shipped before (structlog with the stdlib json renderer, a print and a write per line) and
the current one (`wsd.logs.log_request`: orjson straight into an in-memory buffer written
every half second; every line within the default budget of 1,000 a second is logged here,
the budget being off in this probe's configuration).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

LINES = 200_000

PROBE = r'''
import sys, time, logging, structlog
setup, path, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = open(path, "w")
sys.stdout = out
if setup == "before":
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(out), cache_logger_on_first_use=True)
else:
    from wsd.logs import configure_logging, flush_logs, log_request
    configure_logging("info")
log = structlog.get_logger("wsd.server")
started = time.process_time()
if setup == "before":
    for n in range(lines):
        log.info("request", resource="dashboard", action="get_dashboard_stats", request_id=n,
                 caller="dashboard", outcome="ok", duration_ms=0.42)
else:
    for n in range(lines):
        log_request("dashboard", "get_dashboard_stats", n, "dashboard", "ok", 0.42)
    flush_logs()
sys.stderr.write(str((time.process_time() - started) / lines * 1e6))
'''


def cost(setup: str) -> float:
    with tempfile.NamedTemporaryFile(suffix=".log") as target:
        done = subprocess.run([sys.executable, "-c", PROBE, setup, target.name, str(LINES)],
                              capture_output=True, text=True, check=True)
        return float(done.stderr.strip().splitlines()[-1])


def main() -> None:
    rounds = {setup: [cost(setup) for _ in range(3)] for setup in ("before", "now")}
    print(json.dumps({setup: {"cpu_us_per_line": round(min(values), 2), "runs": [round(v, 2) for v in values]}
                      for setup, values in rounds.items()}, indent=2))


if __name__ == "__main__":
    main()
