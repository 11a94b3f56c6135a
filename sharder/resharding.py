"""Live resharding: a new generation of shards with the new count beside the old one, then one
cutover.

    connecting   as many new workers as serve now start beside them, each with its run of the
                 new count's shards: they load the bot code and their guilds' shared state (and
                 every change made meanwhile), and their shards IDENTIFY through the identify
                 gate, whose buckets and budget both generations share, and fill their caches;
                 their listeners are muted
    cutover      once every new shard is ready with all its guilds: the master names an
                 instant ``CUTOVER_LEAD`` ahead to both generations (CUTOVER) and switches
                 routing, requests and state to the new one at once; each event is handled by
                 the generation it belongs to (``worker.cutover``: messages and interactions by
                 their snowflakes)
    retiring     ``RETIRE_AFTER`` past the instant, the old workers finish their handlers and
                 close their sessions; the reshard is done when they have exited

Until the cutover nothing changes for the old generation: a reshard that fails before it (a
new worker that fails, shards not ready within ``change_step_timeout``) rolls back by stopping
the new workers, whose sessions close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from protocol import RoutingTable, contiguous_assignment
from protocol.messages import CATCH_UP_MAX, CatchUp, Cutover
from sharder.change import Change
from sharder.children import Children
from sharder.shard_workers import ShardWorkers
from sharder.state_service import StateService
from sharder.status import ReshardPhase, ReshardState, ReshardStatus
from sharder.workers import WorkerHandle

log = logging.getLogger("sharder.supervisor")

# The cutover instant is this far ahead of its announcement, so that both generations have it
# before it comes (a loop busy for longer judges the events of that moment late).
CUTOVER_LEAD = 0.25
# How long past the instant the old generation keeps its sessions: what was created before
# the instant still reaches it.
RETIRE_AFTER = 1.0


class Reshard(Change[ReshardState]):
    def __init__(
        self,
        shard_count: int,
        workers: dict[int, WorkerHandle],
        table: RoutingTable,
        children: Children,
        shard_workers: ShardWorkers,
        state: StateService,
        step_timeout: float,
        on_cutover: Callable[[int], None],
        why: str = "requested",
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``on_cutover(generation)``: the new generation serves from now on."""
        self.workers = workers
        self.table = table
        self.children = children
        self.shard_workers = shard_workers
        self.state_service = state
        self.step_timeout = step_timeout
        self.on_cutover = on_cutover
        self.why = why
        super().__init__("resharding", clock)
        self.wall = wall
        self.from_shards = table.shard_count
        self.to_shards = shard_count
        self.phase: ReshardPhase = "connecting"
        self.since = self.started_at
        self.cutover_at: float | None = None  # wall clock, once named
        owners = table.owners()
        self.old = [workers[owner] for owner in owners]
        for handle in self.old:  # what they handle, for the new generation's catch-up
            handle.created_handled = set()
        generation = self.old[0].generation + 1
        first = max(workers) + 1
        self.new_table = RoutingTable(
            shard_count,
            {
                shard: first + owner
                for shard, owner in contiguous_assignment(shard_count, len(owners)).items()
            },
        )
        self.new: list[WorkerHandle] = []
        for worker_id in self.new_table.owners():
            handle = WorkerHandle(
                worker_id,
                self.new_table.shards_of(worker_id),
                shard_count,
                self.old[0].first_backoff,
                generation,
            )
            handle.awaiting_cutover = True
            self.new.append(handle)
        log.info(
            "resharding from %d to %d shards (%s): workers %s start beside %s",
            self.from_shards,
            shard_count,
            why,
            [handle.id for handle in self.new],
            owners,
        )
        state.incoming = self.new_table
        for handle in self.new:
            workers[handle.id] = handle
            children.add(handle, shard_workers)
            children.spawn(handle)

    def what(self) -> str:
        return f"reshard from {self.from_shards} to {self.to_shards} shards"

    def advance(self) -> None:
        if not self.active:
            return
        now = self.clock()
        if self.phase == "connecting":
            failed = [handle for handle in self.new if handle.state == "failed"]
            if failed:
                self._roll_back(f"new worker {failed[0].id} failed: {failed[0].last_exit}")
            elif all(self._loaded(handle) for handle in self.new):
                self._cut_over()
            elif now - self.since > self.step_timeout:
                self._roll_back(
                    f"{self.shards_ready()} of {self.to_shards} new shards were ready "
                    f"within {self.step_timeout:g} s"
                )
        elif self.phase == "cutover":
            assert self.cutover_at is not None
            if self.wall() >= self.cutover_at + RETIRE_AFTER:
                for handle in self.old:
                    self._retire(handle, "resharded")
                self.phase = "retiring"
                self.since = now
        elif all(handle.process is None for handle in self.old):
            self._catch_up()
            self._end("done", None)

    def shards_ready(self) -> int:
        return sum(self._ready_shards(handle) for handle in self.new)

    def status(self) -> ReshardStatus:
        return ReshardStatus(
            state=self.state,
            why=self.why,
            from_shards=self.from_shards,
            to_shards=self.to_shards,
            phase=self.phase if self.active else None,
            shards_ready=self.shards_ready() if self.phase == "connecting" else self.to_shards,
            cutover_at=self.cutover_at,
            reason=self.reason,
            took_s=self.took_s(),
        )

    def cancel(self, reason: str) -> None:
        if self.active and self.phase == "connecting":
            self._roll_back(reason)

    # -- the steps -------------------------------------------------------------------------------

    def _cut_over(self) -> None:
        at = self.cutover_at = self.wall() + CUTOVER_LEAD
        cutover = Cutover(at=at)
        for handle in (*self.old, *self.new):
            if handle.connection is not None and handle.connection.is_open:
                handle.connection.send_soon(cutover)
        self.table.replace(self.new_table)
        self.state_service.incoming = None
        for handle in self.new:
            handle.awaiting_cutover = False
        self.on_cutover(self.new[0].generation)
        self.phase = "cutover"
        self.since = self.clock()
        log.info(
            "cutover to %d shards at %.3f (%.1f s after the start)",
            self.to_shards,
            at,
            self.since - self.started_at,
        )

    def _catch_up(self) -> None:
        """The old generation is gone, and with it every report of what it handled: the new
        one runs what it set aside from before the cutover that the old did not handle."""
        handled: set[int] = set()
        for handle in self.old:
            handled |= handle.created_handled or set()
            handle.created_handled = None
        catch_up = CatchUp(handled=sorted(handled)[-CATCH_UP_MAX:])
        for handle in self.new:
            if handle.connection is not None and handle.connection.is_open:
                handle.connection.send_soon(catch_up)

    def _roll_back(self, reason: str) -> None:
        for handle in self.old:
            handle.created_handled = None
        for handle in self.new:
            self._retire(handle, "reshard rolled back")
        self.state_service.incoming = None
        self._end("failed", f"{reason}; rolled back, {self.from_shards} shards serve on")

    def _retire(self, handle: WorkerHandle, reason: str) -> None:
        """The worker's generation is done: it finishes its handlers, closes its sessions and
        exits, and is forgotten then (at once, if it has no process)."""
        handle.temporary = True
        if handle.process is None:
            self.children.forget(handle)
            self.shard_workers.forget(handle)
            return
        if handle.state != "stopping":
            handle.transition("stopping")
        self.children.ask_to_stop(handle, reason, resumable=False)

    @staticmethod
    def _ready_shards(handle: WorkerHandle) -> int:
        return sum(
            shard.state == "ready" and shard.guilds_loaded >= shard.guilds
            for shard in handle.shards.values()
        )

    def _loaded(self, handle: WorkerHandle) -> bool:
        return self._ready_shards(handle) == len(handle.shard_ids)
