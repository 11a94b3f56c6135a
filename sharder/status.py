"""The master's picture of itself: what ``sharder status`` prints and the live table shows.

One ``SharderStatus`` snapshot is built by the supervisor; the control socket sends it as JSON
and the terminal renders it, so both always say the same thing.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from protocol.messages import RouteReport, ShardState
from sharder.lifecycle import ChildState

# A child's state as shown: its life's (``lifecycle``), or "busy" for a serving worker whose
# loop has not turned for a heartbeat or more.
WorkerState = ChildState | Literal["busy"]


class WorkerStatus(msgspec.Struct, kw_only=True):
    id: int
    pid: int | None
    state: WorkerState
    shards: list[int]
    restarts: int
    rss_bytes: int
    loop_lag_ms: float | None
    last_exit: str | None  # why the last process ended, if one did
    heartbeat_p99_ms: float | None = None  # over the last 100 heartbeat round trips


class ShardStatus(msgspec.Struct, kw_only=True):
    id: int
    worker: int
    state: ShardState
    guilds: int
    latency_ms: float | None
    guilds_loaded: int = 0  # of its guilds, those whose GUILD_CREATE the worker has cached
    identify_queue: int | None = None  # IDENTIFYs of its bucket before its own, while waiting


class ComputeStatus(msgspec.Struct, kw_only=True):
    id: int
    pid: int | None
    state: WorkerState
    task: str | None  # the task it runs now
    tasks_done: int
    restarts: int
    rss_bytes: int
    last_exit: str | None


class ComputePoolStatus(msgspec.Struct, kw_only=True):
    """The compute pool's queue and what became of the tasks it took."""

    queued: int = 0
    queue_size: int = 0
    done: int = 0  # answered by a compute worker, value or refusal
    timed_out: int = 0  # past their deadline: queued, or running and killed
    busy: int = 0  # refused at once: the queue was full
    lost: int = 0  # the compute worker died while running them


class RestGateStatus(msgspec.Struct, kw_only=True):
    """The REST gate: its process, and what went through it since it started."""

    pid: int | None
    state: WorkerState
    url: str
    restarts: int
    rss_bytes: int
    last_exit: str | None
    requests: int
    got_429: int  # 429s Discord answered (each retried by the gate, or passed on)
    invalid_10min: int  # 401, 403 and non-shared 429 answers in the ban window
    refused: int  # answered by the gate itself: no turn before the deadline
    routes: list[RouteReport] = []


def _taking(took_s: float | None) -> str:
    return f" in {took_s:.1f} s" if took_s is not None else ""


def _because(why: str) -> str:
    return f" ({why})" if why != "requested" else ""


RollPhase = Literal["loading", "handing_over", "resuming"]
RollState = Literal["rolling", "done", "failed", "cancelled"]


class RollStatus(msgspec.Struct, kw_only=True):
    """The last rolling restart (``rolling``): where it is, or how it ended."""

    state: RollState
    workers: int  # to replace, in all
    replaced: list[int]  # workers whose new process serves
    worker: int | None = None  # the one being replaced now
    phase: RollPhase | None = None
    reason: str | None = None  # why it failed or was cancelled
    took_s: float | None = None  # start to end, once ended

    def line(self) -> str:
        """Where it is, or how it ended, in one line."""
        if self.state == "rolling":
            where = f": worker {self.worker} {self.phase}" if self.worker is not None else ""
            return f"rolling restart{where} ({len(self.replaced)}/{self.workers} replaced)"
        took = _taking(self.took_s)
        if self.state == "done":
            return f"rolling restart done: {self.workers} workers{took}"
        return f"rolling restart {self.state}: {self.reason} ({len(self.replaced)} replaced{took})"


MovePhase = Literal["releasing", "resuming"]
MoveState = Literal["moving", "done", "failed"]


class MoveStatus(msgspec.Struct, kw_only=True):
    """The last shard move (``moves``): where it is, or how it ended."""

    shard: int
    source: int
    target: int
    state: MoveState
    why: str = "requested"  # or what the rebalancer saw
    phase: MovePhase | None = None  # while it moves
    reason: str | None = None  # why it failed
    took_s: float | None = None  # start to end, once ended

    def line(self) -> str:
        what = f"shard {self.shard} from worker {self.source} to worker {self.target}"
        what += _because(self.why)
        if self.state == "moving":
            return f"moving {what}: {self.phase}"
        took = _taking(self.took_s)
        if self.state == "done":
            return f"moved {what}{took}"
        return f"moving {what} failed{took}: {self.reason}"


ReshardPhase = Literal["connecting", "cutover", "retiring"]
ReshardState = Literal["resharding", "done", "failed"]


class ReshardStatus(msgspec.Struct, kw_only=True):
    """The last live reshard (``resharding``): where it is, or how it ended."""

    state: ReshardState
    from_shards: int
    to_shards: int
    why: str = "requested"  # or what Discord said
    phase: ReshardPhase | None = None  # while it runs
    shards_ready: int = 0  # of the new generation, with all their guilds
    cutover_at: float | None = None  # the instant named (Unix time), once it was
    reason: str | None = None  # why it failed
    took_s: float | None = None  # start to end, once ended

    def line(self) -> str:
        what = f"resharding from {self.from_shards} to {self.to_shards} shards"
        what += _because(self.why)
        if self.state == "resharding":
            return f"{what}: {self.phase} ({self.shards_ready}/{self.to_shards} new shards ready)"
        took = _taking(self.took_s)
        if self.state == "done":
            return f"resharded from {self.from_shards} to {self.to_shards} shards{took}"
        return f"{what} failed{took}: {self.reason}"


class SharderStatus(msgspec.Struct, kw_only=True):
    pid: int
    uptime_s: float
    state: Literal["starting", "running", "stopping"]
    shard_count: int
    api_url: str
    simulated: bool
    metrics_url: str | None = None  # the metrics and dashboard listener, once bound
    events_per_s: float
    workers: list[WorkerStatus]
    shards: list[ShardStatus]
    compute: list[ComputeStatus] = []
    compute_pool: ComputePoolStatus = msgspec.field(default_factory=ComputePoolStatus)
    rest_gate: RestGateStatus | None = None  # None: workers call the API directly
    workers_connected_s: float | None = None  # from start to every worker's hello
    shards_ready_s: float | None = None  # from start to every shard ready
    roll: RollStatus | None = None  # the last rolling restart, if there was one
    move: MoveStatus | None = None  # the last shard move, if there was one
    reshard: ReshardStatus | None = None  # the last live reshard, if there was one

    @property
    def ready_shards(self) -> int:
        return sum(shard.state == "ready" for shard in self.shards)
