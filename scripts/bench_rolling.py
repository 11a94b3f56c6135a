"""Rolling restart benchmark: ``restart --rolling`` of every worker under ``!ping`` traffic.

The sharder runs with ``--workers`` workers on ``--shards`` shards, the reference bot, a strict
simulator with one identify bucket and Discord's 5 s window, and a world of ``--guilds`` guilds
of ``--members`` members; pings at ``--rate`` per second through the roll (``change_bench``).
Printed per run, and the medians of ``--runs``: how long the roll took and each phase of each
worker's step (loading the new process beside the old one, handing the sessions over, resuming
them), the pings lost or answered twice, the sessions started (IDENTIFYs: the target is none),
and the reply latency before the roll against during it, with the worst wait and the longest
silence.

    python scripts/bench_rolling.py [--runs 3] [--guilds 2000] [--members 25] [--shards 8]
                                    [--workers 4] [--rate 20] [--settle 5]
"""

from __future__ import annotations

import argparse
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
max_concurrency = 1
strict = true
rest_route_limit = 1000
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guilds", type=int, default=2000)
    parser.add_argument("--members", type=int, default=25)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    print(
        f"rolling restart of {args.workers} workers ({args.shards} shards, {args.guilds} guilds "
        f"x {args.members} members) under {args.rate:g} pings/s, {args.runs} runs"
    )
    config = CONFIG.format(
        shards=args.shards, workers=args.workers, guilds=args.guilds, members=args.members
    )
    request = {"command": "restart", "rolling": True}
    runs = []
    for number in range(1, args.runs + 1):
        run = uvloop.run(measure_change(config, request, "roll", args.rate, args.settle))
        runs.append(run)
        print(f"run {number}: " + "\n".join(run.lines("roll")), flush=True)
    print(medians(runs, "roll"))
    lost = sum(run.during.lost + run.before.lost for run in runs)
    doubles = sum(run.during.doubles + run.before.doubles for run in runs)
    identifies = sum(run.gateway["identifies"] for run in runs)
    print(
        f"all runs: {lost} lost, {doubles} answered twice, {identifies} identifies "
        f"(targets: 0, 0, 0)"
    )
    return 0 if lost == doubles == identifies == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
