"""The identify gate's rules, and the hook into hikari that every IDENTIFY passes through. The
gate's tests run on virtual time: ``advance`` moves the clock without waiting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hikari.impl.shard import GatewayShardImpl

from protocol.clock import Clock
from sharder.identify import WINDOW_MARGIN, IdentifyGate, SessionBudget
from tests.virtual_time import advance, virtual_clock
from worker import shard_hooks

pytestmark = pytest.mark.virtual_time

WINDOW = 0.1
SPACING = WINDOW + WINDOW_MARGIN  # a bucket's grants, each sent at once, are this far apart


def sent_at_once(
    identify_gate: IdentifyGate, clock: Clock, granted: list[Any], shard_id: int, note: Any = None
) -> Callable[[float], None]:
    """A grant whose shard sends its IDENTIFY (and says so) the moment it arrives."""

    def grant(expires_at: float) -> None:
        granted.append((shard_id, clock()) if note is None else note)
        identify_gate.sent(shard_id, clock())

    return grant


def gate(
    clock: Clock, max_concurrency: int = 2, total: int = 100, remaining: int = 100
) -> IdentifyGate:
    budget = SessionBudget(total, remaining, 0.0, 0.4)
    return IdentifyGate(max_concurrency, WINDOW, budget, clock=clock)


async def test_one_identify_per_bucket_per_window_and_buckets_in_parallel() -> None:
    clock = virtual_clock()
    identify_gate = gate(clock)
    granted: list[tuple[int, float]] = []
    start = clock()
    for shard_id in range(6):  # buckets 0 and 1, three shards each
        identify_gate.request(shard_id, sent_at_once(identify_gate, clock, granted, shard_id))
    assert [shard for shard, _ in granted] == [0, 1]  # one per bucket at once
    assert identify_gate.position(2) == 0 and identify_gate.position(4) == 1
    await advance(SPACING - 0.01)
    assert len(granted) == 2  # not a moment before the window and its margin
    await advance(2 * SPACING)
    assert sorted(shard for shard, _ in granted) == list(range(6))
    for bucket in (0, 1):
        times = [at for shard, at in granted if shard % 2 == bucket]
        assert times == pytest.approx([start, start + SPACING, start + 2 * SPACING])


async def test_a_spent_budget_holds_every_bucket_until_the_period_ends() -> None:
    clock = virtual_clock()
    identify_gate = gate(clock, total=2, remaining=2)
    granted: list[int] = []
    for shard_id in range(4):
        identify_gate.request(
            shard_id, sent_at_once(identify_gate, clock, granted, shard_id, shard_id)
        )
    await advance(0.4)  # just before the period (0.4 s and its margin) ends
    assert sorted(granted) == [0, 1] and identify_gate.budget_spent
    await advance(2 * WINDOW_MARGIN)
    assert sorted(granted) == [0, 1, 2, 3]


async def test_a_forgotten_or_repeated_request_waits_in_one_place_only() -> None:
    clock = virtual_clock()
    identify_gate = gate(clock, max_concurrency=1)
    granted: list[str] = []
    identify_gate.request(0, sent_at_once(identify_gate, clock, granted, 0, "first"))
    identify_gate.request(1, sent_at_once(identify_gate, clock, granted, 1, "dead worker"))
    identify_gate.request(2, sent_at_once(identify_gate, clock, granted, 2, "asked once"))
    identify_gate.request(2, sent_at_once(identify_gate, clock, granted, 2, "asked again"))
    identify_gate.forget(1)
    await advance(3 * SPACING)
    assert granted == ["first", "asked again"]


async def test_the_window_runs_from_the_reported_send_not_from_the_grant() -> None:
    clock = virtual_clock()
    identify_gate = gate(clock, max_concurrency=1)
    granted: list[tuple[int, float]] = []
    late = 0.9 * SPACING  # a busy worker sends its IDENTIFY this late, in time

    def stamp(shard_id: int) -> Callable[[float], None]:
        return lambda _: granted.append((shard_id, clock()))

    for shard_id in (0, 1):
        identify_gate.request(shard_id, stamp(shard_id))
    await advance(late)
    sent_at = clock()
    identify_gate.sent(0, sent_at)
    await advance(SPACING - 0.01)  # a window after the grant has passed, not after the send
    assert [shard for shard, _ in granted] == [0]
    await advance(0.02)
    assert [shard for shard, _ in granted] == [0, 1]
    assert granted[1][1] == pytest.approx(sent_at + SPACING)


async def test_an_unreported_grant_holds_its_bucket_until_it_expires_and_a_window_more() -> None:
    clock = virtual_clock()
    identify_gate = gate(clock, max_concurrency=1)
    expiries: list[float] = []
    granted: list[tuple[int, float]] = []
    identify_gate.request(0, expiries.append)  # its worker dies before sending, or never says
    identify_gate.request(1, lambda _: granted.append((1, clock())))
    await advance(2 * SPACING - 0.01)
    assert granted == []
    await advance(0.02)
    assert [at for _, at in granted] == pytest.approx([expiries[0] + SPACING])


def test_the_hook_matches_the_installed_hikari() -> None:
    shard_hooks.check_hikari()  # fails when a hikari upgrade moves what the hook needs


def test_the_hook_refuses_a_hikari_whose_send_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def moved(self: Any, payload: Any) -> None: ...

    monkeypatch.setattr(GatewayShardImpl, "_send_json", moved)
    shard_hooks.check_hikari.cache_clear()  # read once per process: read again, now
    with pytest.raises(shard_hooks.UnsupportedHikari, match="_send_json"):
        shard_hooks.check_hikari()


async def test_the_hook_gates_identify_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []
    asked: list[int] = []
    reported: list[int] = []

    async def original(self: Any, data: dict[str, Any], *, priority: bool = False) -> None:
        sent.append(data)

    async def acquire(shard_id: int) -> None:
        asked.append(shard_id)

    monkeypatch.setattr(GatewayShardImpl, "_send_json", original)
    monkeypatch.setattr(shard_hooks, "check_hikari", lambda: None)
    shard_hooks.install(acquire, reported.append)
    shard = GatewayShardImpl.__new__(GatewayShardImpl)
    shard._shard_id = 7
    await shard._send_json({"op": 1, "d": None})
    await shard._send_json({"op": 2, "d": {}})
    assert asked == [7] and [payload["op"] for payload in sent] == [1, 2] and reported == [7]
    with pytest.raises(RuntimeError, match="already installed"):
        shard_hooks.install(acquire, reported.append)
