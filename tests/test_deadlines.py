"""The deadline wheel: every deadline fires once, not early, at most one slot late; a discarded
one never fires."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from protocol.deadlines import DeadlineWheel
from protocol.messages import deadline_in

RESOLUTION = 0.01


async def test_deadlines_fire_in_order_never_early_and_at_most_a_slot_late() -> None:
    fired: list[tuple[int, float]] = []
    wheel: DeadlineWheel[int] = DeadlineWheel(
        lambda key: fired.append((key, time.monotonic())), RESOLUTION
    )
    start = time.monotonic()
    deadlines = {key: start + 0.02 * (5 - key) for key in range(5)}  # added latest first
    for key, deadline in deadlines.items():
        wheel.add(key, deadline)
    assert len(wheel) == 5
    await asyncio.sleep(0.2)
    assert [key for key, _ in fired] == [4, 3, 2, 1, 0]
    for key, at in fired:
        assert at >= deadlines[key]
        assert at - deadlines[key] < RESOLUTION + 0.05  # a loaded machine adds scheduling delay
    assert len(wheel) == 0


async def test_a_discarded_deadline_never_fires_and_the_others_still_do() -> None:
    fired: list[str] = []
    wheel: DeadlineWheel[str] = DeadlineWheel(fired.append, RESOLUTION)
    now = time.monotonic()
    wheel.add("answered", now + 0.02)
    wheel.add("late", now + 0.03)
    wheel.add("also answered", now + 0.05)
    wheel.discard("answered")
    wheel.discard("also answered")
    wheel.discard("never added")
    await asyncio.sleep(0.15)
    assert fired == ["late"]


async def test_a_deadline_already_past_fires_within_a_resolution() -> None:
    fired: list[int] = []
    wheel: DeadlineWheel[int] = DeadlineWheel(fired.append, RESOLUTION)
    wheel.add(1, time.monotonic() - 5)
    assert fired == []
    await asyncio.sleep(0.05)
    assert fired == [1]


async def test_expiry_may_add_new_deadlines_and_clear_stops_everything() -> None:
    fired: list[int] = []
    wheel: DeadlineWheel[int] = DeadlineWheel(lambda key: None, RESOLUTION)

    def again(key: int) -> None:
        fired.append(key)
        if key < 3:
            wheel.add(key + 1, time.monotonic() + 0.01)

    wheel = DeadlineWheel(again, RESOLUTION)
    wheel.add(0, time.monotonic() + 0.01)
    await asyncio.sleep(0.2)
    assert fired == [0, 1, 2, 3]
    wheel.add(9, time.monotonic() + 0.01)
    wheel.clear()
    await asyncio.sleep(0.05)
    assert fired == [0, 1, 2, 3] and len(wheel) == 0


@pytest.mark.parametrize("bad", [math.inf, math.nan, -1.0])
async def test_a_deadline_that_is_no_instant_is_refused_and_the_others_still_fire(
    bad: float,
) -> None:
    fired: list[str] = []
    wheel: DeadlineWheel[str] = DeadlineWheel(fired.append, RESOLUTION)
    wheel.add("before", time.monotonic() + 0.02)
    with pytest.raises(ValueError, match="not a deadline"):
        wheel.add("bad", bad)
    wheel.add("after", time.monotonic() + 0.02)
    await asyncio.sleep(0.1)
    assert sorted(fired) == ["after", "before"]


@pytest.mark.parametrize("timeout", [math.inf, math.nan, -1.0, 0.0 - 1e-9, 86_401.0])
def test_a_timeout_that_is_not_a_span_of_seconds_is_refused_where_it_is_passed(
    timeout: float,
) -> None:
    with pytest.raises(ValueError, match="a timeout is"):
        deadline_in(timeout)
