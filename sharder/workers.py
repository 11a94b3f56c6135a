"""The master's handles of its kinds of child, beyond what every child has (``lifecycle``).

A shard worker (``WorkerHandle``) adds its shards and their sessions (and, while a rolling
restart replaces it, its ``StandbyHandle``), a compute worker
(``ComputeHandle``) the task it runs, the REST gate (``RestGateHandle``) its address and its
latest report. The handles keep the facts and answer questions about them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Collection

from protocol.liveness import Liveness
from protocol.messages import (
    CATCH_UP_MAX,
    ComputeRequest,
    HandledReport,
    HeartbeatAck,
    RestGateReport,
    ShardHandled,
    ShardHealth,
)
from sharder.lifecycle import ChildHandle
from sharder.measures import MEASURES
from sharder.status import ComputeStatus, RestGateStatus, ShardStatus, WorkerStatus
from worker.spec import Session

SESSION_HISTORY = 30.0  # seconds of reported sessions kept for a handover


class ComputeHandle(ChildHandle):
    """A compute worker: one task at a time, so its load is whether it runs one."""

    kind = "compute"

    def __init__(self, child_id: int, first_backoff: float) -> None:
        super().__init__(child_id, first_backoff)
        self.task: ComputeRequest | None = None
        self.task_origin = 0  # the shard worker that asked for the running task
        self.task_started = 0.0  # when the running task was sent to it
        self.tasks_done = 0

    @property
    def idle(self) -> bool:
        return self.serving and self.task is None

    @property
    def watched(self) -> bool:
        # A task runs on the process's only thread: its deadline watches it, not heartbeats.
        return self.task is None

    def describe(self) -> str:
        if self.state == "failed":
            return f"compute worker {self.id} failed: {self.last_exit}"
        return f"compute worker {self.id} is {self.state}"

    def status(self) -> ComputeStatus:
        health = self.health
        return ComputeStatus(
            id=self.id,
            pid=self.pid,
            state=self.state,
            task=self.task.task if self.task is not None else None,
            tasks_done=self.tasks_done,
            restarts=self.restarts,
            rss_bytes=health.rss_bytes if health else 0,
            last_exit=self.last_exit,
        )


class RestGateHandle(ChildHandle):
    """The REST gate process: its latest report of what went through it."""

    kind = "rest_gate"
    label = "rest-gate"  # there is only one

    def __init__(self, first_backoff: float, url: str, secret: str, lanes: int) -> None:
        super().__init__(0, first_backoff)
        self.url = url  # what the workers' hikari is pointed at, below /{secret}/w/{lane}/api/v10
        self.lanes = lanes  # of fairness, taken in turn: worker ids modulo it
        # Made anew each run and known only to the master, the gate and the workers: a local
        # process that finds the port cannot spend the bot's limits or its invalid-request count.
        self.secret = secret
        self.report: RestGateReport | None = None

    def status(self) -> RestGateStatus:
        report = self.report or RestGateReport(requests=0, got_429=0, invalid_10min=0, refused=0)
        return RestGateStatus(
            pid=self.pid,
            state=self.state,
            url=self.url,
            restarts=self.restarts,
            rss_bytes=self.health.rss_bytes if self.health else 0,
            last_exit=self.last_exit,
            requests=report.requests,
            got_429=report.got_429,
            invalid_10min=report.invalid_10min,
            refused=report.refused,
            routes=report.routes,
        )


class WorkerHandle(ChildHandle):
    """A shard worker: its shards, their health, and the sessions a next process resumes."""

    kind = "worker"
    liveness: Liveness  # always: its loop may be busy for seconds, which is not hung

    def __init__(
        self,
        worker_id: int,
        shard_ids: list[int],
        shard_count: int,
        first_backoff: float,
        generation: int = 0,
    ) -> None:
        super().__init__(worker_id, first_backoff, Liveness())
        self.shard_ids = shard_ids
        # Of the bot's shards: a live reshard runs two generations of workers, each with its
        # own count, until the cutover.
        self.shard_count = shard_count
        self.generation = generation
        self.awaiting_cutover = False  # a new generation's: its listeners muted until CUTOVER
        self.shards: dict[int, ShardHealth] = {
            shard_id: ShardHealth(shard_id=shard_id, state="down") for shard_id in shard_ids
        }
        self.events_rate = 0.0
        self._last_events: tuple[float, int] | None = None
        # Each shard's dispatches per second, from the seqs of its last two reports.
        self.shard_rates: dict[int, float] = {}
        self._last_seqs: dict[int, tuple[float, str, int]] = {}
        # Each shard's dispatches by type as the process last reported them (counts since it
        # started): what is new goes to the bot's totals.
        self._last_event_types: dict[int, dict[str, int]] = {}
        # What the shards need to RESUME, as reported over the last seconds; it outlives the
        # process, so that the next one takes the sessions over.
        self.session_history: dict[int, deque[tuple[float, Session]]] = {}
        self.guild_counts: dict[int, int] = {}
        # What bot code has finished handling, per shard: kept across processes, as the sessions.
        self.handled: dict[int, ShardHandled] = {}
        self.spawned_with_sessions = False
        self.standby: StandbyHandle | None = None  # a process started to take its place
        self.released: set[int] = set()  # shards its process stopped for another worker
        # During a reshard, the old generation's: the messages and interactions it handled.
        self.created_handled: set[int] | None = None

    def describe(self) -> str:
        """Why this worker cannot take a request, in words for an error reply."""
        shards = (
            f"shards {self.shard_ids[0]}-{self.shard_ids[-1]}" if self.shard_ids else "no shards"
        )
        if self.state == "failed":
            return f"worker {self.id} ({shards}) failed: {self.last_exit}"
        if self.state == "backoff":
            return f"worker {self.id} ({shards}) is restarting after: {self.last_exit}"
        return f"worker {self.id} ({shards}) is {self.state}"

    def record_ack(self, ack: HeartbeatAck) -> None:
        super().record_ack(ack)
        now = time.monotonic()
        for shard in ack.shards:
            if shard.shard_id in self.shards:
                self.shards[shard.shard_id] = shard
                self.remember_session(shard)
                self._count_rate(shard, now)
                self._count_event_types(shard)
        if self._last_events is not None and now > self._last_events[0]:
            then, count = self._last_events
            self.events_rate = max(0.0, (ack.events - count) / (now - then))
        self._last_events = (now, ack.events)
        if self.state == "starting" and self.all_shards_ready():
            self.transition("ready")

    def _count_event_types(self, shard: ShardHealth) -> None:
        before = self._last_event_types.get(shard.shard_id, {})
        for event_type, count in shard.events.items():
            was = before.get(event_type, 0)
            new = count - was if count >= was else count  # fewer: the shard came back anew
            if new:
                MEASURES.events[shard.shard_id, event_type] += new
        self._last_event_types[shard.shard_id] = shard.events

    def _count_rate(self, shard: ShardHealth, now: float) -> None:
        if shard.session_id is None or shard.seq is None:
            return
        last = self._last_seqs.get(shard.shard_id)
        if last is not None and last[1] == shard.session_id and now > last[0]:
            self.shard_rates[shard.shard_id] = max(0, shard.seq - last[2]) / (now - last[0])
        self._last_seqs[shard.shard_id] = (now, shard.session_id, shard.seq)

    def record_handled(self, report: HandledReport) -> None:
        for shard in report.shards:
            if shard.shard_id in self.shards:
                self.handled[shard.shard_id] = shard
        if self.created_handled is not None and len(self.created_handled) < CATCH_UP_MAX:
            self.created_handled.update(report.created)

    def forget_sessions(self) -> None:
        """The next process starts new sessions."""
        self.session_history.clear()
        self.handled.clear()

    def remember_session(self, shard: ShardHealth) -> None:
        if shard.session_id is not None and shard.seq is not None and shard.resume_url:
            session = Session(shard.session_id, shard.seq, shard.resume_url)
            history = self.session_history.setdefault(shard.shard_id, deque())
            now = time.monotonic()
            history.append((now, session))
            while history and now - history[0][0] > SESSION_HISTORY:
                history.popleft()
        if shard.guilds:
            self.guild_counts[shard.shard_id] = shard.guilds

    def sessions_to_resume(
        self, margin: float, shard_ids: Collection[int] | None = None
    ) -> dict[int, Session]:
        """Each shard's session, from where the next process resumes it.

        From the handled-event ledger when it has the session: Discord replays every dispatch
        past the floor, and the next process skips those handled past it, so bot code sees each
        dispatch once. Otherwise (nothing handled reported yet) from the seq received
        ``margin`` seconds ago: received is not handled, and resuming a little earlier replays
        what may not have been (at least once, never lost).
        """
        cutoff = time.monotonic() - margin
        sessions = {}
        for shard_id, history in self.session_history.items():
            if not history or (shard_ids is not None and shard_id not in shard_ids):
                continue
            latest = history[-1][1]
            handled = self.handled.get(shard_id)
            if handled is not None and handled.session_id == latest.session_id and handled.floor:
                sessions[shard_id] = Session(
                    latest.session_id,
                    handled.floor,
                    latest.resume_url,
                    handled=frozenset(handled.above),
                    received=max(latest.seq, handled.floor),
                )
                continue
            latest_id = latest.session_id
            same_session = [
                (at, session) for at, session in history if session.session_id == latest_id
            ]
            older = [session for at, session in same_session if at <= cutoff]
            sessions[shard_id] = older[-1] if older else same_session[0][1]
        return sessions

    def hand_shard_to(self, other: WorkerHandle, shard_id: int) -> None:
        """The shard moved to ``other``: its health, sessions and handled record go with it."""
        self.shard_ids.remove(shard_id)
        other.shard_ids.append(shard_id)
        other.shard_ids.sort()
        other.shards[shard_id] = self.shards.pop(shard_id)
        history = self.session_history.pop(shard_id, None)
        if history is not None:
            other.session_history[shard_id] = history
        handled = self.handled.pop(shard_id, None)
        if handled is not None:
            other.handled[shard_id] = handled
        guilds = self.guild_counts.pop(shard_id, None)
        if guilds is not None:
            other.guild_counts[shard_id] = guilds
        self.shard_rates.pop(shard_id, None)  # measured anew where it runs now
        self._last_seqs.pop(shard_id, None)

    def set_shard_state(self, shard_id: int, health: ShardHealth) -> None:
        if shard_id in self.shards:
            self.shards[shard_id] = health
        if self.state == "starting" and self.all_shards_ready():
            self.transition("ready")
        elif self.state == "ready" and not self.all_shards_ready():
            self.transition("starting")

    def all_shards_ready(self) -> bool:
        return all(shard.state == "ready" for shard in self.shards.values())

    def forget_process(self) -> None:
        """The process is gone: its health and shards are no longer known."""
        super().forget_process()
        self._last_events = None
        self.events_rate = 0.0
        self.shard_rates.clear()
        self._last_seqs.clear()
        self._last_event_types.clear()
        for shard_id in self.shard_ids:
            self.shards[shard_id] = ShardHealth(shard_id=shard_id, state="down")

    def worker_status(self, busy_after: float) -> WorkerStatus:
        """``busy_after``: how long its loop must not have turned for it to show busy."""
        health = self.health
        busy_for = self.busy_for(busy_after)
        if busy_for is not None:
            lag_ms: float | None = round(busy_for * 1000, 1)
        else:
            lag_ms = health.loop_lag_ms if health else None
        return WorkerStatus(
            id=self.id,
            pid=self.pid,
            state="busy" if busy_for is not None else self.state,
            shards=list(self.shard_ids),
            restarts=self.restarts,
            rss_bytes=health.rss_bytes if health else 0,
            loop_lag_ms=lag_ms,
            heartbeat_p99_ms=self.heartbeat_p99_ms(),
            last_exit=self.last_exit,
        )

    def shard_statuses(self) -> list[ShardStatus]:
        return [
            ShardStatus(
                id=shard.shard_id,
                worker=self.id,
                state=shard.state,
                guilds=shard.guilds,
                guilds_loaded=shard.guilds_loaded,
                latency_ms=shard.latency_ms,
            )
            for shard in self.shards.values()
        ]


class StandbyHandle(WorkerHandle):
    """A process started beside a worker's running one, to take its place (a rolling restart).

    It loads the bot code and the worker's shared state while the running process serves, and
    says STANDBY; it takes the shards only once the running process has handed their sessions
    over. It is not restarted: a standby that exits first stops the roll, and the worker keeps
    its running process.
    """

    kind = "standby"
    temporary = True

    def __init__(self, worker: WorkerHandle) -> None:
        super().__init__(
            worker.id, worker.shard_ids, worker.shard_count, worker.first_backoff, worker.generation
        )
        self.worker = worker
        self.standing_by = False  # said STANDBY: loaded, waiting for the shards

    def __str__(self) -> str:
        return f"worker {self.id}'s standby"
