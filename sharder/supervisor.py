"""The supervisor: one loop that keeps every child process alive; the master's signal handler.

Each pass of the loop (at least once per heartbeat interval, at once when something happens)
reaps the children that exited, pings the living, kills the hung, starts the restarts that are
due, and reports to systemd. A process exit is seen the moment it happens through the process
sentinel; a hang after ``heartbeat_misses`` unanswered pings or a loop stalled for
``loop_stall_timeout``. Restarts back off exponentially, and a child that exits more than
``crash_loop_restarts`` times within ``crash_loop_window`` is left failed while the others keep
serving. Every child is handled the same way (``children``); what differs by kind (shard
worker, compute worker, REST gate) is in its ``ChildKind``, and a child's state moves only along
the edges of ``lifecycle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from protocol import RoutingTable
from sharder import gateway_info
from sharder.children import Children
from sharder.compute_pool import ComputePool
from sharder.config import Config
from sharder.identify import IdentifyGate
from sharder.kinds import ComputeWorkers, Discord, RestGateChild
from sharder.lifecycle import ChildHandle
from sharder.moves import ShardMove
from sharder.rebalance import Rebalancer
from sharder.resharding import Reshard
from sharder.rolling import RollingRestart
from sharder.shard_workers import ShardWorkers, worker_statuses
from sharder.state_service import StateService
from sharder.status import SharderStatus
from sharder.store import StateStore, StoreError
from sharder.systemd import Notifier, ServiceReporter
from sharder.workers import ComputeHandle, RestGateHandle, WorkerHandle

__all__ = ["Discord", "Supervisor"]

log = logging.getLogger("sharder.supervisor")

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
            worker_id: WorkerHandle(
                worker_id, self.table.shards_of(worker_id), sharding.shards, backoff
            )
            for worker_id in range(sharding.workers)
        }
        self.compute = {
            compute_id: ComputeHandle(compute_id, backoff)
            for compute_id in range(config.compute.workers or os.cpu_count() or 1)
        }
        self.children = Children(config.supervisor, self.wake, self._stopping, self._on_unusable)
        self.pool = ComputePool(
            self.compute, self.workers, config.compute.queue_size, self.children
        )
        # Made at start-up, once Discord said its limits and the store is open.
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
        # Called once per loop pass, e.g. to restart a supervised simulator.
        self.on_tick: Callable[[], None] = lambda: None
        self.service = ServiceReporter(Notifier())
        # Start-up, for the status: spawn to every worker's hello, and to every shard ready.
        self.connected_after: float | None = None
        self.ready_after: float | None = None
        self.metrics_url: str | None = None  # the HTTP listener's, once it listens
        # The workers' generation that serves: a reshard's cutover moves it on.
        self.generation = 0
        self.roll: RollingRestart | None = None  # the last rolling restart
        self.move: ShardMove | None = None  # the last shard move
        self.reshard: Reshard | None = None  # the last live reshard
        # Why the bot should reshard on its own (a 4011, the recommendation), until it begins.
        self._reshard_wanted: str | None = None
        self._resharding_soon: asyncio.Task[None] | None = None
        self.rebalancer = Rebalancer(
            sharding.rebalance, sharding.rebalance_threshold, sharding.rebalance_after
        )

    # -- start-up --------------------------------------------------------------------------------

    async def _start_up(self) -> None:
        """Discord's limits, the state store and the REST gate's socket; then the children."""
        try:
            facts = await self._gateway_facts()
        except gateway_info.GatewayUnavailable as error:
            raise CannotStart(f"cannot start: {error}") from None
        max_concurrency, budget = facts.max_concurrency, facts.budget
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
        if self.config.rest.gate:
            self.children.adopt(self._rest_gate_child())
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
            on_heartbeat_ack=self.children.on_heartbeat_ack,
            wake=self.wake,
            sharding_required=self._sharding_required,
        )
        self.children.adopt(self.shard_workers)
        compute = list(self.compute.values())
        self.children.adopt(
            ComputeWorkers(compute, self.config, self.log_level, self.discord, self.pool)
        )

    async def _gateway_facts(self) -> gateway_info.GatewayFacts:
        return await gateway_info.fetch(
            self.discord.api_url, self.discord.token, self.discord.session_period
        )

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
            lanes=len(self.workers),
        )
        return RestGateChild(
            self.rest_gate,
            self.config,
            self.log_level,
            self.discord,
            listener,
            len(self.workers),
            self.children.on_heartbeat_ack,
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
        loop.add_signal_handler(signal.SIGHUP, self._on_reload)
        watching = (
            loop.create_task(self._watch_recommendation())
            if self.config.sharding.reshard_at
            else None
        )
        try:
            for child in self.children:
                self.children.spawn(child)
            while not self._stop_requested:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._until_next_duty()):
                        await self._wake.wait()
                self._wake.clear()
                self._tick()
            await self._shutdown()
        finally:
            if watching is not None:
                watching.cancel()
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            self.children.kill_all()
            await self._close()
        return self.exit_code

    def _tick(self) -> None:
        now = time.monotonic()
        self.children.reap(now)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.config.supervisor.heartbeat_interval
            self.children.heartbeat(now)
        self.children.restart_due(now)
        if self.roll is not None:
            self.roll.advance()
        if self.move is not None:
            self.move.advance()
        if self.reshard is not None:
            self.reshard.advance()
        self._rebalance(now)
        self._reshard_if_wanted()
        workers = self.current_workers()
        if self.connected_after is None and all(handle.serving for handle in workers):
            self.connected_after = now - self.started_at
        if self.state == "starting" and all(h.state in ("ready", "failed") for h in workers):
            self.state = "running"
            self.ready_after = now - self.started_at
            log.info("all shards ready after %.1f s", self.ready_after)
        if self.service.notifier.enabled:
            self.service.report(self.status(), now)
        self.on_tick()

    def _rebalance(self, now: float) -> None:
        """Start the move the rebalancer proposes, if no change is under way."""
        if self.shard_workers is None or self._stop_requested or self.state == "stopping":
            return
        if any(change is not None and change.active for change in self._changes()):
            return
        proposal = self.rebalancer.propose(self.current_workers(), now)
        if proposal is not None:
            self.move = ShardMove(
                proposal.shard_id,
                proposal.source,
                proposal.target,
                self.children,
                self.shard_workers,
                self.config.supervisor.change_step_timeout,
                f"rebalance: {proposal.why}",
            )

    def _until_next_duty(self) -> float:
        """How long the loop may sleep: until the next heartbeat, watchdog ping or restart."""
        wake_at = self._next_heartbeat
        watchdog = self.service.next_watchdog()
        if watchdog is not None:
            wake_at = min(wake_at, watchdog)
        restart_at = self.children.next_restart_at()
        if restart_at is not None:
            wake_at = min(wake_at, restart_at)
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

    def _on_reload(self) -> None:
        """SIGHUP (systemd's ExecReload): a rolling restart, with the bot code imported anew."""
        try:
            log.info("SIGHUP: %s", self.rolling_restart())
        except ValueError as error:
            log.warning("SIGHUP: no rolling restart: %s", error)

    def request_stop(self) -> None:
        self._stop_requested = True
        self.wake()

    def _stopping(self) -> bool:
        return self._stop_requested or self.state == "stopping"

    def _on_unusable(self, handle: ChildHandle) -> None:
        self.exit_code = 1
        self.request_stop()

    async def restart_worker(self, worker_id: int) -> str:
        handle = self._current_worker(worker_id)
        self._check_can_restart()
        if handle.state in ("backoff", "failed", "stopped"):
            handle.reset_backoff()
            self.children.spawn(handle)
            return f"worker {worker_id} started"
        # The sessions go to the next process: the old one exits without ending them.
        resumable = self.config.supervisor.resume_sessions
        self.children.restart(handle, "restart requested", resumable)
        return f"worker {worker_id} restarting"

    def rolling_restart(self) -> str:
        """Replace every worker in turn (``rolling``); returns at once, the status follows it."""
        self._check_can_restart()
        assert self.shard_workers is not None
        supervisor = self.config.supervisor
        self.roll = RollingRestart(
            self.current_workers(),
            self.children,
            self.shard_workers,
            supervisor.change_step_timeout,
            supervisor.resume_sessions,
        )
        self.wake()
        return f"rolling restart of {self.roll.total} workers started"

    def move_shard(self, shard_id: int, worker_id: int) -> str:
        """Move a shard to another worker (``moves``); returns at once, the status follows it."""
        self._check_can_restart()
        assert self.shard_workers is not None
        if not 0 <= shard_id < self.table.shard_count:
            raise ValueError(f"no shard {shard_id}; shards are 0-{self.table.shard_count - 1}")
        target = self._current_worker(worker_id)
        source = self.workers[self.table.owner_of_shard(shard_id)]
        if source is target:
            raise ValueError(f"shard {shard_id} is on worker {worker_id} already")
        if target.state != "ready":
            raise ValueError(f"worker {worker_id} is {target.state}; a shard moves to a ready one")
        if source.process is not None and source.state != "ready":
            raise ValueError(
                f"worker {source.id} is {source.state}; wait until it is ready to move its shards"
            )
        self.move = ShardMove(
            shard_id,
            source,
            target,
            self.children,
            self.shard_workers,
            self.config.supervisor.change_step_timeout,
        )
        self.wake()
        return f"moving shard {shard_id} from worker {source.id} to worker {worker_id}"

    async def reshard_to(self, shard_count: int | None, why: str = "requested") -> str:
        """Reshard live (``resharding``) to ``shard_count``, or to Discord's recommendation
        rounded up to a multiple of ``max_concurrency``; returns once it has begun."""
        self._check_can_restart()
        assert self.shard_workers is not None and self.state_service is not None
        identify = self.shard_workers.identify
        if shard_count is None:
            try:
                recommended = (await self._gateway_facts()).recommended_shards
            except gateway_info.GatewayUnavailable as error:
                raise ValueError(f"cannot ask Discord for its recommendation: {error}") from None
            self._check_can_restart()  # again: it may have changed while Discord answered
            buckets = identify.max_concurrency
            shard_count = max(1, -(-recommended // buckets) * buckets)
        workers = len(self.current_workers())
        if shard_count == self.table.shard_count:
            raise ValueError(f"the bot runs {shard_count} shards already")
        if shard_count < workers:
            raise ValueError(f"{shard_count} shards cannot serve {workers} workers")
        if identify.budget_spent or identify.remaining < shard_count:
            raise ValueError(
                f"{shard_count} new sessions, and {identify.remaining} are left of today's "
                f"session budget"
            )
        self.reshard = Reshard(
            shard_count,
            self.workers,
            self.table,
            self.children,
            self.shard_workers,
            self.state_service,
            self.config.supervisor.change_step_timeout,
            self._cut_over,
            why,
        )
        self.wake()
        return f"resharding from {self.reshard.from_shards} to {shard_count} shards"

    def _sharding_required(self, why: str) -> None:
        if self.config.sharding.reshard_on_4011:
            self._want_reshard(why)
        else:
            log.error("%s; reshard_on_4011 is off: `sharder reshard` when ready", why)

    def _want_reshard(self, why: str) -> None:
        self._reshard_wanted = why
        self.wake()

    def _reshard_if_wanted(self) -> None:
        """Begin the reshard that is wanted once no other change runs (next pass, if one does)."""
        why = self._reshard_wanted
        if why is None or self._resharding_soon is not None or self._stop_requested:
            return
        if any(change is not None and change.active for change in self._changes()):
            return
        self._reshard_wanted = None
        self._resharding_soon = asyncio.get_running_loop().create_task(self._auto_reshard(why))

    async def _auto_reshard(self, why: str) -> None:
        try:
            log.warning("%s: %s", why, await self.reshard_to(None, why))
        except ValueError as error:
            log.error("%s, and the bot cannot reshard: %s", why, error)
        finally:
            self._resharding_soon = None

    async def _watch_recommendation(self) -> None:
        """Every ``reshard_check_interval``, reshard if Discord recommends ``reshard_at`` times
        the shards that run or more."""
        sharding = self.config.sharding
        while True:
            await asyncio.sleep(sharding.reshard_check_interval)
            try:
                recommended = (await self._gateway_facts()).recommended_shards
            except gateway_info.GatewayUnavailable as error:
                log.warning("cannot read Discord's shard recommendation: %s", error)
                continue
            if recommended >= sharding.reshard_at * self.table.shard_count:
                self._want_reshard(
                    f"Discord recommends {recommended} shards for {self.table.shard_count}"
                )

    def _cut_over(self, generation: int) -> None:
        self.generation = generation

    def _changes(self) -> tuple[RollingRestart | ShardMove | Reshard | None, ...]:
        return (self.roll, self.move, self.reshard)

    def current_workers(self) -> list[WorkerHandle]:
        """The workers of the generation that serves (a reshard starts the next beside it)."""
        return [h for h in self.workers.values() if h.generation == self.generation]

    def _current_worker(self, worker_id: int) -> WorkerHandle:
        handle = self.workers.get(worker_id)
        if handle is None or handle.generation != self.generation:
            ids = ", ".join(str(h.id) for h in self.current_workers())
            raise ValueError(f"no worker {worker_id}; workers are {ids}")
        return handle

    def _check_can_restart(self) -> None:
        """A change (restart, rolling restart, move) may begin: the sharder runs, and no other
        change that moves sessions is under way."""
        if self.state == "stopping" or self._stop_requested:
            raise ValueError("the sharder is stopping")
        if self.shard_workers is None:
            raise ValueError("the sharder is starting")
        roll = self.roll
        if roll is not None and roll.active:
            where = f"worker {roll.step.worker.id}" if roll.step is not None else "starting"
            raise ValueError(f"a rolling restart is running ({where} of {roll.total})")
        move = self.move
        if move is not None and move.active:
            raise ValueError(f"shard {move.shard_id} is being moved ({move.phase})")
        reshard = self.reshard
        if reshard is not None and reshard.active:
            raise ValueError(f"a reshard is running ({reshard.status().line()})")

    async def _shutdown(self) -> None:
        self.state = "stopping"
        if self.roll is not None:
            self.roll.cancel("the sharder is stopping")
        if self.reshard is not None:
            self.reshard.cancel("the sharder is stopping")
        self.service.notifier.stopping("stopping: disconnecting the shards")
        self.children.ask_all_to_stop()
        deadline = time.monotonic() + self.config.supervisor.shutdown_timeout
        while self.children.alive() and not self._force and time.monotonic() < deadline:
            # Exits and a second signal wake the loop; the poll also catches a missed sentinel.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_POLL):
                    await self._wake.wait()
            self._wake.clear()
        stragglers = self.children.alive()
        if stragglers:
            log.warning("killing %s: not stopped in time", ", ".join(map(str, stragglers)))
        self.children.kill_all()
        for child in self.children:
            child.transition("stopped")
            child.forget_process()
        log.info("stopped")

    async def _close(self) -> None:
        if self._rest_listener is not None:
            self._rest_listener.close()
        if self.state_service is not None:
            await self.state_service.store.close()

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> SharderStatus:
        identify = self.shard_workers.identify if self.shard_workers is not None else None
        workers, shards = worker_statuses(
            self.current_workers(), self.config.supervisor.heartbeat_interval, identify
        )
        return SharderStatus(
            pid=os.getpid(),
            uptime_s=round(time.monotonic() - self.started_at, 3),
            state=self.state,
            shard_count=self.table.shard_count,
            api_url=self.discord.api_url,
            simulated=self.discord.simulated,
            metrics_url=self.metrics_url,
            events_per_s=round(sum(handle.events_rate for handle in self.current_workers()), 1),
            workers_connected_s=self.connected_after,
            shards_ready_s=self.ready_after,
            workers=workers,
            shards=shards,
            compute=[handle.status() for handle in self.compute.values()],
            compute_pool=self.pool.status(),
            rest_gate=self.rest_gate.status() if self.rest_gate is not None else None,
            roll=self.roll.status() if self.roll is not None else None,
            move=self.move.status() if self.move is not None else None,
            reshard=self.reshard.status() if self.reshard is not None else None,
        )
