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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.change_bench import arguments, config, lost_and_doubles, measure_runs


def main() -> int:
    args = arguments(__doc__.split("\n\n")[0], shards=8, workers=4).parse_args()
    print(
        f"rolling restart of {args.workers} workers ({args.shards} shards, {args.guilds} guilds "
        f"x {args.members} members) under {args.rate:g} pings/s, {args.runs} runs"
    )
    request = {"command": "restart", "rolling": True}
    runs = measure_runs(args.runs, config(args, 1), request, "roll", args.rate, args.settle)
    lost, doubles = lost_and_doubles(runs)
    identifies = sum(run.gateway["identifies"] for run in runs)
    print(
        f"all runs: {lost} lost, {doubles} answered twice, {identifies} identifies "
        f"(targets: 0, 0, 0)"
    )
    return 0 if lost == doubles == identifies == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
