"""The compute pool in isolation: every task gets exactly one answer, whatever the workers do.
On virtual time: ``advance`` moves the clock without waiting."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import FrameEncoder
from protocol.deadlines import DEFAULT_RESOLUTION
from protocol.messages import ComputeRequest, ComputeResult, ReplyError
from sharder.compute_pool import ComputePool
from sharder.lifecycle import ChildHandle
from sharder.workers import ComputeHandle, WorkerHandle
from tests.test_router import Wire
from tests.virtual_time import advance, virtual_clock

pytestmark = pytest.mark.virtual_time

ENCODER = FrameEncoder()


class Reports:
    def __init__(self) -> None:
        self.replaced: list[tuple[ChildHandle, str]] = []

    def on_heartbeat_ack(self, *args: Any) -> None: ...

    def replace(self, handle: ChildHandle, reason: str) -> None:
        self.replaced.append((handle, reason))


class Pool:
    """A pool of two compute workers and one asking shard worker, all on recording wires."""

    def __init__(self, queue_size: int = 2, compute_workers: int = 2) -> None:
        self.asker = WorkerHandle(0, [0], 1, 0.1)
        self.asker.connection = Wire()  # type: ignore[assignment]
        self.asker.transition("spawning")
        self.asker.transition("ready")
        self.handles = {n: ComputeHandle(n, 0.1) for n in range(compute_workers)}
        for handle in self.handles.values():
            handle.connection = Wire()  # type: ignore[assignment]
            handle.transition("spawning")
            handle.transition("ready")
        self.reports = Reports()
        self.clock = virtual_clock()
        self.pool = ComputePool(
            self.handles, {0: self.asker}, queue_size, self.reports, clock=self.clock
        )
        self.nonce = 0

    def submit(self, seconds: float = 5.0) -> int:
        self.nonce += 1
        request = ComputeRequest(
            nonce=self.nonce, deadline=self.clock() + seconds, task="math", args={"expression": "1"}
        )
        self.pool.submit(self.asker, request, ENCODER.encode(request))
        return self.nonce

    def finish(self, handle: ComputeHandle, nonce: int, value: Any = "1") -> None:
        result = ComputeResult(nonce=nonce, value=value)
        receive = self.pool.receiver(handle)
        receive(handle.connection, [result], [ENCODER.encode(result)])  # type: ignore[arg-type]

    def answers(self) -> list[Any]:
        return wire(self.asker).messages()

    def tasks_sent(self, handle: ComputeHandle) -> list[int]:
        return [message.nonce for message in wire(handle).messages()]


def wire(handle: ChildHandle) -> Wire:
    assert isinstance(handle.connection, Wire)
    return handle.connection


@pytest.fixture
async def pool() -> Pool:  # async: the pool reads the running loop's clock
    return Pool()


async def test_tasks_go_to_idle_workers_then_wait_in_order_then_are_refused_busy(
    pool: Pool,
) -> None:
    first, second = pool.submit(), pool.submit()
    assert pool.tasks_sent(pool.handles[0]) == [first]
    assert pool.tasks_sent(pool.handles[1]) == [second]
    third, fourth, fifth = pool.submit(), pool.submit(), pool.submit()
    assert list(pool.pool.queued) == [third, fourth]
    [busy] = pool.answers()
    assert isinstance(busy, ReplyError) and busy.nonce == fifth and busy.code == "busy"
    assert "all 2 compute workers are busy" in busy.message

    pool.finish(pool.handles[1], second)  # the freed worker takes the oldest waiting task
    assert pool.tasks_sent(pool.handles[1]) == [second, third]
    assert [answer.nonce for answer in pool.answers()] == [fifth, second]
    assert pool.pool.status().busy == 1 and pool.pool.status().done == 1


async def test_the_least_loaded_idle_worker_is_picked(pool: Pool) -> None:
    pool.handles[0].tasks_done = 5
    nonce = pool.submit()
    assert pool.tasks_sent(pool.handles[1]) == [nonce]
    assert pool.tasks_sent(pool.handles[0]) == []


async def test_a_running_task_past_its_deadline_is_answered_and_its_worker_replaced(
    pool: Pool,
) -> None:
    nonce = pool.submit(seconds=0.05)
    await advance(0.05 - 0.001)
    assert pool.answers() == [] and pool.reports.replaced == []
    await advance(DEFAULT_RESOLUTION + 0.002)  # expiry is at most a resolution late
    [answer] = pool.answers()
    assert isinstance(answer, ReplyError) and answer.code == "timeout"
    assert "compute worker 0 was killed" in answer.message
    assert [(handle.id, reason) for handle, reason in pool.reports.replaced] == [
        (0, "the math task passed its deadline")
    ]
    pool.finish(pool.handles[0], nonce)  # a result that made it out anyway is not sent twice
    assert len(pool.answers()) == 1


async def test_a_queued_task_past_its_deadline_is_answered_without_killing_anyone() -> None:
    pool = Pool(compute_workers=1)
    pool.submit()
    queued = pool.submit(seconds=0.05)
    await advance(0.05 - 0.001)
    assert pool.answers() == []
    await advance(DEFAULT_RESOLUTION + 0.002)  # expiry is at most a resolution late
    [answer] = pool.answers()
    assert answer.nonce == queued and answer.code == "timeout"
    assert "waited for a compute worker" in answer.message
    assert pool.reports.replaced == [] and not pool.pool.queued


async def test_a_worker_dying_mid_task_has_its_asker_told_at_once(pool: Pool) -> None:
    nonce = pool.submit()
    handle = pool.handles[0]
    handle.last_exit = "killed by SIGXCPU"
    handle.forget_process()
    handle.transition("backoff")
    pool.pool.worker_down(handle)
    [answer] = pool.answers()
    assert answer.nonce == nonce and answer.code == "target_down"
    assert "compute worker 0 died running the math task: killed by SIGXCPU" in answer.message
    assert pool.pool.status().lost == 1


async def test_with_every_worker_failed_waiting_and_new_tasks_are_refused_at_once() -> None:
    pool = Pool(compute_workers=1)
    pool.submit()
    waiting = pool.submit()
    handle = pool.handles[0]
    handle.last_exit = "exit code 1"
    handle.transition("failed")
    pool.pool.worker_down(handle)
    late = pool.submit()
    answers = {answer.nonce: answer for answer in pool.answers()}
    assert {nonce: answers[nonce].code for nonce in (1, waiting, late)} == dict.fromkeys(
        (1, waiting, late), "target_down"
    )
    assert "compute worker 0 failed: exit code 1" in answers[late].message


async def test_a_result_goes_back_as_the_frame_the_worker_sent(pool: Pool) -> None:
    nonce = pool.submit()
    pool.finish(pool.handles[0], nonce, value={"width": 3})
    [answer] = pool.answers()
    assert answer == ComputeResult(nonce=nonce, value={"width": 3})
    assert pool.handles[0].idle and pool.handles[0].tasks_done == 1


async def test_queued_tasks_of_a_shard_worker_that_died_are_dropped() -> None:
    pool = Pool(compute_workers=1)
    pool.submit()
    pool.submit()
    pool.pool.origin_down(0)
    assert not pool.pool.queued
