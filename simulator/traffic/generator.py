"""Sending a plan: one asyncio task paces its events by the clock and applies each to the
message log or the gateway; the control API starts, stops and reads it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

import msgspec

from simulator.gateway.hub import Gateway
from simulator.limits import Clock
from simulator.messages import MessageLog
from simulator.payloads import PayloadFactory
from simulator.traffic.plan import TrafficPlan
from simulator.traffic.spec import EVENT_KINDS, TrafficSpec
from simulator.world import World

log = logging.getLogger("simulator.traffic")

TICK: Final = 0.01  # seconds between batches of a paced run
MAX_BATCH: Final = 256  # events between yields to the loop, so a burst never stalls it


class TrafficGenerator:
    """Runs one traffic spec at a time as an asyncio task; the control API starts and stops it."""

    def __init__(
        self,
        world: World,
        payloads: PayloadFactory,
        gateway: Gateway,
        messages: MessageLog,
        clock: Clock = time.monotonic,
    ) -> None:
        self._clock = clock
        self.world = world
        self.payloads = payloads
        self.gateway = gateway
        self.messages = messages
        self._task: asyncio.Task[None] | None = None
        self._spec: TrafficSpec | None = None
        self._sent = 0
        self._by_kind: dict[str, int] = {}
        self._started = 0.0
        self._ended: float | None = None
        self._error: str | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, spec: TrafficSpec) -> None:
        """Start making traffic; needs a running loop. One run at a time."""
        if self.running:
            raise RuntimeError("traffic is already running")
        loop = asyncio.get_running_loop()
        plan = TrafficPlan(self.world, spec)
        self._spec = spec
        self._sent = 0
        self._by_kind = dict.fromkeys(EVENT_KINDS, 0)
        self._started = self._clock()
        self._ended = None
        self._error = None
        self._task = loop.create_task(self._run(plan), name="simulator-traffic")
        self._task.add_done_callback(self._finished)

    async def stop(self) -> None:
        """Stop the run, if any, and wait until it has stopped."""
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        # asyncio.wait neither raises the task's cancellation nor swallows our own.
        await asyncio.wait({task})

    async def wait(self, timeout: float) -> None:
        """Wait for a run with a duration or count to end; TimeoutError if it has not by then.

        A run that failed raises its error here.
        """
        task = self._task
        if task is None:
            return
        if not task.done():
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                raise TimeoutError(f"traffic still running after {timeout:g} s")
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

    def status(self) -> dict[str, object]:
        end = self._ended if self._ended is not None else self._clock()
        return {
            "running": self.running,
            "sent": self._sent,
            "by_kind": dict(self._by_kind),
            "spec": msgspec.to_builtins(self._spec) if self._spec is not None else None,
            "elapsed": round(end - self._started, 3) if self._task is not None else 0.0,
            "error": self._error,
        }

    # -- the task ------------------------------------------------------------------------------

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._ended = self._clock()
        if not task.cancelled() and (error := task.exception()) is not None:
            self._error = f"{type(error).__name__}: {error}"
            log.error("traffic stopped by an error", exc_info=error)

    async def _run(self, plan: TrafficPlan) -> None:
        spec = plan.spec
        rate, count = spec.rate, spec.count
        start = self._started
        deadline = None if spec.duration is None else start + spec.duration
        scheduled = 0  # events due so far, sent or not (an empty world sends none: no backlog)
        while True:
            now = self._clock()
            over = deadline is not None and now >= deadline
            if rate == 0:
                if over:
                    return
                batch = MAX_BATCH
            else:
                if deadline is not None and over:
                    now = deadline
                # Everything due since the start, not a fixed amount per tick: sleeps overshoot,
                # and this keeps the long-run rate exact. A backlog goes out MAX_BATCH at a time.
                due = int(rate * (now - start))
                batch = min(due - scheduled, MAX_BATCH)
                scheduled += batch
                if over and batch == 0:
                    return
            if count is not None:
                batch = min(batch, count - self._sent)
            sent = self._emit(plan, batch)
            if count is not None and self._sent >= count:
                return
            if rate == 0:
                # Yield between batches; with nobody to talk (no guilds), idle instead of spin.
                await asyncio.sleep(0 if sent else TICK)
            else:
                await asyncio.sleep(0 if scheduled < due else TICK)

    def _emit(self, plan: TrafficPlan, batch: int) -> int:
        """Apply up to ``batch`` events; fewer only when the world has no guilds."""
        next_event = plan.next_event
        by_kind = self._by_kind
        post = self.messages.post
        interact = self.messages.interact
        dispatch = self.gateway.dispatch
        payloads = self.payloads
        sent = 0
        for _ in range(batch):
            event = next_event()
            if event is None:
                break
            kind = event.kind
            if kind == "message":
                post(event.channel_id, event.user_id, event.content)
            elif kind == "interaction":
                interact(event.channel_id, event.user_id, event.command, list(event.options))
            elif kind == "member_update":
                guild = plan.guild(event.guild_id)
                update = payloads.member_update(guild, event.user_id, event.nick)
                dispatch(event.guild_id, "GUILD_MEMBER_UPDATE", update)
            else:
                guild = plan.guild(event.guild_id)
                presence = payloads.presence_update(guild, event.user_id, event.status)
                dispatch(event.guild_id, "PRESENCE_UPDATE", presence)
            by_kind[kind] += 1
            sent += 1
        self._sent += sent
        return sent
