"""Live resharding benchmark: ``reshard`` from ``--shards`` to ``--to`` under ``!ping`` traffic.

The sharder runs with ``--workers`` workers, the reference bot, a strict simulator with
``--max-concurrency`` identify buckets and Discord's 5 s window, and a world of ``--guilds``
guilds of ``--members`` members; pings at ``--rate`` per second through the reshard
(``change_bench``). Printed per run, and the medians of ``--runs``: how long the reshard took
and each phase (the new generation connecting and loading beside the old one, the cutover, the
old one retiring), the pings lost or answered twice, the new sessions and identify violations
(the target is none), and the reply latency before against during the reshard. The figure the
issue names is the longest gap in replies during the reshard, against the normal reply p99
measured before it in the same run: the target is no longer than that p99 + 1 s.

    python scripts/bench_reshard.py [--runs 3] [--guilds 2000] [--members 25] [--shards 4]
                                    [--to 8] [--workers 2] [--max-concurrency 4] [--rate 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.change_bench import measure_change, medians

CONFIG = """
log_level = "WARNING"
[sharding]
shards = {shards}
workers = {workers}
[supervisor]
heartbeat_interval = 0.5
[simulator]
guilds = {guilds}
members_per_guild = {members}
max_concurrency = {max_concurrency}
strict = true
rest_route_limit = 1000
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guilds", type=int, default=2000)
    parser.add_argument("--members", type=int, default=25)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--to", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    print(
        f"reshard from {args.shards} to {args.to} shards on {args.workers} workers "
        f"({args.guilds} guilds x {args.members} members, {args.max_concurrency} identify "
        f"buckets) under {args.rate:g} pings/s, {args.runs} runs"
    )
    config = CONFIG.format(
        shards=args.shards,
        workers=args.workers,
        guilds=args.guilds,
        members=args.members,
        max_concurrency=args.max_concurrency,
    )
    request = {"command": "reshard", "shards": args.to}
    runs = []
    for number in range(1, args.runs + 1):
        run = uvloop.run(measure_change(config, request, "reshard", args.rate, args.settle))
        runs.append(run)
        print(f"run {number}: " + "\n".join(run.lines("reshard")), flush=True)
    print(medians(runs, "reshard"))
    lost = sum(run.during.lost + run.before.lost for run in runs)
    doubles = sum(run.during.doubles + run.before.doubles for run in runs)
    violations = sum(run.gateway["identify_violations"] for run in runs)
    gap = statistics.median(run.during.silence for run in runs)
    allowed = statistics.median(run.before.p99 for run in runs) + 1.0
    print(
        f"longest gap in replies during the reshard: {gap * 1000:.0f} ms (median; target: no "
        f"longer than the normal reply p99 + 1 s = {allowed * 1000:.0f} ms)"
    )
    print(
        f"all runs: {lost} lost, {doubles} answered twice, {violations} identify violations "
        f"(targets: 0, 0, 0)"
    )
    return 0 if lost == doubles == violations == 0 and gap <= allowed else 1


if __name__ == "__main__":
    sys.exit(main())
