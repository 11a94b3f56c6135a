"""The supervisor: one loop that keeps every child process alive; the master's signal handler.

Each pass of the loop (at least once per heartbeat interval, at once when something happens)
reaps workers that exited, pings the living, kills the hung, and starts the restarts that are
due. A process exit is seen the moment it happens through the process sentinel; a hang is seen
after ``heartbeat_misses`` unanswered pings. Restarts back off exponentially, and a worker that
exits more than ``crash_loop_restarts`` times within ``crash_loop_window`` is left failed while
the others keep serving. Children are the shard workers and the compute workers; they differ
in what they are spawned with and whom their messages go to (the router, the compute pool);
the REST gate is a child too, on a listening socket the master keeps, so that its port (the
workers' REST base) outlives its restarts.

    spawning --hello--> starting --all shards ready--> ready
        \\                   \\                         /
         `---- exit / hang ---`-----> backoff -------'--> (restart) spawning
                                          `--crash loop--> failed
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import socket
import sqlite3
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from child.runtime import EXIT_UNUSABLE, ChildStart, run_child
from gate.spec import RestGateSpec
from protocol import (
    PROTOCOL_VERSION,
    AnyMessage,
    Connection,
    ConnectionClosed,
    Frame,
    RoutingTable,
    open_connection,
    socket_from_pipe,
)
from protocol.connection import Receiver
from protocol.messages import (
    ComputeRequest,
    Heartbeat,
    HeartbeatAck,
    Hello,
    IdentifyGrant,
    IdentifyRequest,
    IdentifySent,
    ReplyError,
    RestGateReport,
    ShardDisconnect,
    ShardHealth,
    ShardReady,
    ShardState,
    StateFetch,
    StateSync,
    StateUpdate,
)
from sharder import gateway_info
from sharder.compute_pool import ComputePool
from sharder.config import Config
from sharder.identify import IdentifyGate
from sharder.router import Router
from sharder.state_service import StateService
from sharder.status import SharderStatus
from sharder.store import StateStore, StoreError
from sharder.systemd import Notifier
from sharder.workers import ChildHandle, ComputeHandle, RestGateHandle, WorkerHandle
from worker.spec import ComputeSpec, WorkerSpec

log = logging.getLogger("sharder.supervisor")

# Workers must not inherit a running event loop (fork would): spawn starts a fresh interpreter.
SPAWN = multiprocessing.get_context("spawn")
STOP_POLL = 0.05
# A signal sent to a process group reaches the master twice at once; a second stop is a person
# pressing Ctrl-C again, later than this.
SIGNAL_DEBOUNCE = 0.5
# How often a child refreshes its liveness stamps, per heartbeat interval: a stopped process is
# seen within a quarter beat of the heartbeat_misses'.
LIVENESS_STAMPS_PER_BEAT = 4
POISON_WINDOW = 10.0  # a process dying this soon after a handover drops the sessions


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


class Supervisor:
    def __init__(
        self, config: Config, discord: Discord, worker_log_level: str | None = None
    ) -> None:
        self.config = config
        self.discord = discord
        self.worker_log_level = worker_log_level or config.log_level
        sharding = config.sharding
        self.table = RoutingTable.contiguous(sharding.shards, sharding.workers)
        backoff = config.supervisor.restart_backoff
        self.workers = {
            worker_id: WorkerHandle(worker_id, self.table.shards_of(worker_id), backoff)
            for worker_id in range(sharding.workers)
        }
        self.compute = {
            compute_id: ComputeHandle(compute_id, backoff)
            for compute_id in range(config.compute.workers or os.cpu_count() or 1)
        }
        self.rest_gate: RestGateHandle | None = None  # made with its socket, in run()
        self._rest_listener: socket.socket | None = None
        self.state: Literal["starting", "running", "stopping"] = "starting"
        self.started_at = time.monotonic()
        self.exit_code = 0
        self._wake = asyncio.Event()
        self._stop_requested = False
        self._force = False
        self._stop_signalled_at = 0.0
        self._next_heartbeat = 0.0
        self._heartbeat_nonce = 0
        self._exited: set[ChildHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.router: Router
        self.pool = ComputePool(self.compute, self.workers, config.compute.queue_size, self)
        self.gate: IdentifyGate | None = None  # made once Discord said its limits
        self.state_service: StateService | None = None  # made once the store is open
        # Called once per loop pass, e.g. to restart a supervised simulator.
        self.on_tick: Callable[[], None] = lambda: None
        self.notifier = Notifier()
        self._notified_ready = False
        self._notified_status = ""
        self._next_watchdog = 0.0
        # Start-up, for the status: spawn to every worker's hello, and to every shard ready.
        self.connected_after: float | None = None
        self.ready_after: float | None = None

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.router = Router(self.table, self.workers, self)
        try:
            max_concurrency, budget = await gateway_info.fetch(
                self.discord.api_url, self.discord.token, self.discord.session_period
            )
        except gateway_info.GatewayUnavailable as error:
            log.error("cannot start: %s", error)
            return 1
        self.gate = IdentifyGate(max_concurrency, self.discord.identify_window, budget)
        store = StateStore(Path(self.config.state.path))
        try:
            store.open()
        except (StoreError, sqlite3.Error) as error:
            log.error("cannot open the state store %s: %s", self.config.state.path, error)
            return 1
        self.state_service = StateService(store, self.table, self.workers)
        log.info(
            "identify gate: %d buckets, %.1f s window, %d of %d sessions left",
            max_concurrency,
            self.discord.identify_window,
            budget.remaining,
            budget.total,
        )
        if self.config.rest.gate:
            try:
                self._rest_listener = socket.create_server(("127.0.0.1", self.config.rest.port))
            except OSError as error:
                log.error("cannot listen for the REST gate: %s", error)
                return 1
            port = self._rest_listener.getsockname()[1]
            self.rest_gate = RestGateHandle(
                self.config.supervisor.restart_backoff,
                f"http://127.0.0.1:{port}",
                secrets.token_urlsafe(24),
            )
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            for child in self._children():
                self._spawn(child)
            while not self._stop_requested:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._until_next_duty()):
                        await self._wake.wait()
                self._wake.clear()
                self._tick()
            await self._shutdown()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            self._kill_all()
            if self._rest_listener is not None:
                self._rest_listener.close()
            if self.state_service is not None:
                await self.state_service.store.close()
        return self.exit_code

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self._exited:
            self._reap(child, now)
        self._exited.clear()
        if now >= self._next_heartbeat:
            self._heartbeat(now)
        for child in self._children():
            if (
                child.state == "backoff"
                and child.restart_at is not None
                and now >= child.restart_at
            ):
                self._spawn(child)
        if self.connected_after is None and all(h.serving for h in self.workers.values()):
            self.connected_after = now - self.started_at
        if self.state == "starting" and all(
            h.state in ("ready", "failed") for h in self.workers.values()
        ):
            self.state = "running"
            self.ready_after = now - self.started_at
            log.info("all shards ready after %.1f s", self.ready_after)
        if self.notifier.enabled:
            self._notify(now)
        self.on_tick()

    def _children(self) -> list[ChildHandle]:
        gate = [self.rest_gate] if self.rest_gate is not None else []
        return [*gate, *self.workers.values(), *self.compute.values()]

    def _until_next_duty(self) -> float:
        """How long the loop may sleep: until the next heartbeat, watchdog ping or restart."""
        wake_at = self._next_heartbeat
        if self.notifier.watchdog_interval is not None:
            wake_at = min(wake_at, self._next_watchdog)
        for child in self._children():
            if child.state == "backoff" and child.restart_at is not None:
                wake_at = min(wake_at, child.restart_at)
        return max(0.0, wake_at - time.monotonic())

    def _notify(self, now: float) -> None:
        """systemd: READY once every shard is, STATUS as it changes, WATCHDOG from this loop."""
        status = self.status()
        ready = status.ready_shards
        line = (
            f"{ready}/{status.shard_count} shards ready, "
            f"{sum(w.state == 'ready' for w in status.workers)}/{len(status.workers)} workers ready"
        )
        # A message that could not go out (systemd's queue full) is sent again next pass: a
        # lost READY would have systemd give up on the start.
        if not self._notified_ready and ready == status.shard_count:
            self._notified_ready = self.notifier.ready(line)
            if self._notified_ready:
                self._notified_status = line
        elif line != self._notified_status and self.notifier.status(line):
            self._notified_status = line
        interval = self.notifier.watchdog_interval
        if interval is not None and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + interval

    def wake(self) -> None:
        self._wake.set()

    # -- signals, stop and restart -------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        now = time.monotonic()
        if self._stop_requested and now - self._stop_signalled_at < SIGNAL_DEBOUNCE:
            return  # the same stop, delivered twice (to the process and to its group)
        if self._stop_requested:
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            self._force = True
            self.exit_code = 1
        else:
            log.info("%s: stopping gracefully", signal.Signals(signum).name)
            self._stop_requested = True
            self._stop_signalled_at = now
        self.wake()

    def request_stop(self) -> None:
        self._stop_requested = True
        self.wake()

    async def restart_worker(self, worker_id: int) -> str:
        handle = self.workers.get(worker_id)
        if handle is None:
            raise ValueError(f"no worker {worker_id}; workers are 0-{len(self.workers) - 1}")
        if self.state == "stopping":
            raise ValueError("the sharder is stopping")
        if handle.state in ("backoff", "failed", "stopped"):
            handle.exits.clear()
            handle.backoff = handle.first_backoff
            self._spawn(handle)
            return f"worker {worker_id} started"
        handle.restart_requested = True
        # The sessions go to the next process: the old one exits without ending them.
        self._ask_to_stop(
            handle, "restart requested", resumable=self.config.supervisor.resume_sessions
        )
        return f"worker {worker_id} restarting"

    def _ask_to_stop(self, handle: WorkerHandle, reason: str, resumable: bool) -> None:
        """SHARD_DISCONNECT for all its shards; SIGKILL if it has not exited by the deadline."""
        self._disconnect(handle, reason, resumable)
        process = handle.process
        if process is not None:
            self._later(self._kill_if_alive(process, self.config.supervisor.shutdown_timeout))

    @staticmethod
    def _disconnect(handle: ChildHandle, reason: str, resumable: bool) -> None:
        """Tell a worker to disconnect all its shards and exit (keeping the sessions if
        ``resumable``); a compute worker exits when its link closes."""
        if handle.connection is None or not handle.connection.is_open:
            return
        if isinstance(handle, ComputeHandle | RestGateHandle):
            handle.connection.close()
        elif isinstance(handle, WorkerHandle):
            message = ShardDisconnect(
                shard_ids=list(handle.shard_ids), reason=reason, resumable=resumable
            )
            handle.connection.send_batch_nowait([message])

    async def _kill_if_alive(
        self, process: multiprocessing.process.BaseProcess, after: float
    ) -> None:
        await asyncio.sleep(after)
        if process.is_alive():
            log.warning("process %s did not stop within %.0f s: killing it", process.pid, after)
            process.kill()

    async def _shutdown(self) -> None:
        self.state = "stopping"
        self.notifier.stopping("stopping: disconnecting the shards")
        for child in self._children():
            if child.process is not None:
                child.state = "stopping"
                self._disconnect(child, "shutdown", resumable=False)
        deadline = time.monotonic() + self.config.supervisor.shutdown_timeout
        while self._alive() and not self._force and time.monotonic() < deadline:
            # Exits and a second signal wake the loop; the poll also catches a missed sentinel.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_POLL):
                    await self._wake.wait()
            self._wake.clear()
        stragglers = self._alive()
        if stragglers:
            log.warning("killing %s: not stopped in time", ", ".join(map(str, stragglers)))
        self._kill_all()
        for child in self._children():
            child.state = "stopped"
            child.forget_process()
        log.info("stopped")

    def _alive(self) -> list[ChildHandle]:
        return [c for c in self._children() if c.process is not None and c.process.is_alive()]

    def _kill_all(self) -> None:
        for child in self._children():
            process = child.process
            if process is not None and process.is_alive():
                process.kill()
            if process is not None:
                process.join(timeout=5)
                self._stop_watching(process)

    # -- spawning and reaping ------------------------------------------------------------------

    def _spawn(self, handle: ChildHandle) -> None:
        if handle.liveness is not None:
            handle.liveness.reset()
        parent_end, child_end = SPAWN.Pipe(duplex=True)
        name = f"sharder-{handle.kind}-{handle.id}"
        arguments: tuple[object, ...]
        if isinstance(handle, WorkerHandle):
            start = self._start("worker.shard_worker:serve", f"worker-{handle.id}")
            arguments = (start, self._worker_spec(handle), child_end)
        elif isinstance(handle, RestGateHandle):
            start = self._start("gate.rest_gate:serve", "rest-gate")
            arguments = (start, self._rest_gate_spec(handle), self._rest_listener, child_end)
        else:
            assert isinstance(handle, ComputeHandle)
            start = self._start("worker.compute_worker:serve", f"compute-{handle.id}")
            arguments = (start, self._compute_spec(handle), child_end)
        process = SPAWN.Process(target=run_child, args=arguments, name=name)
        process.start()
        if isinstance(handle, ComputeHandle) and process.pid is not None:  # None only unstarted
            lower_priority(process.pid, self.config.compute.niceness)
        child_end.close()
        handle.process = process
        handle.kill_reason = None
        handle.state = "spawning"
        handle.restart_at = None
        handle.spawned_at = time.monotonic()
        asyncio.get_running_loop().add_reader(process.sentinel, self._on_exit, handle, process)
        log.info("%s spawned (pid %d)", handle, process.pid)
        self._later(self._connect(handle, process, parent_end))

    def _start(self, entry: str, label: str) -> ChildStart:
        return ChildStart(entry, label, os.getpid(), self.worker_log_level)

    def _worker_spec(self, handle: WorkerHandle) -> WorkerSpec:
        sessions = (
            handle.sessions_to_resume(self.config.supervisor.replay_margin)
            if self.config.supervisor.resume_sessions
            else {}
        )
        handle.spawned_with_sessions = bool(sessions)
        return WorkerSpec(
            worker_id=handle.id,
            shard_ids=tuple(handle.shard_ids),
            shard_count=self.config.sharding.shards,
            token=self.discord.token,
            api_url=(
                f"{self.rest_gate.url}/{self.rest_gate.secret}/w/{handle.id}/api/v10"
                if self.rest_gate is not None
                else self.discord.api_url
            ),
            entry_point=self.config.bot.entry_point,
            intents=self.discord.intents,
            request_timeout=self.config.supervisor.request_timeout,
            compute_timeout=self.config.compute.task_timeout,
            user_cache=self.config.state.user_cache,
            liveness=handle.liveness,
            liveness_period=self.config.supervisor.heartbeat_interval / LIVENESS_STAMPS_PER_BEAT,
            sessions=sessions,
            guild_counts=dict(handle.guild_counts),
        )

    def _rest_gate_spec(self, handle: RestGateHandle) -> RestGateSpec:
        rest = self.config.rest
        return RestGateSpec(
            api_url=self.discord.api_url,
            secret=handle.secret,
            workers=len(self.workers),
            global_limit=rest.global_limit,
            max_wait=rest.max_wait,
            invalid_limit=rest.invalid_limit,
            slowdown_at=rest.slowdown_at,
            refuse_at=rest.refuse_at,
        )

    def _compute_spec(self, handle: ComputeHandle) -> ComputeSpec:
        compute = self.config.compute
        return ComputeSpec(
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

    async def _connect(
        self,
        handle: ChildHandle,
        process: multiprocessing.process.BaseProcess,
        pipe: multiprocessing.connection.Connection,
    ) -> None:
        hello = Hello(version=PROTOCOL_VERSION, role="master", worker_id=handle.id, pid=os.getpid())
        try:
            connection = await open_connection(
                socket_from_pipe(pipe),
                hello,
                hello_timeout=self.config.supervisor.worker_start_timeout,
            )
        except Exception as error:
            if handle.process is process and process.is_alive():
                log.error("%s did not say hello: %s; killing it", handle, error)
                self._kill(handle, f"no hello: {error}")
            return
        if handle.process is not process:
            connection.close()
            return
        handle.connection = connection
        if isinstance(handle, WorkerHandle):
            handle.state = "starting"
            connection.deliver_to(self.router.receiver(handle))
        elif isinstance(handle, ComputeHandle):
            handle.state = "ready"
            connection.deliver_to(self.pool.receiver(handle))
            self.pool.worker_up(handle)
        elif isinstance(handle, RestGateHandle):
            handle.state = "ready"
            connection.deliver_to(self._rest_gate_receiver(handle))
        await connection.wait_closed()
        if handle.process is not process or handle.stopping:
            return
        if isinstance(connection.error, ConnectionClosed):
            # The worker closed its end: it is on its way out. Give it time to go on its own.
            self._later(self._kill_if_alive(process, self.config.supervisor.shutdown_timeout))
            return
        # The worker sent what is not a frame: it cannot be trusted to carry on.
        log.error("%s link ended: %s; replacing it", handle, connection.error)
        self._kill(handle, f"link ended: {connection.error}")

    def _rest_gate_receiver(self, handle: RestGateHandle) -> Receiver:
        def receive(_: Connection, messages: list[AnyMessage], frames: list[Frame]) -> None:
            for message in messages:
                if isinstance(message, RestGateReport):
                    handle.report = message
                elif isinstance(message, HeartbeatAck):
                    self.on_heartbeat_ack(handle, message)

        return receive

    def _kill(self, handle: ChildHandle, reason: str) -> None:
        """Kill the child's process for ``reason``, which its exit will be reported with."""
        handle.kill_reason = reason
        if handle.process is not None:
            handle.process.kill()

    def replace(self, handle: ChildHandle, reason: str) -> None:
        """Kill the child's process and start the next at once: not a crash, no backoff."""
        handle.restart_requested = True
        handle.state = "stopping"
        self._kill(handle, reason)

    def _on_exit(self, handle: ChildHandle, process: multiprocessing.process.BaseProcess) -> None:
        self._stop_watching(process)
        self._exited.add(handle)
        self.wake()

    def _stop_watching(self, process: multiprocessing.process.BaseProcess) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(process.sentinel)

    def _reap(self, handle: ChildHandle, now: float) -> None:
        process = handle.process
        if process is None:
            return
        process.join(timeout=1)
        how = describe_exit(process.exitcode)
        handle.last_exit = f"{handle.kill_reason} ({how})" if handle.kill_reason else how
        if handle.connection is not None:
            handle.connection.close()
        # Killed by its own task's CPU limit: the task's doing, not a crash of the worker.
        over_limit = (
            isinstance(handle, ComputeHandle)
            and handle.task is not None
            and process.exitcode == -signal.SIGXCPU
        )
        handle.forget_process()
        if isinstance(handle, WorkerHandle):
            self.router.worker_down(handle.id)
            self.pool.origin_down(handle.id)
            for shard_id in handle.shard_ids:
                if self.gate is not None:
                    self.gate.forget(shard_id)
        elif isinstance(handle, ComputeHandle):
            self.pool.worker_down(handle, over_limit)
        if over_limit:
            handle.restart_requested = True  # replaced at once, not counted toward a crash loop
        if process.exitcode == EXIT_UNUSABLE and not self._stop_requested:
            log.error("%s cannot run with what is installed (its log says why); stopping", handle)
            self.exit_code = 1
            self.request_stop()
        if self.state == "stopping" or self._stop_requested:
            handle.state = "stopped"
            return
        if handle.restart_requested:
            handle.restart_requested = False
            handle.restarts += 1
            log.info("%s stopped for its restart (%s)", handle, how)
            self._spawn(handle)
            return
        lived = now - handle.spawned_at
        if (
            isinstance(handle, WorkerHandle)
            and handle.spawned_with_sessions
            and lived < POISON_WINDOW
        ):
            # Died right after taking the sessions over: what Discord replayed may be what
            # killed it, and would again. The next process starts new sessions.
            log.warning(
                "worker %d died %.1f s after resuming; its next start identifies", handle.id, lived
            )
            handle.session_history.clear()
        if lived > self.config.supervisor.restart_backoff_max:
            handle.backoff = handle.first_backoff  # it ran a good while: not a loop
        recent = handle.count_exit(now, self.config.supervisor.crash_loop_window)
        if recent > self.config.supervisor.crash_loop_restarts:
            handle.state = "failed"
            log.error(
                "%s failed: %d exits within %.0f s (last: %s); it stays down",
                handle,
                recent,
                self.config.supervisor.crash_loop_window,
                handle.last_exit,
            )
            if isinstance(handle, ComputeHandle):
                self.pool.worker_down(handle)  # the queue may now have nobody to run it
            return
        handle.state = "backoff"
        handle.restarts += 1
        handle.restart_at = now + handle.backoff
        log.warning(
            "%s exited (%s); restart %d in %.1f s",
            handle,
            handle.last_exit,
            handle.restarts,
            handle.backoff,
        )
        handle.backoff = min(handle.backoff * 2, self.config.supervisor.restart_backoff_max)

    # -- heartbeats ----------------------------------------------------------------------------

    def _heartbeat(self, now: float) -> None:
        interval = self.config.supervisor.heartbeat_interval
        self._next_heartbeat = now + interval
        for handle in self._children():
            connection = handle.connection
            if (
                connection is None
                or not connection.is_open
                or handle.state == "stopping"
                or not handle.watched
            ):
                handle.unacked_heartbeats = 0
                continue
            hung = self._hung(handle, now)
            if hung is not None:
                log.error("%s is %s; killing it", handle, hung)
                self._kill(handle, hung)
                continue
            self._heartbeat_nonce += 1
            handle.record_ping(self._heartbeat_nonce, now)
            connection.send_batch_nowait(
                [Heartbeat(nonce=self._heartbeat_nonce, deadline=now + interval, sent_at=now)]
            )

    def _hung(self, handle: ChildHandle, now: float) -> str | None:
        """Why the child counts as hung, if it does; notes a busy loop on the way.

        A child with shared liveness stamps is hung when its process has been silent for
        ``heartbeat_misses`` beats (stopped, or an interpreter that never lets go of the GIL),
        or its loop has not turned for ``loop_stall_timeout``; a loop that has not turned for
        less is busy, not hung (a large guild load, a slow handler). Other children are hung
        when they leave ``heartbeat_misses`` pings unanswered.
        """
        supervisor = self.config.supervisor
        misses = supervisor.heartbeat_misses
        liveness = handle.liveness
        if liveness is None:
            if handle.unacked_heartbeats >= misses:
                return f"hung: {handle.unacked_heartbeats} heartbeats unanswered"
            return None
        silent = liveness.silent_for(now)
        if silent >= misses * supervisor.heartbeat_interval:
            return f"hung: {misses} heartbeats unanswered (silent for {silent:.1f} s)"
        stalled = liveness.stalled_for(now)
        if stalled >= supervisor.loop_stall_timeout:
            return f"hung: its event loop has not turned for {stalled:.0f} s"
        busy = handle.busy_for(supervisor.heartbeat_interval) is not None
        if busy != handle.seen_busy:
            handle.seen_busy = busy
            if busy:
                log.info("%s is busy: its event loop has not turned for %.1f s", handle, stalled)
            else:
                log.info("%s is no longer busy", handle)
        return None

    # -- what workers report (the router's WorkerReports) --------------------------------------

    def on_heartbeat_ack(self, handle: ChildHandle, ack: HeartbeatAck) -> None:
        was = handle.state
        handle.record_ack(ack)
        if handle.state != was:
            self.wake()

    def on_shard_ready(self, handle: WorkerHandle, ready: ShardReady) -> None:
        log.info(
            "shard %d ready on worker %d (%d guilds)",
            ready.shard_id,
            handle.id,
            len(ready.guild_ids),
        )
        health = ShardHealth(
            shard_id=ready.shard_id,
            state="ready",
            guilds=len(ready.guild_ids),
            session_id=ready.session_id,
            seq=ready.seq,
            resume_url=ready.resume_url,
        )
        handle.set_shard_state(ready.shard_id, health)
        handle.remember_session(health)
        self.wake()

    def on_shard_disconnect(self, handle: WorkerHandle, disconnect: ShardDisconnect) -> None:
        for shard_id in disconnect.shard_ids:
            log.warning("shard %d on worker %d: %s", shard_id, handle.id, disconnect.reason)
            previous = handle.shards.get(shard_id)
            guilds = previous.guilds if previous is not None else 0
            state: ShardState = "resuming" if disconnect.resumable else "down"
            health = ShardHealth(shard_id=shard_id, state=state, guilds=guilds)
            handle.set_shard_state(shard_id, health)
        self.wake()

    def on_identify_request(self, handle: WorkerHandle, request: IdentifyRequest) -> None:
        connection = handle.connection
        shard_id = request.shard_id
        if connection is None or self.gate is None:
            return  # gone already, or not started: nobody to answer
        if shard_id not in handle.shard_ids:
            reason = f"shard {shard_id} is not worker {handle.id}'s (it has {handle.shard_ids})"
            log.warning("refused an IDENTIFY: %s", reason)
            connection.send_soon(ReplyError(nonce=request.nonce, code="invalid", message=reason))
            return

        def grant(expires_at: float) -> None:
            if connection.is_open:
                connection.send_soon(
                    IdentifyGrant(nonce=request.nonce, shard_id=shard_id, expires_at=expires_at)
                )

        self.gate.request(shard_id, grant)

    def on_identify_sent(self, handle: WorkerHandle, sent: IdentifySent) -> None:
        if self.gate is not None and sent.shard_id in handle.shard_ids:
            # Never later than now: a time to come would hold the bucket back for nothing.
            self.gate.sent(sent.shard_id, min(sent.sent_at, time.monotonic()))

    def on_state_update(self, handle: WorkerHandle, update: StateUpdate) -> None:
        if self.state_service is not None:
            self.state_service.on_update(handle, update)

    def on_state_sync(self, handle: WorkerHandle, request: StateSync) -> None:
        if self.state_service is not None:
            self.state_service.on_sync(handle, request)

    def on_state_fetch(self, handle: WorkerHandle, request: StateFetch) -> None:
        if self.state_service is not None:
            self.state_service.on_fetch(handle, request)

    def on_compute_request(
        self, handle: WorkerHandle, request: ComputeRequest, frame: Frame
    ) -> None:
        self.pool.submit(handle, request, frame)

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> SharderStatus:
        busy_after = self.config.supervisor.heartbeat_interval
        workers = [handle.worker_status(busy_after) for handle in self.workers.values()]
        shards = sorted(
            (shard for handle in self.workers.values() for shard in handle.shard_statuses()),
            key=lambda shard: shard.id,
        )
        if self.gate is not None:
            for shard in shards:
                shard.identify_queue = self.gate.position(shard.id)
        return SharderStatus(
            pid=os.getpid(),
            uptime_s=round(time.monotonic() - self.started_at, 3),
            state=self.state,
            shard_count=self.config.sharding.shards,
            api_url=self.discord.api_url,
            simulated=self.discord.simulated,
            events_per_s=round(sum(handle.events_rate for handle in self.workers.values()), 1),
            workers_connected_s=self.connected_after,
            shards_ready_s=self.ready_after,
            workers=workers,
            shards=shards,
            compute=[handle.status() for handle in self.compute.values()],
            compute_pool=self.pool.status(),
            rest_gate=self.rest_gate.status() if self.rest_gate is not None else None,
        )

    def _later(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


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
