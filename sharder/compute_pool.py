"""The compute pool: CPU work from the shard workers, run by compute workers, one task each.

A ``COMPUTE_REQUEST`` from a shard worker goes, as the frame it arrived in, to an idle compute
worker (the one that has done the fewest tasks), or waits in a bounded queue; a full queue
answers ``busy`` at once. The compute worker's answer goes back to the asker the same way. A
task past its deadline is answered ``timeout``; if it was running, its process is killed and
replaced, since a task cannot be stopped any other way on the process's only thread. A compute
worker that dies mid-task has its asker told at once. Every request gets exactly one answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from protocol import AnyMessage, Connection, Frame
from protocol.clock import Clock
from protocol.connection import Receiver
from protocol.deadlines import DeadlineWheel
from protocol.messages import (
    ComputeRequest,
    ComputeResult,
    ErrorCode,
    HeartbeatAck,
    ReplyError,
)
from sharder.lifecycle import ChildHandle
from sharder.measures import MEASURES
from sharder.status import ComputePoolStatus
from sharder.workers import ComputeHandle, WorkerHandle

log = logging.getLogger("sharder.compute")

RESULTS = (ComputeResult, ReplyError)
# Task names measured apart: a bot registers a handful; past this, the rest count together.
TASK_NAMES = 32
OTHER_TASKS = "other"


class ComputeReports(Protocol):
    def on_heartbeat_ack(self, handle: ChildHandle, ack: HeartbeatAck) -> None: ...
    def replace(self, handle: ChildHandle, reason: str) -> None: ...


@dataclass(slots=True)
class Queued:
    origin: int
    request: ComputeRequest
    frame: Frame


class ComputePool:
    def __init__(
        self,
        handles: Mapping[int, ComputeHandle],
        workers: Mapping[int, WorkerHandle],
        queue_size: int,
        reports: ComputeReports,
        clock: Clock = time.monotonic,
    ) -> None:
        self._clock = clock
        self.handles = handles
        self.workers = workers
        self.reports = reports
        self.counts = ComputePoolStatus(queue_size=queue_size)
        self.queued: dict[int, Queued] = {}  # by nonce; insertion order is the queue's
        self.running: dict[int, ComputeHandle] = {}  # by nonce
        self._deadlines: DeadlineWheel[int] = DeadlineWheel(self._expire, clock=clock)
        self._task_names: set[str] = set()  # measured apart; the rest as OTHER_TASKS

    def receiver(self, handle: ComputeHandle) -> Receiver:
        """The read-path callback of one compute worker's connection."""

        def receive(_: Connection, messages: list[AnyMessage], frames: list[Frame]) -> None:
            for message, frame in zip(messages, frames, strict=True):
                if isinstance(message, RESULTS):
                    self._on_result(handle, message, frame)
                elif isinstance(message, HeartbeatAck):
                    self.reports.on_heartbeat_ack(handle, message)
                else:
                    kind = type(message).__struct_config__.tag
                    log.warning("%s sent %s, which the master does not take", handle, kind)

        return receive

    def status(self) -> ComputePoolStatus:
        self.counts.queued = len(self.queued)
        return self.counts

    # -- what shard workers ask --------------------------------------------------------------

    def submit(self, origin: WorkerHandle, request: ComputeRequest, frame: Frame) -> None:
        nonce = request.nonce
        if request.deadline <= self._clock():
            self._answer(origin.id, nonce, "timeout", "the deadline had passed")
            return
        if not self._can_serve():
            self._answer(origin.id, nonce, "target_down", self._why_none_serve())
            return
        idle = self._least_loaded()
        if idle is not None:
            self._start(idle, origin.id, request, frame)
            return
        if len(self.queued) >= self.counts.queue_size:
            self.counts.busy += 1
            message = (
                f"all {len(self.handles)} compute workers are busy and "
                f"{len(self.queued)} tasks wait; try again later"
            )
            self._answer(origin.id, nonce, "busy", message)
            return
        self.queued[nonce] = Queued(origin.id, request, frame)
        self._deadlines.add(nonce, request.deadline)

    def origin_down(self, worker_id: int) -> None:
        """A shard worker is gone: its queued tasks have nobody to answer."""
        for nonce in [n for n, queued in self.queued.items() if queued.origin == worker_id]:
            del self.queued[nonce]
            self._deadlines.discard(nonce)

    # -- compute workers coming and going ----------------------------------------------------

    def worker_up(self, handle: ComputeHandle) -> None:
        log.info("%s ready (pid %s)", handle, handle.pid)
        self._dispatch()

    def worker_down(self, handle: ComputeHandle, over_limit: bool = False) -> None:
        """A compute worker's process is gone: its task's asker is told now. ``over_limit``:
        the task itself ended it, by passing its CPU limit."""
        task = handle.task
        if task is not None:
            handle.task = None
            if self.running.pop(task.nonce, None) is handle:
                self._deadlines.discard(task.nonce)
                self.counts.lost += 1
                self._measure(handle, task, "limit" if over_limit else "lost")
                if over_limit:
                    MEASURES.compute_kills["cpu_limit"] += 1
                    reason = f"the {task.task} task passed its CPU limit ({handle.last_exit})"
                    self._answer(handle.task_origin, task.nonce, "limit", reason)
                else:
                    reason = f"compute worker {handle.id} died running the {task.task} task"
                    self._answer(
                        handle.task_origin,
                        task.nonce,
                        "target_down",
                        f"{reason}: {handle.last_exit}",
                    )
        if not self._can_serve():
            for nonce, queued in list(self.queued.items()):
                del self.queued[nonce]
                self._deadlines.discard(nonce)
                self._answer(queued.origin, nonce, "target_down", self._why_none_serve())

    # -- running tasks -----------------------------------------------------------------------

    def _least_loaded(self) -> ComputeHandle | None:
        idle = [handle for handle in self.handles.values() if handle.idle]
        return min(idle, key=lambda handle: handle.tasks_done) if idle else None

    def _start(
        self, handle: ComputeHandle, origin: int, request: ComputeRequest, frame: Frame
    ) -> None:
        connection = handle.connection
        assert connection is not None
        handle.task = request
        handle.task_origin = origin
        handle.task_started = self._clock()
        self.running[request.nonce] = handle
        self._deadlines.add(request.nonce, request.deadline)
        connection.forward_soon(frame)

    def _dispatch(self) -> None:
        while self.queued:
            handle = self._least_loaded()
            if handle is None:
                return
            nonce = next(iter(self.queued))
            queued = self.queued.pop(nonce)
            self._deadlines.discard(nonce)
            self._start(handle, queued.origin, queued.request, queued.frame)

    def _on_result(
        self, handle: ComputeHandle, result: ComputeResult | ReplyError, frame: Frame
    ) -> None:
        if self.running.get(result.nonce) is not handle:
            log.debug("result %d from %s came after its deadline", result.nonce, handle)
            return
        del self.running[result.nonce]
        self._deadlines.discard(result.nonce)
        if handle.task is not None:
            self._measure(
                handle, handle.task, "ok" if isinstance(result, ComputeResult) else result.code
            )
        handle.task = None
        handle.tasks_done += 1
        self.counts.done += 1
        origin = self._connection_of(handle.task_origin)
        if origin is not None:
            origin.forward_soon(frame)
        self._dispatch()

    def _expire(self, nonce: int) -> None:
        queued = self.queued.pop(nonce, None)
        if queued is not None:
            self.counts.timed_out += 1
            message = (
                f"the {queued.request.task} task waited for a compute worker past its deadline"
            )
            self._answer(queued.origin, nonce, "timeout", message)
            return
        handle = self.running.pop(nonce, None)
        if handle is None or handle.task is None:
            return
        task = handle.task
        handle.task = None
        self.counts.timed_out += 1
        self._measure(handle, task, "timeout")
        MEASURES.compute_kills["deadline"] += 1
        reason = f"the {task.task} task passed its deadline"
        self._answer(
            handle.task_origin,
            nonce,
            "timeout",
            f"{reason}; compute worker {handle.id} was killed and is being replaced",
        )
        log.warning("%s: %s; killing it", handle, reason)
        self.reports.replace(handle, reason)

    def _measure(self, handle: ComputeHandle, task: ComputeRequest, outcome: str) -> None:
        """How long ``task`` ran on ``handle``, under its name (while names are few)."""
        name = task.task
        if name not in self._task_names:
            if len(self._task_names) < TASK_NAMES:
                self._task_names.add(name)
            else:
                name = OTHER_TASKS
        MEASURES.compute_tasks[name, outcome].observe(self._clock() - handle.task_started)

    # -- answering ---------------------------------------------------------------------------

    def _can_serve(self) -> bool:
        """Whether any compute worker serves or will again (is not failed or stopped)."""
        return any(handle.state not in ("failed", "stopped") for handle in self.handles.values())

    def _why_none_serve(self) -> str:
        if not self.handles:
            return "the compute pool has no workers"
        return "; ".join(handle.describe() for handle in self.handles.values())

    def _answer(self, worker_id: int, nonce: int, code: ErrorCode, message: str) -> None:
        connection = self._connection_of(worker_id)
        if connection is not None:
            connection.send_soon(ReplyError(nonce=nonce, code=code, message=message))

    def _connection_of(self, worker_id: int) -> Connection | None:
        """The open link of the worker that asked; None once it is gone (a reshard retires
        workers for good)."""
        handle = self.workers.get(worker_id)
        connection = handle.connection if handle is not None else None
        return connection if connection is not None and connection.is_open else None
