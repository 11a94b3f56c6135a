"""The deadline wheel: every deadline fires once, not early, at most one slot late; a discarded
one never fires. On virtual time: ``advance`` moves the clock without waiting."""

from __future__ import annotations

import math

import pytest

from protocol.deadlines import DeadlineWheel
from protocol.messages import deadline_in
from tests.virtual_time import advance, virtual_clock

pytestmark = pytest.mark.virtual_time

RESOLUTION = 0.01
EPSILON = 1e-9  # float rounding of instants


async def test_deadlines_fire_in_order_never_early_and_at_most_a_slot_late() -> None:
    clock = virtual_clock()
    fired: list[tuple[int, float]] = []
    wheel: DeadlineWheel[int] = DeadlineWheel(
        lambda key: fired.append((key, clock())), RESOLUTION, clock=clock
    )
    start = clock()
    deadlines = {key: start + 0.025 * (5 - key) for key in range(5)}  # added latest first
    for key, deadline in deadlines.items():
        wheel.add(key, deadline)
    assert len(wheel) == 5
    await advance(0.025 - RESOLUTION / 2)  # just before the first deadline
    assert fired == []
    await advance(0.2)
    assert [key for key, _ in fired] == [4, 3, 2, 1, 0]
    for key, at in fired:
        assert deadlines[key] - EPSILON <= at <= deadlines[key] + RESOLUTION + EPSILON
    assert len(wheel) == 0


async def test_a_discarded_deadline_never_fires_and_the_others_still_do() -> None:
    clock = virtual_clock()
    fired: list[str] = []
    wheel: DeadlineWheel[str] = DeadlineWheel(fired.append, RESOLUTION, clock=clock)
    now = clock()
    wheel.add("answered", now + 0.02)
    wheel.add("late", now + 0.03)
    wheel.add("also answered", now + 0.05)
    wheel.discard("answered")
    wheel.discard("also answered")
    wheel.discard("never added")
    await advance(0.15)
    assert fired == ["late"]


async def test_a_deadline_already_past_fires_within_a_resolution() -> None:
    clock = virtual_clock()
    fired: list[int] = []
    wheel: DeadlineWheel[int] = DeadlineWheel(fired.append, RESOLUTION, clock=clock)
    wheel.add(1, clock() - 5)
    assert fired == []
    await advance(RESOLUTION / 2)  # it waits in the nursery for the first tick
    assert fired == []
    await advance(RESOLUTION)
    assert fired == [1]


async def test_expiry_may_add_new_deadlines_and_clear_stops_everything() -> None:
    clock = virtual_clock()
    fired: list[int] = []
    wheel: DeadlineWheel[int] = DeadlineWheel(lambda key: None, RESOLUTION, clock=clock)

    def again(key: int) -> None:
        fired.append(key)
        if key < 3:
            wheel.add(key + 1, clock() + 0.01)

    wheel = DeadlineWheel(again, RESOLUTION, clock=clock)
    wheel.add(0, clock() + 0.01)
    await advance(0.2)
    assert fired == [0, 1, 2, 3]
    wheel.add(9, clock() + 0.01)
    wheel.clear()
    await advance(0.05)
    assert fired == [0, 1, 2, 3] and len(wheel) == 0


@pytest.mark.parametrize("bad", [math.inf, math.nan, -1.0])
async def test_a_deadline_that_is_no_instant_is_refused_and_the_others_still_fire(
    bad: float,
) -> None:
    clock = virtual_clock()
    fired: list[str] = []
    wheel: DeadlineWheel[str] = DeadlineWheel(fired.append, RESOLUTION, clock=clock)
    wheel.add("before", clock() + 0.02)
    with pytest.raises(ValueError, match="not a deadline"):
        wheel.add("bad", bad)
    wheel.add("after", clock() + 0.02)
    await advance(0.1)
    assert sorted(fired) == ["after", "before"]


@pytest.mark.parametrize("timeout", [math.inf, math.nan, -1.0, 0.0 - 1e-9, 86_401.0])
def test_a_timeout_that_is_not_a_span_of_seconds_is_refused_where_it_is_passed(
    timeout: float,
) -> None:
    with pytest.raises(ValueError, match="a timeout is"):
        deadline_in(timeout)
