"""The rebalancer's proposals: which shard moves where, only after a sustained imbalance, and
never when no single move helps or a worker is not ready."""

from __future__ import annotations

import pytest

from protocol.messages import ShardHealth
from sharder.rebalance import Rebalancer
from sharder.workers import WorkerHandle


def worker(worker_id: int, guilds: dict[int, int], rates: dict[int, float]) -> WorkerHandle:
    handle = WorkerHandle(worker_id, sorted(guilds), 4, 0.1)
    for shard_id, count in guilds.items():
        handle.shards[shard_id] = ShardHealth(shard_id=shard_id, state="ready", guilds=count)
    handle.shard_rates.update(rates)
    handle.transition("spawning")
    handle.transition("ready")
    return handle


def busy_and_idle() -> list[WorkerHandle]:
    # Worker 0's shards get nearly all the events; its guild counts are like everyone's.
    return [
        worker(0, {0: 100, 1: 100}, {0: 30.0, 1: 10.0}),
        worker(1, {2: 100, 3: 100}, {2: 1.0, 3: 1.0}),
    ]


def test_off_never_proposes() -> None:
    assert Rebalancer("off", 1.5, 0.0).propose(busy_and_idle(), 100.0) is None


def test_a_sustained_imbalance_moves_the_shard_that_lowers_the_peak_most() -> None:
    rebalancer = Rebalancer("events", 1.5, 10.0)
    workers = busy_and_idle()
    assert rebalancer.propose(workers, 100.0) is None  # seen first now
    assert rebalancer.propose(workers, 105.0) is None  # not for long enough
    proposal = rebalancer.propose(workers, 110.0)
    assert proposal is not None
    # Moving shard 0 (30/s) leaves 10 vs 32; moving shard 1 (10/s) leaves 30 vs 12: shard 1.
    assert (proposal.shard_id, proposal.source.id, proposal.target.id) == (1, 0, 1)
    assert proposal.why == "worker 0 carried 1.9x the average events for 10 s"
    # The clock starts over after a proposal: the next is at least as long away.
    assert rebalancer.propose(workers, 111.0) is None


def test_a_break_in_the_imbalance_starts_the_wait_over() -> None:
    rebalancer = Rebalancer("events", 1.5, 10.0)
    workers = busy_and_idle()
    assert rebalancer.propose(workers, 100.0) is None
    workers[0].shard_rates.update({0: 1.0, 1: 1.0})  # calm for a moment
    assert rebalancer.propose(workers, 105.0) is None
    workers[0].shard_rates.update({0: 30.0, 1: 10.0})
    assert rebalancer.propose(workers, 106.0) is None
    assert rebalancer.propose(workers, 115.0) is None
    assert rebalancer.propose(workers, 116.0) is not None


def test_guilds_are_balanced_by_guild_count() -> None:
    workers = [worker(0, {0: 900, 1: 500, 2: 100}, {}), worker(1, {3: 100}, {})]
    proposal = Rebalancer("guilds", 1.2, 0.0).propose(workers, 1.0)
    assert proposal is not None
    # 1500 vs 100: moving shard 0 (900) or shard 1 (500) both leave a peak of 1000; the
    # lighter one moves.
    assert (proposal.shard_id, proposal.target.id) == (1, 1)


@pytest.mark.parametrize(
    "workers",
    [
        # One heavy shard: moving it only moves the peak elsewhere.
        [worker(0, {0: 1000}, {}), worker(1, {1: 10}, {})],
        # Within the threshold.
        [worker(0, {0: 120}, {}), worker(1, {1: 100}, {})],
    ],
    ids=["no-move-helps", "balanced-enough"],
)
def test_nothing_is_proposed_when_no_move_helps(workers: list[WorkerHandle]) -> None:
    assert Rebalancer("guilds", 1.1, 0.0).propose(workers, 1.0) is None


def test_nothing_moves_while_a_worker_is_not_ready() -> None:
    workers = busy_and_idle()
    workers[1].transition("starting")
    assert Rebalancer("events", 1.5, 0.0).propose(workers, 1.0) is None
