"""The supervisor: one loop that keeps every child process alive; the master's signal handler.

Each pass of the loop (at least once per heartbeat interval, at once when something happens)
reaps the children that exited, pings the living, kills the hung, starts the restarts that are
due, and reports to systemd. A process exit is seen the moment it happens through the process
sentinel; a hang after ``heartbeat_misses`` unanswered pings or a loop stalled for
``loop_stall_timeout``. Restarts back off exponentially, and a child that exits more than
``crash_loop_restarts`` times within ``crash_loop_window`` is left failed while the others keep
serving. Every child is handled the same way; what differs by kind (shard worker, compute
worker, REST gate) is in its ``ChildKind``, and a child's state moves only along the edges of
``lifecycle``.
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
from pathlib import Path
from typing import Any, Literal

from child.runtime import EXIT_UNUSABLE, run_child
from protocol import (
    PROTOCOL_VERSION,
    ConnectionClosed,
    RoutingTable,
    open_connection,
    socket_from_pipe,
)
from protocol.messages import Heartbeat, HeartbeatAck, Hello
from sharder import gateway_info
from sharder.compute_pool import ComputePool
from sharder.config import Config
from sharder.identify import IdentifyGate
from sharder.kinds import ChildKind, ComputeWorkers, Discord, RestGateChild
from sharder.lifecycle import ChildHandle
from sharder.shard_workers import ShardWorkers, worker_statuses
from sharder.state_service import StateService
from sharder.status import SharderStatus
from sharder.store import StateStore, StoreError
from sharder.systemd import Notifier, ServiceReporter
from sharder.workers import ComputeHandle, RestGateHandle, WorkerHandle

__all__ = ["Discord", "Supervisor"]

log = logging.getLogger("sharder.supervisor")

# Children must not inherit a running event loop (fork would): spawn starts a fresh interpreter.
SPAWN = multiprocessing.get_context("spawn")
STOP_POLL = 0.05
# A signal sent to a process group reaches the master twice at once; a second stop is a person
# pressing Ctrl-C again, later than this.
SIGNAL_DEBOUNCE = 0.5


class CannotStart(Exception):
    """What the master needs before its first child is missing; the message says what."""


class Supervisor:
    def __init__(
        self, config: Config, discord: Discord, worker_log_level: str | None = None
    ) -> None:
        self.config = config
        self.discord = discord
        self.log_level = worker_log_level or config.log_level
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
        self.pool = ComputePool(self.compute, self.workers, config.compute.queue_size, self)
        # Made at start-up, once Discord said its limits and the store is open.
        self.kinds: dict[ChildHandle, ChildKind[Any]] = {}  # every child, and its kind
        self.shard_workers: ShardWorkers | None = None
        self.rest_gate: RestGateHandle | None = None
        self.state_service: StateService | None = None
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
        # Called once per loop pass, e.g. to restart a supervised simulator.
        self.on_tick: Callable[[], None] = lambda: None
        self.service = ServiceReporter(Notifier())
        # Start-up, for the status: spawn to every worker's hello, and to every shard ready.
        self.connected_after: float | None = None
        self.ready_after: float | None = None

    # -- start-up --------------------------------------------------------------------------------

    async def _start_up(self) -> None:
        """Discord's limits, the state store and the REST gate's socket; then the children."""
        try:
            max_concurrency, budget = await gateway_info.fetch(
                self.discord.api_url, self.discord.token, self.discord.session_period
            )
        except gateway_info.GatewayUnavailable as error:
            raise CannotStart(f"cannot start: {error}") from None
        identify = IdentifyGate(max_concurrency, self.discord.identify_window, budget)
        store = StateStore(Path(self.config.state.path))
        try:
            store.open()
        except (StoreError, sqlite3.Error) as error:
            path = self.config.state.path
            raise CannotStart(f"cannot open the state store {path}: {error}") from None
        self.state_service = StateService(store, self.table, self.workers)
        log.info(
            "identify gate: %d buckets, %.1f s window, %d of %d sessions left",
            max_concurrency,
            self.discord.identify_window,
            budget.remaining,
            budget.total,
        )
        kinds: list[ChildKind[Any]] = []
        if self.config.rest.gate:
            kinds.append(self._rest_gate_child())
        self.shard_workers = ShardWorkers(
            self.table,
            self.workers,
            self.config,
            self.log_level,
            discord=self.discord,
            identify=identify,
            state=self.state_service,
            pool=self.pool,
            rest_gate=self.rest_gate,
            on_heartbeat_ack=self.on_heartbeat_ack,
            wake=self.wake,
        )
        kinds.append(self.shard_workers)
        compute = list(self.compute.values())
        kinds.append(ComputeWorkers(compute, self.config, self.log_level, self.discord, self.pool))
        self.kinds = {handle: kind for kind in kinds for handle in kind.handles}

    def _rest_gate_child(self) -> RestGateChild:
        try:
            listener = socket.create_server(("127.0.0.1", self.config.rest.port))
        except OSError as error:
            raise CannotStart(f"cannot listen for the REST gate: {error}") from None
        self._rest_listener = listener
        # The secret is new each run and known only to the master, the gate and the workers.
        self.rest_gate = RestGateHandle(
            self.config.supervisor.restart_backoff,
            f"http://127.0.0.1:{listener.getsockname()[1]}",
            secrets.token_urlsafe(24),
        )
        return RestGateChild(
            self.rest_gate,
            self.config,
            self.log_level,
            self.discord,
            listener,
            len(self.workers),
            self.on_heartbeat_ack,
        )

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            await self._start_up()
        except CannotStart as error:
            log.error("%s", error)
            await self._close()
            return 1
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            for child in self.kinds:
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
            await self._close()
        return self.exit_code

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self._exited:
            self._reap(child, now)
        self._exited.clear()
        if now >= self._next_heartbeat:
            self._heartbeat(now)
        for child in self.kinds:
            if (
                child.state == "backoff"
                and child.restart_at is not None
                and now >= child.restart_at
            ):
                self._spawn(child)
        workers = self.workers.values()
        if self.connected_after is None and all(handle.serving for handle in workers):
            self.connected_after = now - self.started_at
        if self.state == "starting" and all(h.state in ("ready", "failed") for h in workers):
            self.state = "running"
            self.ready_after = now - self.started_at
            log.info("all shards ready after %.1f s", self.ready_after)
        if self.service.notifier.enabled:
            self.service.report(self.status(), now)
        self.on_tick()

    def _until_next_duty(self) -> float:
        """How long the loop may sleep: until the next heartbeat, watchdog ping or restart."""
        wake_at = self._next_heartbeat
        watchdog = self.service.next_watchdog()
        if watchdog is not None:
            wake_at = min(wake_at, watchdog)
        for child in self.kinds:
            if child.state == "backoff" and child.restart_at is not None:
                wake_at = min(wake_at, child.restart_at)
        return max(0.0, wake_at - time.monotonic())

    def wake(self) -> None:
        self._wake.set()

    # -- signals, stop and restart ---------------------------------------------------------------

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
        if handle not in self.kinds:
            raise ValueError("the sharder is starting")
        if handle.state in ("backoff", "failed", "stopped"):
            handle.reset_backoff()
            self._spawn(handle)
            return f"worker {worker_id} started"
        handle.restart_requested = True
        # The sessions go to the next process: the old one exits without ending them.
        self.kinds[handle].ask_to_stop(
            handle, "restart requested", self.config.supervisor.resume_sessions
        )
        process = handle.process
        if process is not None:
            self._later(self._kill_if_alive(process, self.config.supervisor.shutdown_timeout))
        return f"worker {worker_id} restarting"

    def replace(self, handle: ChildHandle, reason: str) -> None:
        """Kill the child's process and start the next at once: not a crash, no backoff."""
        handle.restart_requested = True
        handle.transition("stopping")
        self._kill(handle, reason)

    async def _kill_if_alive(
        self, process: multiprocessing.process.BaseProcess, after: float
    ) -> None:
        await asyncio.sleep(after)
        if process.is_alive():
            log.warning("process %s did not stop within %.0f s: killing it", process.pid, after)
            process.kill()

    async def _shutdown(self) -> None:
        self.state = "stopping"
        self.service.notifier.stopping("stopping: disconnecting the shards")
        for child, kind in self.kinds.items():
            if child.process is not None:
                child.transition("stopping")
                kind.ask_to_stop(child, "shutdown", resumable=False)
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
        for child in self.kinds:
            child.transition("stopped")
            child.forget_process()
        log.info("stopped")

    def _alive(self) -> list[ChildHandle]:
        return [c for c in self.kinds if c.process is not None and c.process.is_alive()]

    def _kill_all(self) -> None:
        for child in self.kinds:
            process = child.process
            if process is not None and process.is_alive():
                process.kill()
            if process is not None:
                process.join(timeout=5)
                self._stop_watching(process)

    async def _close(self) -> None:
        if self._rest_listener is not None:
            self._rest_listener.close()
        if self.state_service is not None:
            await self.state_service.store.close()

    # -- spawning and reaping --------------------------------------------------------------------

    def _spawn(self, handle: ChildHandle) -> None:
        kind = self.kinds[handle]
        parent_end, child_end = SPAWN.Pipe(duplex=True)
        arguments = (*kind.start_arguments(handle), child_end)
        name = f"sharder-{handle.kind}-{handle.id}"
        process = SPAWN.Process(target=run_child, args=arguments, name=name)
        process.start()
        child_end.close()
        if process.pid is not None:  # None only for a process never started
            kind.started(handle, process.pid)
        handle.spawned(process, time.monotonic())
        asyncio.get_running_loop().add_reader(process.sentinel, self._on_exit, handle, process)
        log.info("%s spawned (pid %d)", handle, process.pid)
        self._later(self._connect(handle, process, parent_end))

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
        self.kinds[handle].connected(handle, connection)
        await connection.wait_closed()
        if handle.process is not process or handle.state == "stopping":
            return
        if isinstance(connection.error, ConnectionClosed):
            # The child closed its end: it is on its way out. Give it time to go on its own.
            self._later(self._kill_if_alive(process, self.config.supervisor.shutdown_timeout))
            return
        # The child sent what is not a frame: it cannot be trusted to carry on.
        log.error("%s link ended: %s; replacing it", handle, connection.error)
        self._kill(handle, f"link ended: {connection.error}")

    def _kill(self, handle: ChildHandle, reason: str) -> None:
        """Kill the child's process for ``reason``, which its exit will be reported with."""
        handle.kill_reason = reason
        if handle.process is not None:
            handle.process.kill()

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
        handle.forget_process()
        kind = self.kinds[handle]
        if kind.exited(handle, process.exitcode):
            handle.restart_requested = True  # replaced at once, not counted toward a crash loop
        if process.exitcode == EXIT_UNUSABLE and not self._stop_requested:
            log.error("%s cannot run with what is installed (its log says why); stopping", handle)
            self.exit_code = 1
            self.request_stop()
        if self.state == "stopping" or self._stop_requested:
            handle.transition("stopped")
        elif handle.restart_requested:
            handle.restart_requested = False
            handle.restarts += 1
            log.info("%s stopped for its restart (%s)", handle, how)
            self._spawn(handle)
        else:
            self._after_crash(handle, kind, now)

    def _after_crash(self, handle: ChildHandle, kind: ChildKind[Any], now: float) -> None:
        """Back off before the next start, or give up on a crash loop."""
        supervisor = self.config.supervisor
        lived = now - handle.spawned_at
        kind.crashed(handle, lived)
        if lived > supervisor.restart_backoff_max:
            handle.backoff = handle.first_backoff  # it ran a good while: not a loop
        recent = handle.count_exit(now, supervisor.crash_loop_window)
        if recent > supervisor.crash_loop_restarts:
            handle.transition("failed")
            log.error(
                "%s failed: %d exits within %.0f s (last: %s); it stays down",
                handle,
                recent,
                supervisor.crash_loop_window,
                handle.last_exit,
            )
            kind.gave_up(handle)
            return
        handle.transition("backoff")
        handle.restarts += 1
        handle.restart_at = now + handle.backoff
        log.warning(
            "%s exited (%s); restart %d in %.1f s",
            handle,
            handle.last_exit,
            handle.restarts,
            handle.backoff,
        )
        handle.backoff = min(handle.backoff * 2, supervisor.restart_backoff_max)

    # -- heartbeats ------------------------------------------------------------------------------

    def _heartbeat(self, now: float) -> None:
        supervisor = self.config.supervisor
        interval = supervisor.heartbeat_interval
        self._next_heartbeat = now + interval
        for handle in self.kinds:
            connection = handle.connection
            if (
                connection is None
                or not connection.is_open
                or handle.state == "stopping"
                or not handle.watched
            ):
                handle.unacked_heartbeats = 0
                continue
            hung = handle.hung(
                now, interval, supervisor.heartbeat_misses, supervisor.loop_stall_timeout
            )
            if hung is not None:
                log.error("%s is %s; killing it", handle, hung)
                self._kill(handle, hung)
                continue
            self._heartbeat_nonce += 1
            handle.record_ping(self._heartbeat_nonce, now)
            connection.send_batch_nowait(
                [Heartbeat(nonce=self._heartbeat_nonce, deadline=now + interval, sent_at=now)]
            )

    def on_heartbeat_ack(self, handle: ChildHandle, ack: HeartbeatAck) -> None:
        was = handle.state
        handle.record_ack(ack)
        if handle.state != was:
            self.wake()

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> SharderStatus:
        identify = self.shard_workers.identify if self.shard_workers is not None else None
        workers, shards = worker_statuses(
            list(self.workers.values()), self.config.supervisor.heartbeat_interval, identify
        )
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
