"""A child process's life as the master sees it: its states, their legal edges, its health.

A handle outlives the processes it runs: each restart puts a new process and connection in the
same handle, so the child keeps its id and its restart history. Its state changes only through
``ChildHandle.transition``, which knows the legal edges; an illegal one is a bug in the master
and raises.

    stopped --spawn--> spawning --hello--> starting --all shards ready--> ready
                          |   `--hello (no shards)----------------------->'  |
                          |                   ready --a shard down--> starting
      any live state --asked to stop--> stopping
      any live state --exit--> spawning (a planned restart) | backoff | failed | stopped
      (never spawning while the last process is not reaped)
      backoff --due--> spawning;  failed --restart command--> spawning;  down --shutdown--> stopped
      (a standby's process taking over: spawning, as for a restart, then starting at once)
"""

from __future__ import annotations

import logging
import time
from collections import deque
from multiprocessing.process import BaseProcess
from typing import Literal

from protocol import Connection
from protocol.liveness import Liveness
from protocol.messages import HeartbeatAck
from sharder.measures import MEASURES

log = logging.getLogger("sharder.supervisor")

ChildState = Literal[
    "spawning",  # process started, hello not yet received
    "starting",  # connected; its shards are connecting
    "ready",  # serving: every shard it owns is ready
    "stopping",  # asked to stop
    "backoff",  # died; waiting to be restarted
    "failed",  # restarted too often within the crash-loop window; left down
    "stopped",
]
LIVE: frozenset[ChildState] = frozenset({"spawning", "starting", "ready", "stopping"})
SERVING: frozenset[ChildState] = frozenset({"starting", "ready"})
# Where a process's exit leads, from any live state.
AFTER_EXIT: frozenset[ChildState] = frozenset({"spawning", "backoff", "failed", "stopped"})
EDGES: dict[ChildState, frozenset[ChildState]] = {
    "stopped": frozenset({"spawning", "stopped"}),
    "spawning": AFTER_EXIT | {"starting", "ready", "stopping"},
    "starting": AFTER_EXIT | {"ready", "stopping"},
    "ready": AFTER_EXIT | {"starting", "stopping"},
    "stopping": AFTER_EXIT | {"stopping"},
    "backoff": frozenset({"spawning", "stopped"}),
    "failed": frozenset({"spawning", "stopped"}),
}
ROUND_TRIPS_KEPT = 100  # heartbeat round trips the status's p99 is taken over


class IllegalTransition(RuntimeError):
    """The master tried to move a child along an edge its life does not have."""


class ChildHandle:
    kind = "child"
    # Not restarted: when its process ends, the child is forgotten (a worker's standby).
    temporary = False

    def __init__(
        self, child_id: int, first_backoff: float, liveness: Liveness | None = None
    ) -> None:
        self.id = child_id
        # Shared stamps the child keeps fresh, for children whose loop may be busy for long;
        # without, a child is hung when it leaves ``heartbeat_misses`` pings unanswered.
        self.liveness = liveness
        self.seen_busy = False  # as last logged: its loop had not turned for a beat or more
        self._state: ChildState = "stopped"
        self.process: BaseProcess | None = None
        self.connection: Connection | None = None
        self.restarts = 0
        self.exits: deque[float] = deque()  # times of unplanned exits, for the crash-loop cap
        self.first_backoff = first_backoff
        self.backoff = first_backoff
        self.restart_at: float | None = None
        self.restart_requested = False  # a planned restart: no backoff, not a crash
        self.spawned_at = 0.0
        self.last_exit: str | None = None
        self.kill_reason: str | None = None  # why the master killed the current process
        self.unacked_heartbeats = 0
        self.health: HeartbeatAck | None = None
        self._pings: dict[int, float] = {}  # unanswered heartbeats: nonce -> sent at
        self.round_trips: deque[float] = deque(maxlen=ROUND_TRIPS_KEPT)  # seconds

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"

    @property
    def label(self) -> str:
        """Its name in logs and metrics: "worker-0", "compute-1", "rest-gate"."""
        return f"{self.kind}-{self.id}"

    @property
    def state(self) -> ChildState:
        return self._state

    def transition(self, to: ChildState) -> None:
        """Move to ``to``; raises ``IllegalTransition`` for an edge the diagram does not have."""
        if to not in EDGES[self._state]:
            raise IllegalTransition(f"{self}: {self._state} -> {to}")
        if to == "spawning" and self.process is not None:
            raise IllegalTransition(f"{self}: a second process while pid {self.pid} is not reaped")
        self._state = to

    @property
    def stopping(self) -> bool:
        return self._state == "stopping"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def serving(self) -> bool:
        """Connected and not stopping: work may go to it."""
        return self._state in SERVING and self.connection is not None and self.connection.is_open

    @property
    def watched(self) -> bool:
        """Whether missed heartbeats count against it now."""
        return True

    def busy_for(self, busy_after: float) -> float | None:
        """Seconds its loop has not turned, if ``busy_after`` or more while it serves (never,
        for a child without liveness stamps)."""
        if self.liveness is None or self._state not in SERVING:
            return None
        stalled = self.liveness.stalled_for(time.monotonic())
        return stalled if stalled >= busy_after else None

    def hung(self, now: float, interval: float, misses: int, stall_timeout: float) -> str | None:
        """Why the child counts as hung, if it does; notes a busy loop on the way.

        A child with shared liveness stamps is hung when its process has been silent for
        ``misses`` beats (stopped, or an interpreter that never lets go of the GIL), or its
        loop has not turned for ``stall_timeout``; a loop that has not turned for less is busy,
        not hung (a large guild load, a slow handler). Other children are hung when they leave
        ``misses`` pings unanswered.
        """
        liveness = self.liveness
        if liveness is None:
            if self.unacked_heartbeats >= misses:
                return f"hung: {self.unacked_heartbeats} heartbeats unanswered"
            return None
        silent = liveness.silent_for(now)
        if silent >= misses * interval:
            return f"hung: {misses} heartbeats unanswered (silent for {silent:.1f} s)"
        stalled = liveness.stalled_for(now)
        if stalled >= stall_timeout:
            return f"hung: its event loop has not turned for {stalled:.0f} s"
        busy = self.busy_for(interval) is not None
        if busy != self.seen_busy:
            self.seen_busy = busy
            if busy:
                log.info("%s is busy: its event loop has not turned for %.1f s", self, stalled)
            else:
                log.info("%s is no longer busy", self)
        return None

    def record_ping(self, nonce: int, sent_at: float) -> None:
        self.unacked_heartbeats += 1
        self._pings[nonce] = sent_at

    def record_ack(self, ack: HeartbeatAck) -> None:
        self.unacked_heartbeats = 0
        self.health = ack
        sent_at = self._pings.get(ack.nonce)
        if sent_at is not None:
            took = time.monotonic() - sent_at
            self.round_trips.append(took)
            MEASURES.heartbeats[self.label].observe(took)
        # Pings before this one will not be answered any more (acks come in order).
        self._pings = {nonce: at for nonce, at in self._pings.items() if nonce > ack.nonce}

    def heartbeat_p99_ms(self) -> float | None:
        """The 99th percentile of the recent heartbeat round trips, in milliseconds."""
        if not self.round_trips:
            return None
        ordered = sorted(self.round_trips)
        return round(ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)] * 1000, 2)

    def spawned(self, process: BaseProcess, now: float) -> None:
        """A new process runs for this child."""
        if self.liveness is not None:
            self.liveness.reset()
        self.transition("spawning")
        self.process = process
        self.kill_reason = None
        self.restart_at = None
        self.spawned_at = now

    def take_process(self, standby: ChildHandle) -> None:
        """Run ``standby``'s process, connected already, as this child's next one."""
        process, connection = standby.process, standby.connection
        assert process is not None and connection is not None
        self.liveness = standby.liveness
        self.spawned(process, standby.spawned_at)
        self.connection = connection
        self.health = standby.health
        standby.forget_process()

    def forget_process(self) -> None:
        """The process is gone: its health is no longer known."""
        self.process = None
        self.connection = None
        self.health = None
        self.unacked_heartbeats = 0
        self.seen_busy = False
        self._pings.clear()

    def count_exit(self, now: float, window: float) -> int:
        """Record an unplanned exit; how many happened within the crash-loop window."""
        self.exits.append(now)
        while self.exits and now - self.exits[0] > window:
            self.exits.popleft()
        return len(self.exits)

    def reset_backoff(self) -> None:
        """Forget past exits: the next one starts the backoff from the beginning."""
        self.exits.clear()
        self.backoff = self.first_backoff
