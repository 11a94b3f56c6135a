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

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.change_bench import arguments, config, lost_and_doubles, measure_runs


def main() -> int:
    parser = arguments(__doc__.split("\n\n")[0], shards=4, workers=2)
    parser.add_argument("--to", type=int, default=8)
    parser.add_argument("--max-concurrency", type=int, default=4)
    args = parser.parse_args()
    print(
        f"reshard from {args.shards} to {args.to} shards on {args.workers} workers "
        f"({args.guilds} guilds x {args.members} members, {args.max_concurrency} identify "
        f"buckets) under {args.rate:g} pings/s, {args.runs} runs"
    )
    request = {"command": "reshard", "shards": args.to}
    runs = measure_runs(
        args.runs, config(args, args.max_concurrency), request, "reshard", args.rate, args.settle
    )
    lost, doubles = lost_and_doubles(runs)
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
