"""The master's router: requests between workers, answered exactly once, never left hanging.

A ``COMMAND_EXEC`` goes to the worker that owns its guild's shard, as the frame it arrived in;
the answer comes back the same way, found by its nonce (unique across processes, see
``child.link``). A ``COMMAND_BROADCAST`` goes to every worker and its answers are gathered into
one outcome per shard. Whatever happens, the asker gets one answer: the target's, or an error at
once when the target is down, or an error at the deadline, or an error the moment the target
dies. Compute requests go to the compute pool, state messages to the state service, and what a
worker says about itself (heartbeat acks, shard reports, identifies) to its ``WorkerReports``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from protocol import AnyMessage, Connection, Frame, RoutingTable
from protocol.clock import Clock
from protocol.connection import Receiver
from protocol.deadlines import DeadlineWheel
from protocol.messages import (
    CommandBroadcast,
    CommandExec,
    ComputeRequest,
    ErrorCode,
    HandledReport,
    HeartbeatAck,
    IdentifyRequest,
    IdentifySent,
    Message,
    ReplyError,
    ReplyOk,
    Request,
    ShardDisconnect,
    ShardOutcome,
    ShardReady,
    ShardReleased,
    StateFetch,
    StateSync,
    StateUpdate,
    WorkerStandby,
)
from sharder.compute_pool import ComputePool
from sharder.measures import MEASURES
from sharder.state_service import StateService
from sharder.workers import WorkerHandle

log = logging.getLogger("sharder.router")

ANSWERS = (ReplyOk, ReplyError)  # a tuple: ``A | B`` in isinstance builds a union per call


class WorkerReports(Protocol):
    """Where the router hands what a worker says about itself (its health, its shards)."""

    def on_heartbeat_ack(self, handle: WorkerHandle, ack: HeartbeatAck) -> None: ...
    def on_shard_ready(self, handle: WorkerHandle, ready: ShardReady) -> None: ...
    def on_shard_disconnect(self, handle: WorkerHandle, disconnect: ShardDisconnect) -> None: ...
    def on_identify_request(self, handle: WorkerHandle, request: IdentifyRequest) -> None: ...
    def on_identify_sent(self, handle: WorkerHandle, sent: IdentifySent) -> None: ...
    def on_standby(self, handle: WorkerHandle, standby: WorkerStandby) -> None: ...
    def on_shard_released(self, handle: WorkerHandle, released: ShardReleased) -> None: ...


@dataclass(slots=True)
class Forwarded:
    origin: int
    target: int
    started: float  # when the master took it, for the latency measured


@dataclass(slots=True)
class Gathered:
    origin: int
    started: float
    awaiting: set[int]
    outcomes: list[ShardOutcome] = field(default_factory=list)


class Router:
    def __init__(
        self,
        table: RoutingTable,
        workers: Mapping[int, WorkerHandle],
        reports: WorkerReports,
        state: StateService,
        pool: ComputePool,
        clock: Clock = time.monotonic,
    ) -> None:
        self.table = table
        self.workers = workers
        self.reports = reports
        self.state = state
        self.pool = pool
        self.pending: dict[int, Forwarded | Gathered] = {}
        self.routed = 0
        self._clock = clock
        self._deadlines: DeadlineWheel[int] = DeadlineWheel(self._expire, clock=clock)
        self._loop = asyncio.get_running_loop()
        self._draining: set[asyncio.Task[None]] = set()  # askers paused until a target drains

    def receiver(self, handle: WorkerHandle) -> Receiver:
        """The read-path callback of one worker's connection."""

        def receive(
            connection: Connection, messages: list[AnyMessage], frames: list[Frame]
        ) -> None:
            forward, on_answer, route = self._forward, self._on_answer, self._route
            for message, frame in zip(messages, frames, strict=True):
                # Nearly every frame is one of these two: they skip the dispatch.
                if type(message) is CommandExec:
                    forward(handle, message, frame)
                elif type(message) is ReplyOk:
                    on_answer(handle, message, frame)
                else:
                    route(handle, message, frame)

        return receive

    def worker_down(self, worker_id: int) -> None:
        """A worker's process is gone: answer now everything that waited on it."""
        handle = self.workers[worker_id]
        for nonce, route in list(self.pending.items()):
            if route.origin == worker_id:
                self._finish(nonce)  # nobody left to answer
            elif isinstance(route, Forwarded) and route.target == worker_id:
                self._finish(nonce)
                self._answer(route.origin, self._error(nonce, "target_down", handle.describe()))
            elif isinstance(route, Gathered) and worker_id in route.awaiting:
                route.outcomes.extend(self._failed(handle, "target_down", handle.describe()))
                route.awaiting.discard(worker_id)
                if not route.awaiting:
                    self._complete(nonce, route)

    # -- routing -------------------------------------------------------------------------------

    def _route(self, handle: WorkerHandle, message: AnyMessage, frame: Frame) -> None:
        if isinstance(message, ANSWERS):
            self._on_answer(handle, message, frame)
        elif isinstance(message, CommandExec):
            self._forward(handle, message, frame)
        elif isinstance(message, CommandBroadcast):
            self._gather(handle, message, frame)
        elif isinstance(message, HandledReport):  # every turn of a busy worker's loop
            handle.record_handled(message)
        elif isinstance(message, ComputeRequest):
            self.pool.submit(handle, message, frame)
        elif isinstance(message, HeartbeatAck):
            self.reports.on_heartbeat_ack(handle, message)
        elif isinstance(message, ShardReady):
            self.reports.on_shard_ready(handle, message)
        elif isinstance(message, ShardDisconnect):
            self.reports.on_shard_disconnect(handle, message)
        elif isinstance(message, IdentifyRequest):
            self.reports.on_identify_request(handle, message)
        elif isinstance(message, IdentifySent):
            self.reports.on_identify_sent(handle, message)
        elif isinstance(message, StateUpdate):
            self.state.on_update(handle, message)
        elif isinstance(message, StateSync):
            self.state.on_sync(handle, message)
        elif isinstance(message, StateFetch):
            self.state.on_fetch(handle, message)
        elif isinstance(message, WorkerStandby):
            self.reports.on_standby(handle, message)
        elif isinstance(message, ShardReleased):
            self.reports.on_shard_released(handle, message)
        else:
            kind = type(message).__struct_config__.tag
            log.warning("worker %d sent %s, which the master does not take", handle.id, kind)
            if isinstance(message, Request):
                reason = f"the master does not take {kind}"
                self._answer(handle.id, self._error(message.nonce, "invalid", reason))

    def _forward(self, origin: WorkerHandle, request: CommandExec, frame: Frame) -> None:
        target = self.workers[self.table.owner_of_guild(request.guild_id)]
        if not target.serving:
            self._answer(origin.id, self._error(request.nonce, "target_down", target.describe()))
            return
        now = self._clock()
        if self._expired(origin, request, now):
            return
        self._deadlines.add(request.nonce, request.deadline)
        self.pending[request.nonce] = Forwarded(origin.id, target.id, now)
        self.routed += 1
        self._deliver(origin, target, frame)

    def _gather(self, origin: WorkerHandle, request: CommandBroadcast, frame: Frame) -> None:
        now = self._clock()
        if self._expired(origin, request, now):
            return
        self._deadlines.add(request.nonce, request.deadline)
        route = Gathered(origin.id, now, set())
        self.pending[request.nonce] = route
        self.routed += 1
        for target in (self.workers[owner] for owner in self.table.owners()):
            if target.serving:
                route.awaiting.add(target.id)
                self._deliver(origin, target, frame)
            else:
                route.outcomes.extend(self._failed(target, "target_down", target.describe()))
        if not route.awaiting:
            self._complete(request.nonce, route)

    def _on_answer(self, replier: WorkerHandle, reply: ReplyOk | ReplyError, frame: Frame) -> None:
        route = self.pending.get(reply.nonce)
        if route is None:
            log.debug("answer %d from worker %d came after its deadline", reply.nonce, replier.id)
        elif isinstance(route, Forwarded):
            if route.target != replier.id:
                log.warning(
                    "worker %d answered %d, sent to worker %d",
                    replier.id,
                    reply.nonce,
                    route.target,
                )
                return
            del self.pending[reply.nonce]
            self._deadlines.discard(reply.nonce)
            outcome = "ok" if isinstance(reply, ReplyOk) else reply.code
            MEASURES.requests[outcome].observe(self._clock() - route.started)
            origin = self.workers[route.origin]
            if origin.connection is not None and origin.connection.is_open:
                origin.connection.forward_soon(frame)
        elif replier.id in route.awaiting:
            route.awaiting.discard(replier.id)
            route.outcomes.extend(self._outcomes(replier, reply))
            if not route.awaiting:
                self._complete(reply.nonce, route)

    def _outcomes(self, replier: WorkerHandle, reply: ReplyOk | ReplyError) -> list[ShardOutcome]:
        if isinstance(reply, ReplyError):
            return self._failed(replier, reply.code, reply.message)
        try:
            outcomes = msgspec.convert(reply.payload, list[ShardOutcome])
        except msgspec.ValidationError as error:
            log.warning("worker %d answered a broadcast with a bad payload: %s", replier.id, error)
            return self._failed(replier, "invalid", f"bad broadcast answer: {error}")
        owned = set(replier.shard_ids)
        return [outcome for outcome in outcomes if outcome.shard_id in owned]

    def _complete(self, nonce: int, route: Gathered) -> None:
        self._finish(nonce)
        MEASURES.broadcasts[_outcome(route.outcomes)].observe(self._clock() - route.started)
        outcomes = sorted(route.outcomes, key=lambda outcome: outcome.shard_id)
        self._answer(route.origin, ReplyOk(nonce=nonce, payload=outcomes))

    def _expire(self, nonce: int) -> None:
        route = self.pending.pop(nonce, None)
        if route is None:
            return
        took = self._clock() - route.started
        if isinstance(route, Forwarded):
            MEASURES.requests["timeout"].observe(took)
            target = self.workers[route.target]
            reason = f"worker {target.id} did not answer before the deadline"
            self._answer(route.origin, self._error(nonce, "timeout", reason))
            return
        for worker_id in route.awaiting:
            route.outcomes.extend(
                self._failed(self.workers[worker_id], "timeout", "no answer before the deadline")
            )
        MEASURES.broadcasts["timeout"].observe(took)
        outcomes = sorted(route.outcomes, key=lambda outcome: outcome.shard_id)
        self._answer(route.origin, ReplyOk(nonce=nonce, payload=outcomes))

    def _expired(self, origin: WorkerHandle, request: Request, now: float) -> bool:
        if request.deadline > now:
            return False
        self._answer(origin.id, self._error(request.nonce, "timeout", "the deadline had passed"))
        return True

    def _finish(self, nonce: int) -> None:
        if self.pending.pop(nonce, None) is not None:
            self._deadlines.discard(nonce)

    # -- writing -------------------------------------------------------------------------------

    def _deliver(self, origin: WorkerHandle, target: WorkerHandle, frame: Frame) -> None:
        target_connection = target.connection
        assert target_connection is not None
        target_connection.forward_soon(frame)
        origin_connection = origin.connection
        if not target_connection.writable and origin_connection is not None:
            # The target is behind: stop reading the asker until it catches up.
            origin_connection.pause_reading()
            task = self._loop.create_task(
                self._resume_when_drained(origin_connection, target_connection)
            )
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)

    @staticmethod
    async def _resume_when_drained(origin: Connection, target: Connection) -> None:
        with contextlib.suppress(Exception):
            await target.wait_writable()
        origin.resume_reading()

    def _answer(self, worker_id: int, answer: Message) -> None:
        connection = self.workers[worker_id].connection
        if connection is not None and connection.is_open:
            connection.send_soon(answer)

    @staticmethod
    def _error(nonce: int, code: ErrorCode, message: str) -> ReplyError:
        return ReplyError(nonce=nonce, code=code, message=message)

    @staticmethod
    def _failed(handle: WorkerHandle, code: ErrorCode, message: str) -> list[ShardOutcome]:
        return [
            ShardOutcome(shard_id=shard_id, ok=False, code=code, message=message)
            for shard_id in handle.shard_ids
        ]


def _outcome(outcomes: list[ShardOutcome]) -> str:
    """A broadcast's outcome: "ok", or the code of its first shard that failed."""
    return next((outcome.code or "error" for outcome in outcomes if not outcome.ok), "ok")
