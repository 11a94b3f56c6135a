"""The router in isolation: every request gets exactly one answer, whatever the target does."""

from __future__ import annotations

import time
from typing import Any

import pytest

from protocol import FrameDecoder, FrameEncoder, RoutingTable
from protocol.clock import Clock
from protocol.deadlines import DEFAULT_RESOLUTION
from protocol.messages import (
    CommandBroadcast,
    CommandExec,
    ReplyError,
    ReplyOk,
    ShardOutcome,
    deadline_in,
)
from sharder.router import Router
from sharder.workers import WorkerHandle
from tests.virtual_time import advance, virtual_clock

ENCODER = FrameEncoder()
GUILD_ON_WORKER_1 = 1 << 22  # shard 1 of 2


class Wire:
    """A worker's connection as the router sees it: records what is written to it."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.is_open = True
        self.writable = True

    def forward_soon(self, frame: Any) -> None:
        self.frames.append(bytes(frame))

    def send_soon(self, message: Any) -> None:
        self.frames.append(ENCODER.encode(message))

    def messages(self) -> list[Any]:
        decoder = FrameDecoder()
        return [message for frame in self.frames for message in decoder.feed(frame)]


class Reports:
    def on_heartbeat_ack(self, *args: Any) -> None: ...
    def on_shard_ready(self, *args: Any) -> None: ...
    def on_shard_disconnect(self, *args: Any) -> None: ...
    def on_identify_request(self, *args: Any) -> None: ...
    def on_identify_sent(self, *args: Any) -> None: ...
    def on_standby(self, *args: Any) -> None: ...
    def on_shard_released(self, *args: Any) -> None: ...


class NotCalled:
    """The state service and the compute pool, which these tests send nothing for."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} was not expected")


@pytest.fixture
async def router() -> tuple[Router, dict[int, WorkerHandle]]:
    return make_router()


def make_router(clock: Clock = time.monotonic) -> tuple[Router, dict[int, WorkerHandle]]:
    table = RoutingTable.contiguous(2, 2)
    workers = {n: WorkerHandle(n, table.shards_of(n), 2, 0.1) for n in range(2)}
    for handle in workers.values():
        handle.connection = Wire()  # type: ignore[assignment]
        handle.transition("spawning")
        handle.transition("ready")
    unused: Any = NotCalled()
    return Router(table, workers, Reports(), unused, unused, clock), workers


def send(router: Router, handle: WorkerHandle, message: Any) -> None:
    router.receiver(handle)(handle.connection, [message], [ENCODER.encode(message)])  # type: ignore[arg-type]


def wire(handle: WorkerHandle) -> Wire:
    assert isinstance(handle.connection, Wire)
    return handle.connection


async def test_a_request_reaches_its_target_and_the_answer_comes_back(router: Any) -> None:
    routing, workers = router
    request = CommandExec(nonce=7, deadline=deadline_in(5), guild_id=GUILD_ON_WORKER_1, name="x")
    send(routing, workers[0], request)
    assert wire(workers[1]).messages() == [request]
    send(routing, workers[1], ReplyOk(nonce=7, payload="done"))
    assert wire(workers[0]).messages() == [ReplyOk(nonce=7, payload="done")]
    send(routing, workers[1], ReplyOk(nonce=7, payload="again"))  # a late duplicate: dropped
    assert len(wire(workers[0]).messages()) == 1 and routing.pending == {}


async def test_a_request_to_a_down_worker_is_answered_at_once(router: Any) -> None:
    routing, workers = router
    workers[1].transition("backoff")
    workers[1].last_exit = "killed by SIGKILL"
    send(
        routing,
        workers[0],
        CommandExec(nonce=8, deadline=deadline_in(5), guild_id=GUILD_ON_WORKER_1, name="x"),
    )
    [answer] = wire(workers[0]).messages()
    assert isinstance(answer, ReplyError) and answer.code == "target_down"
    assert "restarting after: killed by SIGKILL" in answer.message


@pytest.mark.virtual_time
async def test_the_deadline_answers_a_silent_target() -> None:
    clock = virtual_clock()
    routing, workers = make_router(clock)
    send(
        routing,
        workers[0],
        CommandExec(nonce=9, deadline=clock() + 0.05, guild_id=GUILD_ON_WORKER_1, name="x"),
    )
    await advance(0.05 - 0.001)
    assert wire(workers[0]).frames == []
    await advance(DEFAULT_RESOLUTION + 0.002)  # expiry is at most a resolution late
    [answer] = wire(workers[0]).messages()
    assert isinstance(answer, ReplyError) and answer.code == "timeout"


async def test_a_dying_target_answers_its_waiters_and_a_broadcast_says_so_per_shard(
    router: Any,
) -> None:
    routing, workers = router
    send(
        routing,
        workers[0],
        CommandExec(nonce=10, deadline=deadline_in(5), guild_id=GUILD_ON_WORKER_1, name="x"),
    )
    send(routing, workers[0], CommandBroadcast(nonce=11, deadline=deadline_in(5), name="stats"))
    send(
        routing, workers[0], ReplyOk(nonce=11, payload=[ShardOutcome(shard_id=0, ok=True, value=1)])
    )
    routing.worker_down(1)
    answers = {
        message.nonce: message
        for message in wire(workers[0]).messages()
        if isinstance(message, ReplyOk | ReplyError)
    }
    assert isinstance(answers[10], ReplyError) and answers[10].code == "target_down"
    gathered = answers[11]
    assert isinstance(gathered, ReplyOk)
    outcomes = [(o["shard_id"], o["ok"], o.get("code")) for o in gathered.payload]
    assert outcomes == [(0, True, None), (1, False, "target_down")]
    assert routing.pending == {}
