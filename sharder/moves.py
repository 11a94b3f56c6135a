"""Moving one shard to another worker: its session handed over by RESUME, its state with it.

Two phases, moved on by the supervisor's every pass:

    releasing   the shard's worker stops running listeners for it, waits for those running to
                finish and reports what they handled, then stops the shard without ending its
                session (SHARD_RELEASED, with the session as it stands)
    resuming    the shard belongs to the target from now on: routes, session and handled
                record move over, the target is sent the state of the shard's guilds and then
                SHARD_TAKE, and starts the shard resuming the session; the move ends when the
                shard is ready there

A source that has no process (it died, or failed) gives the shard up at once: its next process
starts without it. A source that does not release within ``change_step_timeout`` is restarted
(its shards, this one included, resume in its next process); a shard not ready on the target
in time stays there, under the target's supervision. Either way the status says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from sharder.change import Change
from sharder.children import Children
from sharder.shard_workers import ShardWorkers
from sharder.status import MovePhase, MoveState, MoveStatus
from sharder.workers import WorkerHandle

log = logging.getLogger("sharder.supervisor")


class ShardMove(Change[MoveState]):
    def __init__(
        self,
        shard_id: int,
        source: WorkerHandle,
        target: WorkerHandle,
        children: Children,
        shard_workers: ShardWorkers,
        step_timeout: float,
        why: str = "requested",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shard_id = shard_id
        self.why = why
        self.source = source
        self.target = target
        self.children = children
        self.shard_workers = shard_workers
        self.step_timeout = step_timeout
        super().__init__("moving", clock)
        self.since = self.started_at
        log.info(
            "moving shard %d from worker %d to worker %d (%s)", shard_id, source.id, target.id, why
        )
        self.phase: MovePhase = "releasing"
        self.source_process: BaseProcess | None = source.process
        if source.process is None:
            self._reassign()
        else:
            source.released.discard(shard_id)
            shard_workers.release(source, shard_id)

    def what(self) -> str:
        return f"moving shard {self.shard_id} to worker {self.target.id}"

    def advance(self) -> None:
        if not self.active:
            return
        now = self.clock()
        source, target, shard_id = self.source, self.target, self.shard_id
        if self.phase == "releasing":
            if shard_id in source.released:
                self._reassign()
            elif source.process is not self.source_process:
                self._end(
                    "failed",
                    f"worker {source.id} exited while releasing shard {shard_id}, which it keeps",
                )
            elif now - self.since > self.step_timeout:
                self.children.restart(source, f"did not release shard {shard_id}", True)
                self._end(
                    "failed",
                    f"worker {source.id} did not release shard {shard_id} within "
                    f"{self.step_timeout:g} s; it is restarted, the shard resumes there",
                )
        elif target.shards[shard_id].state == "ready":
            log.info("shard %d serves from worker %d", shard_id, target.id)
            self._end("done", None)
        elif now - self.since > self.step_timeout:
            self._end(
                "failed",
                f"shard {shard_id} was not ready on worker {target.id} within "
                f"{self.step_timeout:g} s; it stays there",
            )

    def status(self) -> MoveStatus:
        return MoveStatus(
            shard=self.shard_id,
            source=self.source.id,
            target=self.target.id,
            state=self.state,
            why=self.why,
            phase=self.phase if self.active else None,
            reason=self.reason,
            took_s=self.took_s(),
        )

    def _reassign(self) -> None:
        self.shard_workers.reassign(self.source, self.target, self.shard_id)
        self.phase = "resuming"
        self.since = self.clock()
