"""What a child's handle makes of its heartbeats: misses, and the round trips the status shows."""

from __future__ import annotations

import time

from protocol.messages import HeartbeatAck
from sharder.lifecycle import ROUND_TRIPS_KEPT
from sharder.workers import ComputeHandle, WorkerHandle


def ack(nonce: int) -> HeartbeatAck:
    return HeartbeatAck(nonce=nonce, loop_lag_ms=0.0, rss_bytes=1)


def test_round_trips_are_measured_from_each_ping_to_its_ack() -> None:
    handle = WorkerHandle(0, [0], 1, 0.1)
    assert handle.heartbeat_p99_ms() is None
    now = time.monotonic()
    handle.record_ping(1, now - 0.010)
    handle.record_ping(2, now - 0.004)
    assert handle.unacked_heartbeats == 2
    handle.record_ack(ack(1))  # late: ping 2 still counts
    handle.record_ack(ack(2))
    assert handle.unacked_heartbeats == 0
    first, second = handle.round_trips
    assert 0.010 <= first < 0.1 and 0.004 <= second < 0.1
    assert handle.heartbeat_p99_ms() == round(max(handle.round_trips) * 1000, 2)


def test_an_ack_settles_the_pings_before_it_and_an_unknown_ack_measures_nothing() -> None:
    handle = WorkerHandle(0, [0], 1, 0.1)
    now = time.monotonic()
    for nonce in (1, 2, 3):
        handle.record_ping(nonce, now)
    handle.record_ack(ack(3))
    handle.record_ack(ack(1))  # already settled by 3
    handle.record_ack(ack(99))
    assert len(handle.round_trips) == 1


def test_the_p99_is_over_the_last_round_trips_only() -> None:
    handle = WorkerHandle(0, [0], 1, 0.1)
    now = time.monotonic()
    handle.record_ping(0, now - 5.0)
    handle.record_ack(ack(0))  # one slow ping, long ago
    for nonce in range(1, ROUND_TRIPS_KEPT + 1):
        handle.record_ping(nonce, time.monotonic() - 0.001)
        handle.record_ack(ack(nonce))
    p99 = handle.heartbeat_p99_ms()
    assert p99 is not None and p99 < 100


def test_a_compute_worker_is_watched_only_between_tasks() -> None:
    handle = ComputeHandle(0, 0.1)
    assert handle.watched
    handle.task = object()  # type: ignore[assignment]
    assert not handle.watched and not handle.idle
