"""The master's child processes: spawning, the hello, heartbeats, exits and restarts.

Every child goes through the same steps, whatever its kind; what differs by kind (what it is
started with, who reads its link, how it is asked to stop, whom its exit concerns) is asked of
its ``ChildKind``. A process exit is seen the moment it happens through the process sentinel and
handled at the supervisor's next pass (``reap``); a hang is seen by ``heartbeat``. Restarts back
off exponentially, and a child that exits more than ``crash_loop_restarts`` times within
``crash_loop_window`` is left failed while the others keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from child.runtime import EXIT_UNUSABLE, run_child
from protocol import PROTOCOL_VERSION, ConnectionClosed, open_connection, socket_from_pipe
from protocol.messages import Heartbeat, HeartbeatAck, Hello
from sharder.config import SupervisorSection
from sharder.incidents import INCIDENTS
from sharder.kinds import ChildKind
from sharder.lifecycle import ChildHandle

log = logging.getLogger("sharder.supervisor")

ORIGIN_LIMIT = 2**23  # nonce origins are below it (protocol.messages.Hello)
# Children must not inherit a running event loop (fork would): spawn starts a fresh interpreter.
SPAWN = multiprocessing.get_context("spawn")


class Children:
    def __init__(
        self,
        config: SupervisorSection,
        wake: Callable[[], None],
        stopping: Callable[[], bool],
        unusable: Callable[[ChildHandle], None],
    ) -> None:
        """``stopping``: whether the master is stopping (exits are then final); ``unusable``:
        called when a child cannot run with what is installed."""
        self.config = config
        self.wake = wake
        self.stopping = stopping
        self.unusable = unusable
        self.kinds: dict[ChildHandle, ChildKind[Any]] = {}  # every child, and its kind
        self._exited: set[ChildHandle] = set()
        self._heartbeat_nonce = 0
        # Each process's nonce origin (child.link): new for every spawn, restarts included, so
        # a late answer to a dead process's request never matches its successor's.
        self._origins = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()

    def adopt(self, kind: ChildKind[Any]) -> None:
        for handle in kind.handles:
            self.kinds[handle] = kind

    def add(self, handle: ChildHandle, kind: ChildKind[Any]) -> None:
        """One more child of ``kind``, beside its handles (a standby, a reshard's worker)."""
        self.kinds[handle] = kind

    def forget(self, handle: ChildHandle) -> None:
        """A child without a process that is not to run again (a retired worker)."""
        assert handle.process is None
        del self.kinds[handle]

    def __iter__(self) -> Iterator[ChildHandle]:
        return iter(self.kinds)

    def alive(self) -> list[ChildHandle]:
        return [c for c in self.kinds if c.process is not None and c.process.is_alive()]

    def next_restart_at(self) -> float | None:
        due = [c.restart_at for c in self.kinds if c.state == "backoff" and c.restart_at]
        return min(due, default=None)

    # -- starting --------------------------------------------------------------------------------

    def spawn(self, handle: ChildHandle) -> None:
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

    def take_over(self, handle: ChildHandle, standby: ChildHandle) -> None:
        """Run ``standby``'s process (started, connected, loaded) as ``handle``'s next one."""
        process = standby.process
        assert process is not None
        self._stop_watching(process)
        del self.kinds[standby]
        handle.take_process(standby)
        asyncio.get_running_loop().add_reader(process.sentinel, self._on_exit, handle, process)
        log.info("%s runs its standby's process (pid %d)", handle, process.pid)
        self.kinds[handle].took_over(handle)

    def next_origin(self) -> int:
        """The nonce origin of the next process: from 1 (0 is the master's) up, and round again
        after ``ORIGIN_LIMIT - 1`` processes, long after the first one's requests ended."""
        return next(self._origins) % (ORIGIN_LIMIT - 1) + 1

    def restart_due(self, now: float) -> None:
        for child in self.kinds:
            if (
                child.state == "backoff"
                and child.restart_at is not None
                and now >= child.restart_at
            ):
                self.spawn(child)

    async def _connect(
        self,
        handle: ChildHandle,
        process: multiprocessing.process.BaseProcess,
        pipe: multiprocessing.connection.Connection,
    ) -> None:
        hello = Hello(
            version=PROTOCOL_VERSION,
            role="master",
            worker_id=handle.id,
            pid=os.getpid(),
            nonce_origin=self.next_origin(),
        )
        try:
            connection = await open_connection(
                socket_from_pipe(pipe), hello, hello_timeout=self.config.worker_start_timeout
            )
        except Exception as error:
            if handle.process is process and process.is_alive():
                log.error("%s did not say hello: %s; killing it", handle, error)
                self.kill(handle, f"no hello: {error}")
            return
        if handle.process is not process or handle.stopping:
            # Replaced, or asked to stop before it said hello: the link's end stops it.
            connection.close()
            return
        handle.connection = connection
        self.kinds[handle].connected(handle, connection)
        await connection.wait_closed()
        # A standby's process may run for its worker by now.
        owner = next((child for child in self.kinds if child.process is process), None)
        if owner is None or owner.stopping:
            return
        handle = owner
        if isinstance(connection.error, ConnectionClosed):
            # The child closed its end: it is on its way out. Give it time to go on its own.
            self._later(self._kill_if_alive(process, self.config.shutdown_timeout))
            return
        # The child sent what is not a frame: it cannot be trusted to carry on.
        log.error("%s link ended: %s; replacing it", handle, connection.error)
        self.kill(handle, f"link ended: {connection.error}")

    # -- stopping --------------------------------------------------------------------------------

    def ask_to_stop(self, handle: ChildHandle, reason: str, resumable: bool) -> None:
        """Ask the child's process to end; SIGKILL if it has not by the shutdown timeout."""
        self.kinds[handle].ask_to_stop(handle, reason, resumable)
        process = handle.process
        if process is not None:
            self._later(self._kill_if_alive(process, self.config.shutdown_timeout))

    def restart(self, handle: ChildHandle, reason: str, resumable: bool) -> None:
        """Ask the child's process to end for a planned restart: the next starts at once, from
        the child's standby if it has one ready."""
        handle.restart_requested = True
        self.ask_to_stop(handle, reason, resumable)

    def ask_all_to_stop(self) -> None:
        for child, kind in self.kinds.items():
            if child.process is not None:
                child.transition("stopping")
                kind.ask_to_stop(child, "shutdown", resumable=False)

    def replace(self, handle: ChildHandle, reason: str) -> None:
        """Kill the child's process and start the next at once: not a crash, no backoff."""
        handle.restart_requested = True
        handle.transition("stopping")
        self.kill(handle, reason)

    def kill(self, handle: ChildHandle, reason: str) -> None:
        """Kill the child's process for ``reason``, which its exit will be reported with."""
        handle.kill_reason = reason
        if handle.process is not None:
            handle.process.kill()

    def kill_all(self) -> None:
        for child in self.kinds:
            process = child.process
            if process is not None and process.is_alive():
                process.kill()
            if process is not None:
                process.join(timeout=5)
                self._stop_watching(process)

    async def _kill_if_alive(
        self, process: multiprocessing.process.BaseProcess, after: float
    ) -> None:
        await asyncio.sleep(after)
        if process.is_alive():
            log.warning("process %s did not stop within %.0f s: killing it", process.pid, after)
            process.kill()

    # -- exits -----------------------------------------------------------------------------------

    def _on_exit(self, handle: ChildHandle, process: multiprocessing.process.BaseProcess) -> None:
        self._stop_watching(process)
        self._exited.add(handle)
        self.wake()

    def _stop_watching(self, process: multiprocessing.process.BaseProcess) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(process.sentinel)

    def reap(self, now: float) -> None:
        """Handle the exits seen since the last pass."""
        for handle in self._exited:
            self._reap(handle, now)
        self._exited.clear()

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
        if handle.temporary:
            log.info("%s exited (%s)", handle, how)
            INCIDENTS.record("exit", handle.label, f"{handle} exited ({how})")
            del self.kinds[handle]
            return
        if process.exitcode == EXIT_UNUSABLE and not self.stopping():
            log.error("%s cannot run with what is installed (its log says why); stopping", handle)
            self.unusable(handle)
        if self.stopping():
            handle.transition("stopped")
        elif handle.restart_requested:
            handle.restart_requested = False
            handle.restarts += 1
            log.info("%s stopped for its restart (%s)", handle, how)
            INCIDENTS.record("restart", handle.label, f"{handle} restarted ({how})")
            standby = kind.successor(handle)
            if standby is not None:
                self.take_over(handle, standby)
            else:
                self.spawn(handle)
        else:
            self._after_crash(handle, kind, now)

    def _after_crash(self, handle: ChildHandle, kind: ChildKind[Any], now: float) -> None:
        """Back off before the next start, or give up on a crash loop."""
        lived = now - handle.spawned_at
        kind.crashed(handle, lived)
        if lived > self.config.restart_backoff_max:
            handle.backoff = handle.first_backoff  # it ran a good while: not a loop
        recent = handle.count_exit(now, self.config.crash_loop_window)
        if recent > self.config.crash_loop_restarts:
            handle.transition("failed")
            window = self.config.crash_loop_window
            why = f"{recent} exits within {window:.0f} s (last: {handle.last_exit})"
            log.error("%s failed: %s; it stays down", handle, why)
            INCIDENTS.record("failed", handle.label, f"{handle} failed: {why}")
            kind.gave_up(handle)
            return
        handle.transition("backoff")
        handle.restarts += 1
        handle.restart_at = now + handle.backoff
        what = f"{handle} exited ({handle.last_exit}); restart {handle.restarts}"
        log.warning("%s in %.1f s", what, handle.backoff)
        INCIDENTS.record("exit", handle.label, f"{what} in {handle.backoff:.1f} s")
        handle.backoff = min(handle.backoff * 2, self.config.restart_backoff_max)

    # -- heartbeats ------------------------------------------------------------------------------

    def heartbeat(self, now: float) -> None:
        """Ping every connected child; kill those that are hung."""
        config = self.config
        for handle in self.kinds:
            connection = handle.connection
            if (
                connection is None
                or not connection.is_open
                or handle.stopping
                or not handle.watched
            ):
                handle.unacked_heartbeats = 0
                continue
            hung = handle.hung(
                now, config.heartbeat_interval, config.heartbeat_misses, config.loop_stall_timeout
            )
            if hung is not None:
                log.error("%s is %s; killing it", handle, hung)
                INCIDENTS.record("hang", handle.label, f"{handle} is {hung}; killed")
                self.kill(handle, hung)
                continue
            self._heartbeat_nonce += 1
            handle.record_ping(self._heartbeat_nonce, now)
            deadline = now + config.heartbeat_interval
            connection.send_batch_nowait(
                [Heartbeat(nonce=self._heartbeat_nonce, deadline=deadline, sent_at=now)]
            )

    def on_heartbeat_ack(self, handle: ChildHandle, ack: HeartbeatAck) -> None:
        was = handle.state
        handle.record_ack(ack)
        if handle.state != was:
            self.wake()

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
