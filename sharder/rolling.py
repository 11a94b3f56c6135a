"""A rolling restart: every shard worker replaced in turn by a process with freshly imported code.

One worker at a time, each step in three phases, moved on by the supervisor's every pass:

    loading        a standby process starts beside the running one: it imports the bot code,
                   runs its setup and receives the worker's shared state, then says STANDBY
    handing_over   the running process finishes its handlers, reports what they handled, and
                   exits with its sessions open; the standby's process runs for the worker now,
                   and is handed the sessions (SHARD_TAKE)
    resuming       its shards RESUME (no IDENTIFY: no identify slot, nothing lost, nothing
                   handled twice); the step ends when they are all ready

A step that goes wrong stops the roll: a standby that exits or does not load within
``change_step_timeout`` (broken new code) is dropped, and that worker and all after it keep their
running processes; a worker whose shards are not all ready in time stays as it is. The roll's
status says which worker, which phase, and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from sharder.change import Change
from sharder.children import Children
from sharder.shard_workers import ShardWorkers
from sharder.status import RollPhase, RollState, RollStatus
from sharder.workers import StandbyHandle, WorkerHandle

log = logging.getLogger("sharder.supervisor")


@dataclass(slots=True)
class Step:
    worker: WorkerHandle
    standby: StandbyHandle
    phase: RollPhase
    since: float
    old_process: BaseProcess | None = None


class RollingRestart(Change[RollState]):
    def __init__(
        self,
        workers: list[WorkerHandle],
        children: Children,
        shard_workers: ShardWorkers,
        step_timeout: float,
        resumable: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``resumable``: whether the sessions are handed over (``resume_sessions``)."""
        self.queue = list(workers)
        self.total = len(workers)
        self.children = children
        self.shard_workers = shard_workers
        self.step_timeout = step_timeout
        self.resumable = resumable
        super().__init__("rolling", clock)
        self.replaced: list[int] = []
        self.step: Step | None = None
        log.info("rolling restart of %d workers", self.total)

    def what(self) -> str:
        return f"rolling restart of {self.total} workers"

    def advance(self) -> None:
        while self.active:
            step = self.step
            if step is None:
                if not self.queue:
                    self._end("done", None)
                    return
                self.step = self._load(self.queue.pop(0))
                continue
            now = self.clock()
            before = step.phase
            if step.phase == "loading":
                self._loading(step, now)
            elif step.phase == "handing_over":
                self._handing_over(step, now)
            else:
                self._resuming(step, now)
            if self.step is step and step.phase == before:
                return  # waiting for the step's process

    def cancel(self, reason: str) -> None:
        if not self.active:
            return
        step = self.step
        if step is not None and step.phase == "loading":
            self._drop(step)
        self._end("cancelled", reason)

    def status(self) -> RollStatus:
        step = self.step if self.active else None
        return RollStatus(
            state=self.state,
            workers=self.total,
            replaced=list(self.replaced),
            worker=step.worker.id if step is not None else None,
            phase=step.phase if step is not None else None,
            reason=self.reason,
            took_s=self.took_s(),
        )

    # -- the phases ------------------------------------------------------------------------------

    def _load(self, worker: WorkerHandle) -> Step:
        standby = StandbyHandle(worker)
        worker.standby = standby
        self.children.add(standby, self.shard_workers)
        self.children.spawn(standby)
        return Step(worker, standby, "loading", self.clock())

    def _loading(self, step: Step, now: float) -> None:
        worker, standby = step.worker, step.standby
        if standby.standing_by and standby.serving:
            step.since = now
            if worker.process is None:
                # Down already (a crash, waiting for its restart): the standby starts at once.
                worker.reset_backoff()
                worker.standby = None
                self.children.take_over(worker, standby)
                step.phase = "resuming"
                return
            step.old_process = worker.process
            step.phase = "handing_over"
            log.info("rolling restart: worker %d hands its shards over", worker.id)
            self.children.restart(worker, "rolling restart", self.resumable)
            return
        if standby.process is None:
            self._fail(
                f"worker {worker.id}'s new process exited before it was ready "
                f"({standby.last_exit}; its log says why)"
            )
        elif now - step.since > self.step_timeout:
            self._fail(
                f"worker {worker.id}'s new process did not load the bot code "
                f"within {self.step_timeout:g} s"
            )

    def _handing_over(self, step: Step, now: float) -> None:
        worker = step.worker
        if worker.process is not step.old_process:
            # The old process is gone: its standby's runs for it, or (the standby died in
            # between) a new one was started as after any restart.
            step.since = now
            step.phase = "resuming"
        elif now - step.since > self.step_timeout:
            self._fail(
                f"worker {worker.id} did not hand its shards over within {self.step_timeout:g} s"
            )

    def _resuming(self, step: Step, now: float) -> None:
        worker = step.worker
        if worker.state == "ready":
            log.info("rolling restart: worker %d serves from its new process", worker.id)
            self.replaced.append(worker.id)
            self.step = None
        elif worker.state in ("backoff", "failed"):
            self._fail(f"worker {worker.id}'s new process exited ({worker.last_exit})")
        elif now - step.since > self.step_timeout:
            self._fail(
                f"worker {worker.id}'s shards were not all ready within {self.step_timeout:g} s"
            )

    # -- ending --------------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        step = self.step
        if step is not None and step.phase == "loading":
            self._drop(step)
        kept = [step.worker.id] if step is not None and step.phase == "loading" else []
        kept += [worker.id for worker in self.queue]
        if kept:
            reason += f"; workers {', '.join(map(str, kept))} keep their running processes"
        self._end("failed", reason)

    def _drop(self, step: Step) -> None:
        """The standby will not take over: it ends (killed, if it still runs)."""
        if step.worker.standby is step.standby:
            step.worker.standby = None
        if step.standby.process is not None:
            self.children.kill(step.standby, "rolling restart stopped")
