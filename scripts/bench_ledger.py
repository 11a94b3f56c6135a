"""Handled-event ledger benchmark: what following every dispatch to its end costs.

A worker marks each dispatch handled as its listeners end and reports, once per loop turn,
the shards whose handled dispatches moved on; the master decodes the report and keeps the
latest per shard. Both sides run here in one process, as they run in theirs (the worker's
``HandledDispatches`` and frame encoder; the master's frame decoder, router and worker
handle), over ``--events`` dispatches of 4 shards handled ``k`` per loop turn (1: an idle
bot, a report per event; 64: a busy one), one in 16 out of order. Printed: CPU per event on
each side, medians of ``--runs``, against the issue's target of under 1 us of master CPU per
event for a busy worker.

    python scripts/bench_ledger.py [--runs 5] [--events 200000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol import FrameDecoder, FrameEncoder, RoutingTable
from protocol.messages import HandledReport, ShardHandled
from sharder.router import Router
from sharder.workers import WorkerHandle
from worker.handled import HandledDispatches

SHARDS = 4
TARGET_US = 1.0
BATCHES = (1, 8, 64)


class Reports:
    """The master's shard workers as the router sees them: nothing but the ledger is sent."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} was not expected")


async def worker_side(events: int, per_turn: int) -> tuple[float, list[bytes]]:
    """CPU seconds per event of marking and reporting, and the frames the worker wrote."""
    encoder = FrameEncoder()
    frames: list[bytes] = []

    def report(shards: list[ShardHandled], created: list[int]) -> None:
        frames.append(encoder.encode(HandledReport(shards=shards, created=created)))

    handled = HandledDispatches({}, report)
    seqs = [0] * SHARDS
    started = time.process_time()
    for n in range(events):
        shard = n % SHARDS
        seqs[shard] += 1
        seq = seqs[shard]
        # One in 16 finishes after the next one: the ledger keeps it past the floor a while.
        if seq % 16 == 1:
            seq += 1
        elif seq % 16 == 2:
            seq -= 1
        handled.consumed(shard, "session", seq, [])
        if (n + 1) % per_turn == 0:
            handled.flush()  # what the loop's call_soon does at the end of the turn
    handled.flush()
    return (time.process_time() - started) / events, frames


def master_side(events: int, frames: list[bytes]) -> float:
    """CPU seconds per event of decoding the reports and keeping them."""
    table = RoutingTable.contiguous(SHARDS, 1)
    handle = WorkerHandle(0, table.shards_of(0), table.shard_count, 0.1)
    unused: Any = None
    router = Router(table, {0: handle}, Reports(), unused, unused)
    receive = router.receiver(handle)
    decoder = FrameDecoder()
    started = time.process_time()
    for frame in frames:
        received: list[Any] = []
        messages = list(decoder.feed(frame, received))
        receive(unused, messages, received)
    elapsed = time.process_time() - started
    assert handle.handled[0].floor >= events // SHARDS - 1, handle.handled[0]
    return elapsed / events


async def one_run(events: int, per_turn: int) -> tuple[float, float]:
    worker, frames = await worker_side(events, per_turn)
    return worker, master_side(events, frames)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    events = args.events
    print(f"bench_ledger: {os.cpu_count()} cores, medians of {args.runs} runs, {events} events")
    for per_turn in BATCHES:
        runs = [uvloop.run(one_run(events, per_turn)) for _ in range(args.runs)]
        worker = statistics.median(run[0] for run in runs) * 1e6
        master = statistics.median(run[1] for run in runs) * 1e6
        verdict = ""
        if per_turn == BATCHES[-1]:
            verdict = f"  (target < {TARGET_US} us: {'met' if master < TARGET_US else 'NOT met'})"
        print(
            f"{per_turn:>3} handled per loop turn: master {master:5.2f} us/event, "
            f"worker {worker:5.2f} us/event{verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
