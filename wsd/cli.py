"""The `wsd` command: serve, migrate, seed, verify the kept aggregates, make tokens, purge the trail.

Example:
    wsd serve --config /etc/wsd/config.toml
    wsd seed --demo --leads 100000
    wsd demo-activity --rate 2 --seed 7
    wsd token new --name dashboard --role viewer
    wsd trail purge --older-than 365
"""

from __future__ import annotations

import argparse

import asyncio
from functools import partial
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine

import msgspec

from wsd.auth import new_token
from wsd.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from wsd.logs import configure_logging

if TYPE_CHECKING:
    import asyncpg

__all__ = ["main"]

EXIT_CONFIG = 2


async def _with_database(config: Config, work: Callable[..., Awaitable[None]]) -> None:
    from wsd.startup import prepared_database

    async with prepared_database(config, pooled=False) as database:
        connection = await database.connect()
        try:
            await work(connection)
        finally:
            await connection.close()


def _migrate(config: Config, _args: argparse.Namespace) -> int:
    async def report(_connection: object) -> None:
        print("schema is up to date")
    asyncio.run(_with_database(config, report))
    return 0


def _seed(config: Config, args: argparse.Namespace) -> int:
    from wsd import demo

    if not args.demo:
        print("wsd seed: only --demo data can be seeded", file=sys.stderr)
        return EXIT_CONFIG

    async def fill(connection: asyncpg.Connection) -> None:
        started = time.perf_counter()
        try:
            await demo.seed_demo(connection, leads=args.leads, seed=args.seed)
        except demo.DatabaseNotEmpty as error:
            raise SystemExit(f"wsd seed: {error}") from None
        print(f"seeded {args.leads} demo leads in {time.perf_counter() - started:.1f}s")
    asyncio.run(_with_database(config, fill))
    return 0


def _serve(config: Config, args: argparse.Namespace) -> int:
    from wsd.app import ensure_demo_token, run_daemon
    from wsd.workers import serve_workers, worker_count

    activity = args.demo and not args.no_activity
    config_path = getattr(args, "sub_config", None) or args.config
    workers = worker_count(config.server.workers if args.workers is None else args.workers)
    if args.worker or workers == 1:
        return _event_loop_runner()(run_daemon(config, with_demo=args.demo,
                                               demo_activity=activity and not args.worker,
                                               worker=args.worker, config_path=config_path))
    if args.demo:
        token = ensure_demo_token(config)  # made once, before the workers read it
        print(f"  admin token: {token}  (kept in var/demo-token)", flush=True)
    return _event_loop_runner()(serve_workers(config, config_path, workers,
                                              with_demo=args.demo, demo_activity=activity))


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, int]], int]:
    """uvloop when installed (`pip install wsd[fast]`) and not turned off with WSD_UVLOOP=0:
    the benchmarks measure it faster at socket writes; asyncio's own loop otherwise."""
    if os.environ.get("WSD_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run
    return asyncio.run


def _check_config(_config: Config, args: argparse.Namespace) -> int:
    """Reached only when the file loaded and validated (main exits 2 naming the key if not):
    run it before `systemctl reload wsd`, which would otherwise log the error and carry on."""
    print(f"config ok: {getattr(args, 'sub_config', None) or args.config or DEFAULT_CONFIG_PATH}")
    return 0


def _token_new(_config: Config | None, args: argparse.Namespace) -> int:
    token, entry = new_token(args.name, args.role)
    print(f"token: {token}")
    print("add to [auth] tokens in config.toml:")
    print(f'  {{ name = "{entry.name}", role = "{entry.role}", sha256 = "{entry.sha256}" }},')
    return 0


# --- wsd verify-aggregates: the kept aggregates recomputed from the raw tables -----------

def _verify_aggregates(config: Config, _args: argparse.Namespace) -> int:
    """Exit 1 naming every kept figure that differs from its recomputation, 0 when all agree."""
    from wsd.aggregates import differences
    from wsd.database import load_queries

    found = []

    async def check(connection: asyncpg.Connection) -> None:
        found.extend(await differences(connection, load_queries()))
    asyncio.run(_with_database(config, check))
    for difference in found:
        print(f"differs: {difference}")
    print(f"{len(found)} kept figure(s) differ" if found else "kept aggregates match the raw tables")
    return 1 if found else 0


def _add_verify_aggregates(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser("verify-aggregates",
                                 help="recompute every kept aggregate and compare (exit 1 on a difference)")
    verify.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    verify.set_defaults(run=_verify_aggregates)

# --- wsd trail purge: forget trail entries older than a number of days --------------------

def _trail_purge(config: Config, args: argparse.Namespace) -> int:
    import datetime as dt

    from wsd.database import load_queries

    async def purge(connection: asyncpg.Connection) -> None:
        older_than = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.older_than)
        purged = await load_queries().trail.purge_entries(connection, older_than=older_than)
        print(f"purged {purged} trail entr{'y' if purged == 1 else 'ies'} older than {args.older_than} days")
    asyncio.run(_with_database(config, purge))
    return 0


def _add_trail(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trail = commands.add_parser("trail", help="the trail of writes and exports")
    trail_commands = trail.add_subparsers(dest="trail_command", required=True)
    purge = trail_commands.add_parser("purge", help="delete trail entries older than DAYS days")
    purge.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    purge.add_argument("--older-than", type=int, required=True, metavar="DAYS",
                       help="entries written more than DAYS days ago are deleted (0: all)")
    purge.set_defaults(run=_trail_purge)

# ------------------------------------------------------------------------------------------


def _schema(_config: Config | None, args: argparse.Namespace) -> int:
    from wsd.handlers import ALL_TABLES
    from wsd.schema import action_schemas, asyncapi, markdown_reference

    if args.markdown:
        print(markdown_reference(ALL_TABLES))
    else:
        document = {**action_schemas(ALL_TABLES), "asyncapi": asyncapi(ALL_TABLES)}
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n")
    return 0


# --- wsd demo-activity: the simulated AI agent on its own, against the configured database -

def _positive_rate(text: str) -> float:
    rate = float(text)
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return rate


def _positive_count(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return count


def _add_demo_activity(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo_activity = commands.add_parser(
        "demo-activity", help="simulate the AI agent writing into the database (new leads, "
        "messages, step moves, hand-offs, meetings) so a dashboard moves")
    demo_activity.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    demo_activity.add_argument("--rate", type=_positive_rate, default=1.0,
                               help="events per second, on average (default 1)")
    demo_activity.add_argument("--seed", type=int, default=None,
                               help="random seed: the same seed writes the same rows (default: random)")
    demo_activity.add_argument("--events", type=_positive_count, default=None,
                               help="stop after this many events (default: run until Ctrl-C)")
    demo_activity.set_defaults(run=_demo_activity)


def _demo_activity(config: Config, args: argparse.Namespace) -> int:
    """Runs the simulator on its own connection (applying pending migrations first, as the
    other database commands do); Ctrl-C stops it cleanly."""
    from wsd.demo_activity import run_demo_activity
    from wsd.startup import prepared_database

    async def simulate() -> None:
        async with prepared_database(config, pooled=False, name="wsd-demo-activity") as database:
            await run_demo_activity(partial(database.connect, "wsd-demo-activity"), config,
                                    events_per_second=args.rate, seed=args.seed,
                                    stop_after=args.events)

    try:
        asyncio.run(simulate())
    except KeyboardInterrupt:
        return 130
    return 0

# ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsd", description="WebSocket daemon for the sales dashboard")
    parser.add_argument("--config", help="config file (default: config.toml of the checkout)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the daemon (applies pending migrations)")
    serve.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    serve.add_argument("--demo", action="store_true",
                       help="seed demo data into an empty database, make an admin token if none, "
                       "and run a simulated AI agent writing into the database")
    serve.add_argument("--no-activity", action="store_true",
                       help="with --demo: no simulated AI agent (the data stays still)")
    serve.add_argument("--workers", type=int, default=None,
                       help="worker processes sharing the port (default: server.workers; 0 = one per core)")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)
    check = commands.add_parser("check-config", help="validate a config file: exit 0, or 2 "
                                "with a line naming the key that is wrong")
    check.add_argument("--config", dest="sub_config", metavar="FILE",
                       help="the file to check (default: config.toml of the checkout)")
    check.set_defaults(run=_check_config)
    migrate = commands.add_parser("migrate", help="apply pending migrations")
    migrate.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    migrate.set_defaults(run=_migrate)
    seed = commands.add_parser("seed", help="fill an empty database with demo data")
    seed.add_argument("--config", dest="sub_config", help=argparse.SUPPRESS)
    seed.add_argument("--demo", action="store_true", required=True)
    seed.add_argument("--leads", type=int, default=500)
    seed.add_argument("--seed", type=int, default=1)
    seed.set_defaults(run=_seed)
    _add_verify_aggregates(commands)
    _add_trail(commands)
    schema = commands.add_parser("schema", help="print the JSON Schemas and AsyncAPI document of the protocol")
    schema.add_argument("--markdown", action="store_true", help="the action reference of docs/protocol.md")
    schema.set_defaults(run=_schema, needs_config=False)
    _add_demo_activity(commands)
    token = commands.add_parser("token", help="manage access tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    token_new = token_commands.add_parser("new", help="print a fresh token and its config line")
    token_new.add_argument("--name", required=True)
    token_new.add_argument("--role", required=True, choices=("viewer", "admin"))
    token_new.set_defaults(run=_token_new, needs_config=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not getattr(args, "needs_config", True):
        code: int = args.run(None, args)
        return code
    try:
        config = load_config(getattr(args, "sub_config", None) or args.config)
    except ConfigError as error:
        print(f"wsd: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log.level, config.log.access_lines_per_second)
    code = args.run(config, args)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
