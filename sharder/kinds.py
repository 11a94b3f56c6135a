"""What differs between the kinds of child: how each starts, connects, stops and is mourned.

The supervisor handles every child the same way (spawn, hello, heartbeats, reap, restart); each
kind answers the few questions where they differ: what the process is started with, who reads
its link, how it is asked to stop, and whom its exit concerns. Shard workers' reports (shards
ready or down, identifies) are in ``shard_workers``.
"""

from __future__ import annotations

import abc
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from child.runtime import ChildStart
from gate.spec import RestGateSpec
from protocol import AnyMessage, Connection, Frame
from protocol.messages import HeartbeatAck, RestGateReport
from sharder.compute_pool import ComputePool
from sharder.config import Config
from sharder.lifecycle import ChildHandle
from sharder.workers import ComputeHandle, RestGateHandle
from worker.spec import ComputeSpec

Handle = TypeVar("Handle", bound=ChildHandle)


@dataclass(frozen=True, slots=True)
class Discord:
    """Where the workers connect, and as whom."""

    token: str
    api_url: str
    intents: int
    simulated: bool
    identify_window: float  # Discord's is 5 s; the simulator's may be shorter
    session_period: float  # Discord's session budget refills daily; the simulator's may sooner
    custom_emoji_url: str  # CDN bases the compute workers fetch emoji images from
    unicode_emoji_url: str


class ChildKind(abc.ABC, Generic[Handle]):
    """One kind of child: its handles, and its part in their lives."""

    def __init__(self, handles: list[Handle], config: Config, log_level: str) -> None:
        self.handles = handles
        self.config = config
        self.log_level = log_level

    def child_start(self, entry: str, label: str) -> ChildStart:
        return ChildStart(entry, label, os.getpid(), self.log_level, self.config.log_format)

    @abc.abstractmethod
    def start_arguments(self, handle: Handle) -> tuple[object, ...]:
        """What its process is started with, before its end of the pipe."""

    def started(self, handle: Handle, pid: int) -> None:
        """Its process was just started."""

    @abc.abstractmethod
    def connected(self, handle: Handle, connection: Connection) -> None:
        """It said hello: its link's messages go to whoever reads them now."""

    def ask_to_stop(self, handle: Handle, reason: str, resumable: bool) -> None:
        """Ask its process to end; the default, closing the link, ends every child."""
        if handle.connection is not None:
            handle.connection.close()

    def successor(self, handle: Handle) -> Handle | None:
        """A process started and loaded already to take the child's place, if there is one."""
        return None

    def took_over(self, handle: Handle) -> None:
        """The child runs its successor's process now (connected already)."""

    def exited(self, handle: Handle, exitcode: int | None) -> bool:
        """Its process is gone; True to start the next at once (not a crash)."""
        return False

    def crashed(self, handle: Handle, lived: float) -> None:
        """Its process ended unplanned after ``lived`` seconds; it is restarted after a pause."""

    def gave_up(self, handle: Handle) -> None:
        """It stays down (crash loop)."""


class ComputeWorkers(ChildKind[ComputeHandle]):
    def __init__(
        self,
        handles: list[ComputeHandle],
        config: Config,
        log_level: str,
        discord: Discord,
        pool: ComputePool,
    ) -> None:
        super().__init__(handles, config, log_level)
        self.discord = discord
        self.pool = pool

    def start_arguments(self, handle: ComputeHandle) -> tuple[object, ...]:
        compute = self.config.compute
        spec = ComputeSpec(
            compute_id=handle.id,
            cpu_seconds=compute.cpu_seconds,
            memory_bytes=compute.memory_mb * 1024 * 1024,
            entry_point=compute.entry_point,
            max_emoji=compute.max_emoji,
            jumbo_height=compute.jumbo_height,
            custom_emoji_url=self.discord.custom_emoji_url,
            unicode_emoji_url=self.discord.unicode_emoji_url,
            emoji_timeout=compute.emoji_timeout,
            emoji_max_bytes=compute.emoji_max_bytes,
            emoji_cache_bytes=compute.emoji_cache_mb * 1024 * 1024,
        )
        return (self.child_start("worker.compute_worker:serve", handle.label), spec)

    def started(self, handle: ComputeHandle, pid: int) -> None:
        lower_priority(pid, self.config.compute.niceness)

    def connected(self, handle: ComputeHandle, connection: Connection) -> None:
        handle.transition("ready")
        connection.deliver_to(self.pool.receiver(handle))
        self.pool.worker_up(handle)

    def exited(self, handle: ComputeHandle, exitcode: int | None) -> bool:
        # Killed by its own task's CPU limit: the task's doing, not a crash of the worker.
        over_limit = handle.task is not None and exitcode == -signal.SIGXCPU
        self.pool.worker_down(handle, over_limit)
        return over_limit

    def gave_up(self, handle: ComputeHandle) -> None:
        self.pool.worker_down(handle)  # the queue may now have nobody to run it


class RestGateChild(ChildKind[RestGateHandle]):
    """The REST gate, on a listening socket the master keeps, so that its port (the workers'
    REST base) outlives its restarts."""

    def __init__(
        self,
        handle: RestGateHandle,
        config: Config,
        log_level: str,
        discord: Discord,
        listener: socket.socket,
        workers: int,
        on_heartbeat_ack: Callable[[ChildHandle, HeartbeatAck], None],
    ) -> None:
        super().__init__([handle], config, log_level)
        self.discord = discord
        self.listener = listener
        self.workers = workers
        self.on_heartbeat_ack = on_heartbeat_ack

    def start_arguments(self, handle: RestGateHandle) -> tuple[object, ...]:
        rest = self.config.rest
        spec = RestGateSpec(
            api_url=self.discord.api_url,
            secret=handle.secret,
            workers=self.workers,
            global_limit=rest.global_limit,
            max_wait=rest.max_wait,
            invalid_limit=rest.invalid_limit,
            slowdown_at=rest.slowdown_at,
            refuse_at=rest.refuse_at,
        )
        return (self.child_start("gate.rest_gate:serve", handle.label), spec, self.listener)

    def connected(self, handle: RestGateHandle, connection: Connection) -> None:
        handle.transition("ready")

        def receive(_: Connection, messages: list[AnyMessage], frames: list[Frame]) -> None:
            for message in messages:
                if isinstance(message, RestGateReport):
                    handle.report = message
                elif isinstance(message, HeartbeatAck):
                    self.on_heartbeat_ack(handle, message)

        connection.deliver_to(receive)


def lower_priority(pid: int, niceness: int) -> None:
    """Put a compute process behind the shard workers, from the moment it starts.

    Shard workers answer the gateway and users; with every core busy computing, they come
    first: ``niceness`` more than ours, and the batch policy (no preempting a process that
    wakes up). Set here rather than by the child itself, so that its imports (Pillow, emoji)
    already run behind the shard workers' start. Measured by bench_compute: a shard worker's
    loop lag p99 with jumbo tasks on the pool, 3.5 ms as it was, 2.3 ms niced, 1.3 ms niced
    and batch (1.0 ms idle); by bench_routing: start to all shards ready 1.50 s -> 1.36 s.
    """
    os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness))
    if hasattr(os, "SCHED_BATCH"):  # Linux
        os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))
