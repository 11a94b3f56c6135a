"""The master's Prometheus metrics: what ``GET /metrics`` answers, gathered at each scrape.

Nothing here runs between scrapes. The children's figures already reach the master with every
heartbeat (shards, loop lag, memory, the REST gate's routes), the master's own measurements sit
in ``measures``, and a scrape turns both into metric families. So there are no multiprocess
files, and a child that restarts shows as a counter reset, which Prometheus expects. Every label
set is bounded: shard ids, child names, outcome codes, event types and route templates (capped
where they enter), never raw paths or guild ids.

``FAMILIES`` names every metric with its type and meaning; ``docs/metrics.md`` lists the same,
and a test checks that a scrape has them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import psutil
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from sharder.lifecycle import ChildHandle
from sharder.measures import MEASURES, Histogram
from sharder.status import ShardStatus

if TYPE_CHECKING:
    from sharder.supervisor import Supervisor

# name -> (type, help). The exposition adds _total, _bucket, _sum and _count where they belong.
FAMILIES: dict[str, tuple[str, str]] = {
    "sharder_uptime_seconds": ("gauge", "Seconds since the master started."),
    "sharder_shards": ("gauge", "Shards the bot runs (its shard count)."),
    "sharder_shard_up": ("gauge", "1 while the shard is ready, else 0."),
    "sharder_shard_state": ("gauge", "1 for the shard's current state (label state)."),
    "sharder_shard_guilds": ("gauge", "Guilds the shard serves, as its READY said."),
    "sharder_shard_latency_seconds": ("gauge", "Gateway heartbeat latency of the shard."),
    "sharder_shard_events": ("counter", "Gateway dispatches received, by shard and event type."),
    "sharder_child_up": ("gauge", "1 while the child process serves, else 0."),
    "sharder_child_heartbeat_rtt_seconds": (
        "histogram",
        "Round trip of the master's heartbeats to the child, through its event loop.",
    ),
    "sharder_child_loop_lag_seconds": ("gauge", "How late the child's event loop runs."),
    "sharder_child_resident_memory_bytes": ("gauge", "Resident memory of the child process."),
    "sharder_child_cpu_seconds": ("counter", "CPU time of the child's current process."),
    "sharder_child_restarts": ("counter", "Times the child was restarted."),
    "sharder_request_duration_seconds": (
        "histogram",
        "ctx.request, from the master taking it to its answer, by outcome.",
    ),
    "sharder_broadcast_duration_seconds": (
        "histogram",
        "ctx.broadcast, from the master taking it to the last worker's answer, by outcome.",
    ),
    "sharder_identify_grants": ("counter", "IDENTIFYs the gate allowed."),
    "sharder_identify_wait_seconds": (
        "histogram",
        "How long a shard waited for its IDENTIFY turn.",
    ),
    "sharder_identify_refused": ("counter", "IDENTIFYs refused: the shard was not the asker's."),
    "sharder_session_starts_remaining": ("gauge", "Of Discord's daily session starts, left."),
    "sharder_rest_requests": ("counter", "REST requests admitted by the gate, by route."),
    "sharder_rest_queue_seconds": ("summary", "Time REST requests waited for their turn."),
    "sharder_rest_queue_max_seconds": ("gauge", "Longest wait of a request, by route."),
    "sharder_rest_rate_limited": ("counter", "429 answers from Discord, by route."),
    "sharder_rest_invalid_requests": (
        "counter",
        "401, 403 and non-shared 429 answers, by route: they count toward an IP ban.",
    ),
    "sharder_rest_invalid_requests_window": (
        "gauge",
        "Invalid answers in Discord's ten-minute ban window.",
    ),
    "sharder_rest_refused": ("counter", "Requests the gate refused: no turn before the deadline."),
    "sharder_compute_tasks": (
        "counter",
        "Compute tasks by outcome: done, timed_out, busy (queue full), lost.",
    ),
    "sharder_compute_task_duration_seconds": (
        "histogram",
        "Compute tasks' time on a compute worker, by task and outcome.",
    ),
    "sharder_compute_queue_depth": ("gauge", "Compute tasks waiting for a free worker."),
    "sharder_compute_queue_capacity": ("gauge", "Compute tasks that may wait at most."),
    "sharder_compute_kills": ("counter", "Compute workers killed by a task: deadline, cpu_limit."),
    "sharder_state_commit_duration_seconds": ("histogram", "One commit of the state store."),
    "sharder_state_commit_changes": ("histogram", "Changes one state commit made durable."),
}


def _help(name: str, kind: str) -> str:
    listed, documentation = FAMILIES[name]
    assert listed == kind, f"{name} is listed as a {listed}"
    return documentation


def _gauge(name: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, _help(name, "gauge"), labels=labels)


def _counter(name: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, _help(name, "counter"), labels=labels)


def _summary(name: str, labels: Sequence[str] = ()) -> SummaryMetricFamily:
    return SummaryMetricFamily(name, _help(name, "summary"), labels=labels)


def _histogram_family(name: str, labels: Sequence[str] = ()) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, _help(name, "histogram"), labels=labels)


def _histogram(name: str, histogram: Histogram) -> HistogramMetricFamily:
    family = _histogram_family(name)
    family.add_metric([], histogram.cumulative(), histogram.sum)
    return family


def _histograms(name: str, label: str, by: Mapping[str, Histogram]) -> HistogramMetricFamily:
    family = _histogram_family(name, [label])
    for value, histogram in sorted(by.items()):
        family.add_metric([value], histogram.cumulative(), histogram.sum)
    return family


class SharderCollector(Collector):
    """Reads the supervisor's picture of the bot at each scrape."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self._processes: dict[int, psutil.Process] = {}  # by pid: CPU times need the same one

    def collect(self) -> Iterator[Metric]:
        supervisor = self.supervisor
        status = supervisor.status()
        uptime = _gauge("sharder_uptime_seconds")
        uptime.add_metric([], status.uptime_s)
        shard_count = _gauge("sharder_shards")
        shard_count.add_metric([], status.shard_count)
        yield from (uptime, shard_count)
        yield from self._shards(status.shards)
        yield from self._children(supervisor)
        yield _histograms("sharder_request_duration_seconds", "outcome", MEASURES.requests)
        yield _histograms("sharder_broadcast_duration_seconds", "outcome", MEASURES.broadcasts)
        yield from self._identify(supervisor)
        yield from self._rest(supervisor)
        yield from self._compute(supervisor)
        yield _histogram("sharder_state_commit_duration_seconds", MEASURES.state_commits)
        yield _histogram("sharder_state_commit_changes", MEASURES.state_commit_changes)

    @staticmethod
    def _shards(shards: list[ShardStatus]) -> Iterator[Metric]:
        up = _gauge("sharder_shard_up", ["shard", "worker"])
        state = _gauge("sharder_shard_state", ["shard", "worker", "state"])
        guilds = _gauge("sharder_shard_guilds", ["shard"])
        latency = _gauge("sharder_shard_latency_seconds", ["shard"])
        for shard in shards:
            shard_id, worker = str(shard.id), str(shard.worker)
            up.add_metric([shard_id, worker], 1.0 if shard.state == "ready" else 0.0)
            state.add_metric([shard_id, worker, shard.state], 1.0)
            guilds.add_metric([shard_id], shard.guilds)
            if shard.latency_ms is not None:
                latency.add_metric([shard_id], shard.latency_ms / 1000)
        events = _counter("sharder_shard_events", ["shard", "type"])
        for (shard_number, event_type), count in sorted(MEASURES.events.items()):
            events.add_metric([str(shard_number), event_type], count)
        yield from (up, state, guilds, latency, events)

    def _children(self, supervisor: Supervisor) -> Iterator[Metric]:
        children: list[ChildHandle] = [
            *supervisor.current_workers(),
            *supervisor.compute.values(),
        ]
        if supervisor.rest_gate is not None:
            children.append(supervisor.rest_gate)
        up = _gauge("sharder_child_up", ["child"])
        lag = _gauge("sharder_child_loop_lag_seconds", ["child"])
        memory = _gauge("sharder_child_resident_memory_bytes", ["child"])
        cpu = _counter("sharder_child_cpu_seconds", ["child"])
        restarts = _counter("sharder_child_restarts", ["child"])
        pids = set()
        for child in children:
            label = [child.label]
            up.add_metric(label, 1.0 if child.serving else 0.0)
            restarts.add_metric(label, child.restarts)
            if child.health is not None and child.pid is not None:
                lag.add_metric(label, child.health.loop_lag_ms / 1000)
                memory.add_metric(label, child.health.rss_bytes)
            seconds = self._cpu_seconds(child.pid)
            if seconds is not None:
                cpu.add_metric(label, seconds)
                pids.add(child.pid)
        for gone in set(self._processes) - pids:
            del self._processes[gone]
        yield from (up, lag, memory, cpu, restarts)
        yield _histograms("sharder_child_heartbeat_rtt_seconds", "child", MEASURES.heartbeats)

    def _cpu_seconds(self, pid: int | None) -> float | None:
        if pid is None:
            return None
        try:
            process = self._processes.get(pid)
            if process is None:
                process = self._processes[pid] = psutil.Process(pid)
            times = process.cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system

    @staticmethod
    def _identify(supervisor: Supervisor) -> Iterator[Metric]:
        gate = supervisor.shard_workers.identify if supervisor.shard_workers else None
        grants = _counter("sharder_identify_grants")
        remaining = _gauge("sharder_session_starts_remaining")
        if gate is not None:
            grants.add_metric([], gate.granted)
            remaining.add_metric([], gate.remaining)
        refused = _counter("sharder_identify_refused")
        refused.add_metric([], MEASURES.identify_refused)
        waits = _histogram("sharder_identify_wait_seconds", MEASURES.identify_waits)
        yield from (grants, waits, refused, remaining)

    @staticmethod
    def _rest(supervisor: Supervisor) -> Iterator[Metric]:
        by_route = ["route"]
        requests = _counter("sharder_rest_requests", by_route)
        queued = _summary("sharder_rest_queue_seconds", by_route)
        queued_max = _gauge("sharder_rest_queue_max_seconds", by_route)
        limited = _counter("sharder_rest_rate_limited", by_route)
        invalid = _counter("sharder_rest_invalid_requests", by_route)
        window = _gauge("sharder_rest_invalid_requests_window")
        refused = _counter("sharder_rest_refused")
        if supervisor.rest_gate is not None:
            gate = supervisor.rest_gate.status()
            for route in gate.routes:
                label = [route.route]
                requests.add_metric(label, route.requests)
                queued.add_metric(label, route.requests, route.queued_ms / 1000)
                queued_max.add_metric(label, route.queued_max_ms / 1000)
                limited.add_metric(label, route.got_429)
                invalid.add_metric(label, route.invalid)
            window.add_metric([], gate.invalid_10min)
            refused.add_metric([], gate.refused)
        yield from (requests, queued, queued_max, limited, invalid, window, refused)

    @staticmethod
    def _compute(supervisor: Supervisor) -> Iterator[Metric]:
        pool = supervisor.pool.status()
        tasks = _counter("sharder_compute_tasks", ["outcome"])
        for outcome in ("done", "timed_out", "busy", "lost"):
            tasks.add_metric([outcome], getattr(pool, outcome))
        durations = _histogram_family("sharder_compute_task_duration_seconds", ["task", "outcome"])
        for (task, outcome), histogram in sorted(MEASURES.compute_tasks.items()):
            durations.add_metric([task, outcome], histogram.cumulative(), histogram.sum)
        depth = _gauge("sharder_compute_queue_depth")
        depth.add_metric([], pool.queued)
        capacity = _gauge("sharder_compute_queue_capacity")
        capacity.add_metric([], pool.queue_size)
        kills = _counter("sharder_compute_kills", ["reason"])
        for reason in ("deadline", "cpu_limit"):
            kills.add_metric([reason], MEASURES.compute_kills[reason])
        yield from (tasks, durations, depth, capacity, kills)


def registry_of(supervisor: Supervisor) -> CollectorRegistry:
    """What ``/metrics`` shows: the bot's metrics, and the master process's own
    (``process_*``: its CPU, memory and open files)."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    registry.register(SharderCollector(supervisor))
    return registry
