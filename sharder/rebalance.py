"""Automatic placement: which shard to move when one worker carries far more than the average.

The load of a shard is its guild count (``rebalance = "guilds"``) or its dispatches per second
(``"events"``, from the sequence numbers its heartbeats report); a worker's is the sum of its
shards'. When the busiest worker's load stays above ``rebalance_threshold`` times the average
for ``rebalance_after`` seconds, without a break, the rebalancer proposes moving the one shard
of that worker that brings the highest load down the most: to the least loaded worker, and only
if that lowers the highest load at all. The clock starts over after every proposal, so moves
are at least ``rebalance_after`` apart, and nothing is proposed while a worker is not ready.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sharder.workers import WorkerHandle

log = logging.getLogger("sharder.supervisor")

RebalanceBy = Literal["off", "guilds", "events"]


@dataclass(frozen=True, slots=True)
class Proposal:
    shard_id: int
    source: WorkerHandle
    target: WorkerHandle
    why: str


class Rebalancer:
    def __init__(self, by: RebalanceBy, threshold: float, after: float) -> None:
        self.by = by
        self.threshold = threshold
        self.after = after
        self._imbalanced_since: float | None = None

    def propose(self, workers: Sequence[WorkerHandle], now: float) -> Proposal | None:
        """The move to make now, if one is due."""
        if self.by == "off" or len(workers) < 2 or any(w.state != "ready" for w in workers):
            self._imbalanced_since = None
            return None
        loads = {worker: sum(self._load(worker, s) for s in worker.shard_ids) for worker in workers}
        average = sum(loads.values()) / len(loads)
        busiest = max(workers, key=loads.__getitem__)
        idlest = min(workers, key=loads.__getitem__)
        if average <= 0 or loads[busiest] <= self.threshold * average:
            self._imbalanced_since = None
            return None
        if self._imbalanced_since is None:
            self._imbalanced_since = now
        if now - self._imbalanced_since < self.after:
            return None
        # The lowest peak after the move; of equals, the lightest shard (less to hand over).
        best: tuple[float, float, int] | None = None
        for shard_id in busiest.shard_ids if len(busiest.shard_ids) > 1 else ():
            load = self._load(busiest, shard_id)
            candidate = (max(loads[busiest] - load, loads[idlest] + load), load, shard_id)
            if candidate[0] < loads[busiest] and (best is None or candidate < best):
                best = candidate
        if best is None:
            return None  # no single move helps (one heavy shard): nothing to do
        self._imbalanced_since = None
        why = (
            f"worker {busiest.id} carried {loads[busiest] / average:.1f}x the average "
            f"{self.by} for {self.after:g} s"
        )
        return Proposal(best[2], busiest, idlest, why)

    def _load(self, worker: WorkerHandle, shard_id: int) -> float:
        if self.by == "guilds":
            return float(worker.shards[shard_id].guilds)
        return worker.shard_rates.get(shard_id, 0.0)
