"""`python -m bench`: run the benchmark scenarios and print (and save) the table.

Examples:
    python -m bench                                   # every scenario at 10k leads
    python -m bench --scenarios stats,point --clients 100 --seconds 10
    python -m bench --scenarios cold --cold-sizes 10000,100000,1000000
    python -m bench --scenarios live-fanout,live-load --load-leads 1000000
    python -m bench --scenarios live-distinct --distinct-queries 2000
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.harness import (SCENARIOS, Data, cold_aggregates, machine, save, throughput_scenarios)
from bench.live import live_fanout, live_load
from bench.live_distinct import live_distinct

LIVE_SCENARIOS = ("live-fanout", "live-load", "live-distinct")


def _ratio(result: dict[str, Any]) -> str:
    floor = result.get("floor_result")
    if not floor:
        return ""
    return f"{result['msgs_per_s'] / floor['msgs_per_s']:.2f}x {result['floor']}"


def print_table(results: dict[str, Any]) -> None:
    print(f"\nmachine: {results['machine']}")
    rows = results.get("throughput", {})
    if rows:
        print(f"\n{'scenario':34} {'msgs/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
              f"{'cpu us/req':>10} {'rss MiB':>8}  floor msgs/s   ratio")
        for name, r in rows.items():
            if "connections" in r:
                print(f"{name:34} {r['connections']} open: {r['kib_per_connection']:.1f} KiB each "
                      f"(rss {r['rss_before_mib']:.0f} -> {r['rss_after_mib']:.0f} MiB)")
                continue
            floor = r.get("floor_result")
            print(f"{name:34} {r['msgs_per_s']:9.0f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['p99_ms']:8.2f} "
                  f"{r['server_cpu_us_per_request']:10.0f} {r['server_rss_mib']:8.0f}  "
                  f"{floor['msgs_per_s'] if floor else 0:11.0f}   {_ratio(r)}")
    print_live(results)
    cold = results.get("cold", {})
    if cold:
        print(f"\n{'aggregate, cache off':42} {'leads':>9} {'median ms':>10} {'max ms':>8}")
        for name, r in cold.items():
            print(f"{name.split('@')[0]:42} {r['leads']:9} {r['median_ms']:10.1f} {r['max_ms']:8.1f}")


async def live_scenarios(args: argparse.Namespace, scenarios: list[str], results: dict[str, Any]) -> None:
    """The live-query scenarios (bench/live.py); each runs on its own data and daemon."""
    if "live-fanout" in scenarios:
        results["live-fanout"] = await live_fanout(args.leads, args.fanout_connections, [a for a in args.fanout_actions.split(",") if a],
                                                   args.fanout_commits, args.fanout_spacing)
    if "live-load" in scenarios:
        results["live-load"] = await live_load(args.load_leads, args.load_connections, args.load_seconds,
                                               args.load_agent_rate, args.load_probe_rate)
    if "live-distinct" in scenarios:
        results["live-distinct"] = await live_distinct(args.leads, args.distinct_queries, args.distinct_seconds,
                                                       args.load_agent_rate, args.distinct_budgets.split(","))


def print_live(results: dict[str, Any]) -> None:
    fanout = results.get("live-fanout")
    if fanout:
        u, a = ({k: v if v is not None else float("nan") for k, v in fanout[key].items()}
                for key in ("update_latency", "all_subscribers_latency"))
        print(f"\nlive-fanout: {fanout['subscriptions']} subscriptions on {fanout['connections']} connections, "
              f"{fanout['commits']} commits: update p50 {u['p50_ms']:.1f} p99 {u['p99_ms']:.1f} ms; "
              f"all subscribers of a commit p50 {a['p50_ms']:.1f} p99 {a['p99_ms']:.1f} ms; "
              f"{fanout['updates_per_commit']:.0f} updates and {fanout['reruns_per_commit']:.1f} re-runs per commit; "
              f"{fanout['server_cpu_us_per_update']:.0f} µs CPU per update; "
              f"RSS {fanout['rss_before_mib']:.0f} -> {fanout['rss_after_mib']:.0f} MiB")
    load = results.get("live-load")
    if load:
        p = {k: v if v is not None else float("nan") for k, v in load["push_latency"].items()}
        print(f"\nlive-load: {load['leads']} leads, {load['connections']} connections × {len(load['actions'])}: "
              f"PostgreSQL {load['postgres_cpu_share']:.2f} core, wsd {load['wsd_cpu_share']:.2f} core, "
              f"{load['reruns_per_s']:.1f} re-runs/s; commit→push p50 {p['p50_ms']:.1f} p99 {p['p99_ms']:.1f} ms "
              f"({p['n']} pushes, {load['pushes_missing']} missing)")
    distinct = results.get("live-distinct")
    if distinct:
        print(f"\nlive-distinct: {distinct['queries']} distinct queries, {distinct['leads']} leads, "
              f"agent at {distinct['agent_rate']}/s, {distinct['seconds']:.0f} s each")
        for name, run in distinct["runs"].items():
            print(f"  {name:14} PostgreSQL {run['postgres_cpu_share']:.2f} core, wsd {run['wsd_cpu_share']:.2f} core, "
                  f"{run['reruns_per_s']:.0f} re-runs/s ({run['reruns_delayed_per_s']:.0f}/s delayed), "
                  f"{run['updates_sent_per_s']:.0f} updates/s"
                  + (f"; per 1,000 queries: PostgreSQL {run['postgres_cores_per_1000_queries']:.2f}, "
                     f"wsd {run['wsd_cores_per_1000_queries']:.2f} core" if name != "floor" else ""))


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--leads", type=int, default=10_000, help="data size for throughput scenarios")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--idle-connections", type=int, default=10_000)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS + ("cold",)))
    parser.add_argument("--cold-sizes", default="10000,100000")
    parser.add_argument("--cold-repeats", type=int, default=10)
    parser.add_argument("--fanout-connections", type=int, default=1000)
    parser.add_argument("--fanout-actions", default="",
                        help="comma-separated action names out of bench/live.py's ten (default: all)")
    parser.add_argument("--fanout-commits", type=int, default=20)
    parser.add_argument("--fanout-spacing", type=float, default=1.0, help="seconds between commits")
    parser.add_argument("--load-leads", type=int, default=1_000_000)
    parser.add_argument("--load-connections", type=int, default=100)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--load-agent-rate", type=float, default=48, help="demo-activity events/s")
    parser.add_argument("--load-probe-rate", type=float, default=2, help="timestamped commits/s")
    parser.add_argument("--distinct-queries", type=int, default=2000,
                        help="live-distinct: distinct live queries (100 per connection)")
    parser.add_argument("--distinct-seconds", type=float, default=30)
    parser.add_argument("--distinct-budgets", default="default,none",
                        help="live-distinct: live.max_reruns_per_second values to run ('default', 'none', N)")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    results: dict[str, Any] = {"machine": machine(), "clients": args.clients, "seconds": args.seconds,
                               "leads": args.leads}
    throughput = [s for s in scenarios if s in SCENARIOS]
    if throughput:
        async with Data(args.leads) as data:
            results["throughput"] = await throughput_scenarios(
                data, throughput, args.clients, args.seconds, args.idle_connections)
    if "cold" in scenarios:
        results["cold"] = {}
        for size in (int(n) for n in args.cold_sizes.split(",")):
            async with Data(size) as data:
                for name, r in (await cold_aggregates(data, args.cold_repeats)).items():
                    results["cold"][f"{name}@{size}"] = r
    await live_scenarios(args, scenarios, results)
    print_table(results)
    print(f"\nsaved {save(results)}")


if __name__ == "__main__":
    asyncio.run(main())
