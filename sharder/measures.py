"""What the master measures as it works, for ``/metrics``: counts and latency histograms.

Recorded on hot paths (every routed request, every heartbeat), so recording is an index and an
add: no locks, no label lookups by keyword, no prometheus-client objects. ``metrics`` turns these
into Prometheus families only when someone scrapes. Every label set here is bounded: outcome
codes, task names of the compute registry, child names, shard ids and event types (each capped
where it enters).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field

# Seconds: a request answered by another worker's loop (sub-millisecond) up to its deadline.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Identify waits run up to a window per shard ahead in the bucket: minutes for big bots.
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Changes per state commit: one, up to the thousands a busy second groups.
GROUP_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class Histogram:
    """Counts of observations by bucket, and their sum: Prometheus's histogram, unlabelled."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: past every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, observations at or below it), the last one "+Inf": the exposition's."""
        total = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


def _latencies() -> defaultdict[str, Histogram]:
    return defaultdict(Histogram)


@dataclass(slots=True)
class Measures:
    # ctx.request and ctx.broadcast, asking worker to answer, by outcome ("ok" or the code).
    requests: defaultdict[str, Histogram] = field(default_factory=_latencies)
    broadcasts: defaultdict[str, Histogram] = field(default_factory=_latencies)
    # Heartbeat round trips by child ("worker-0", "compute-1", "rest-gate").
    heartbeats: defaultdict[str, Histogram] = field(default_factory=_latencies)
    # IDENTIFYs: asked to grant, and how long each waited for its turn.
    identify_waits: Histogram = field(default_factory=lambda: Histogram(WAIT_BUCKETS))
    identify_refused: int = 0  # asked for a shard not the asker's
    # Compute tasks, from submission to answer, by task name and outcome.
    compute_tasks: defaultdict[tuple[str, str], Histogram] = field(
        default_factory=lambda: defaultdict(Histogram)
    )
    compute_kills: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    # State store commits: how long each took, and how many changes it made durable.
    state_commits: Histogram = field(default_factory=Histogram)
    state_commit_changes: Histogram = field(default_factory=lambda: Histogram(GROUP_BUCKETS))
    # Gateway dispatches received, by shard and event type, summed over processes.
    events: defaultdict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))


# One per master process, as prometheus-client keeps its default registry.
MEASURES = Measures()
