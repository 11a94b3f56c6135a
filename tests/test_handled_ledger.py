"""The handled-event ledger in isolation: a worker's record of the dispatches bot code finished,
and the master's choice of where the next process resumes."""

from __future__ import annotations

import asyncio

from protocol.messages import HANDLED_ABOVE_MAX, HandledReport, ShardHandled, ShardHealth
from sharder.workers import WorkerHandle
from worker.context import ShardContext
from worker.handled import HandledDispatches, HandledSeqs, replaying
from worker.spec import Session


def test_the_floor_rises_over_every_seq_handled_in_order_and_keeps_those_past_a_gap() -> None:
    seqs = HandledSeqs("s")
    for seq in (1, 2, 4, 5, 7):
        seqs.add(seq)
    assert (seqs.floor, seqs.above) == (2, {4, 5, 7})
    seqs.add(3)  # the gap closes: the floor takes every seq that now follows
    assert (seqs.floor, seqs.above) == (5, {7})
    seqs.add(2)  # below the floor: already counted
    assert (seqs.floor, seqs.above) == (5, {7})


def test_a_handler_that_never_ends_does_not_grow_the_ledger_without_bound() -> None:
    seqs = HandledSeqs("s")
    seqs.add(1)  # seq 2's handler never returns
    for seq in range(3, 3 + HANDLED_ABOVE_MAX + 1):
        seqs.add(seq)
    assert len(seqs.above) <= HANDLED_ABOVE_MAX
    assert seqs.floor == 2 + HANDLED_ABOVE_MAX + 1  # gave up on seq 2, then took the rest


async def test_a_dispatch_is_handled_once_its_listeners_end_and_reported_that_turn() -> None:
    reports: list[list[ShardHandled]] = []
    handled = HandledDispatches({}, lambda shards, created: reports.append(shards))
    listener = asyncio.get_running_loop().create_future()
    handled.consumed(0, "s", 1, [])  # no listener: handled at once
    handled.consumed(0, "s", 2, [listener])
    await asyncio.sleep(0)
    assert [[(h.floor, h.above) for h in report] for report in reports] == [[(1, [])]]
    listener.set_result(None)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert reports[-1] == [ShardHandled(shard_id=0, session_id="s", floor=2, above=[])]


async def test_the_messages_and_interactions_handled_are_reported_by_snowflake() -> None:
    reports: list[tuple[list[int], list[int]]] = []
    handled = HandledDispatches(
        {}, lambda shards, created: reports.append(([s.floor for s in shards], created))
    )
    listener = asyncio.get_running_loop().create_future()
    handled.consumed(0, "s", 1, [], created=1_001)  # a message nobody listens to: handled
    handled.consumed(0, "s", 2, [listener], created=1_002)  # its handler still runs
    handled.consumed(0, "s", 3, [])  # not a message: nothing to report by snowflake
    await asyncio.sleep(0)
    assert reports == [([1], [1_001])]
    listener.set_result(None)
    for _ in range(3):
        await asyncio.sleep(0)
    assert reports[-1] == ([3], [1_002])


async def test_a_cancelled_listener_leaves_its_dispatch_unhandled() -> None:
    reports: list[list[ShardHandled]] = []
    handled = HandledDispatches({}, lambda shards, created: reports.append(shards))
    listener = asyncio.get_running_loop().create_future()
    handled.consumed(0, "s", 1, [listener])
    listener.cancel()
    for _ in range(3):
        await asyncio.sleep(0)
    assert reports == []
    assert await handled.drain(0.1) == 0


async def test_a_resumed_session_skips_the_replays_handled_before_and_runs_the_rest() -> None:
    sessions = {3: Session("s", 10, "ws://resume", frozenset({12, 13}), received=14)}
    handled = HandledDispatches(sessions, lambda shards, created: None)
    assert [seq for seq in (11, 12, 13, 14, 15) if handled.runs(3, "s", seq)] == [11, 14, 15]
    # 11 and 14 were received before and not known handled: replays; 15 is new.
    assert [seq for seq in (11, 14, 15) if handled.replayed(3, "s", seq)] == [11, 14]
    assert handled.runs(3, "another session", 12)  # a new session: nothing was handled
    assert not handled.replayed(3, "another session", 12)
    handled.closed = True  # handing over: the next process gets it
    assert not handled.runs(3, "s", 14)


def ready(handle: WorkerHandle, shard_id: int, seq: int) -> None:
    handle.remember_session(
        ShardHealth(shard_id=shard_id, state="ready", session_id="s", seq=seq, resume_url="ws://r")
    )


def test_the_next_process_resumes_from_the_ledgers_floor_and_skips_what_was_handled_past_it() -> (
    None
):
    handle = WorkerHandle(0, [0, 1], 2, 0.1)
    ready(handle, 0, 40)
    ready(handle, 1, 40)
    handle.record_handled(
        HandledReport(shards=[ShardHandled(shard_id=0, session_id="s", floor=37, above=[39])])
    )
    sessions = handle.sessions_to_resume(margin=2.0)
    assert sessions[0] == Session("s", 37, "ws://r", frozenset({39}), received=40)
    assert sessions[1] == Session("s", 40, "ws://r")  # nothing reported handled: the margin rule
    handle.forget_sessions()
    assert handle.sessions_to_resume(margin=2.0) == {}


async def test_listeners_started_while_a_replay_is_consumed_see_ctx_in_replay() -> None:
    seen: list[bool] = []

    async def listener() -> None:
        seen.append(ShardContext.in_replay())

    token = replaying.set(True)  # as the dispatch hook sets it while hikari consumes a replay
    started = asyncio.get_running_loop().create_task(listener())
    replaying.reset(token)
    await started
    await asyncio.get_running_loop().create_task(listener())  # a dispatch that is no replay
    assert seen == [True, False]
