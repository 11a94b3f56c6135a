"""State store benchmark: durable (acknowledged) updates per second and ack latency, with group
commit, on a real SQLite file (WAL, synchronous=FULL).

``--writers`` tasks each merge member-activity counters as fast as their acknowledgements come
back, for ``--seconds``; every figure is the median of ``--runs`` runs.

    python scripts/bench_state.py [--runs 5] [--writers 256] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.merge import CounterMap
from sharder.store import StateStore

TARGET = 20_000


async def one_run(writers: int, seconds: float) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-state-") as directory:
        store = StateStore(Path(directory) / "state.db")
        store.open()
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def writer(origin: int) -> None:
            total = 0
            while time.perf_counter() < deadline:
                total += 1
                change = CounterMap()
                change.report("messages", origin, total)
                started = time.perf_counter()
                await store.merge("member_activity", f"{origin % 1000}:{origin}", change)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(writer(origin) for origin in range(writers)))
        elapsed = time.perf_counter() - started
        await store.close()
        latencies.sort()
        rate = len(latencies) / elapsed
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        return rate, p50, p99, len(latencies) / max(1, store.commits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--writers", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    runs = [uvloop.run(one_run(args.writers, args.seconds)) for _ in range(args.runs)]
    rate = statistics.median(run[0] for run in runs)
    print(
        f"bench_state: {os.cpu_count()} cores, medians of {args.runs} runs, {args.writers} writers"
    )
    verdict = "met" if rate >= TARGET else "MISSED"
    print(
        f"durable updates: {rate:,.0f}/s (target >= {TARGET:,}: {verdict}); "
        f"ack p50 {statistics.median(run[1] for run in runs):.1f} ms, "
        f"p99 {statistics.median(run[2] for run in runs):.1f} ms; "
        f"{statistics.median(run[3] for run in runs):.0f} updates per commit"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
