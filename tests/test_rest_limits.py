"""The REST gate's rules in isolation: routes and majors, buckets learned from headers, the fair
global limit, what a 429 pauses, invalid requests and deadlines. The gate's tests run on virtual
time: a wait takes no time, and ``advance`` moves the clock without waiting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gate import buckets
from gate.limits import RestLimits
from gate.route_stats import OTHER_ROUTES
from gate.routes import MAX_ROUTES, Route, route_of
from gate.waiting import GateRefusal
from tests.virtual_time import advance, virtual_clock

pytestmark = pytest.mark.virtual_time


@pytest.mark.parametrize(
    ("method", "path", "template", "major"),
    [
        ("post", "/channels/123/messages", "/channels/{channel_id}/messages", "channels/123"),
        ("GET", "/channels/1/messages/4", "/channels/{channel_id}/messages/{id}", "channels/1"),
        ("GET", "/guilds/9/members/8?limit=5", "/guilds/{guild_id}/members/{id}", "guilds/9"),
        ("POST", "/webhooks/7/tok-en/", "/webhooks/{webhook_id}/{token}", "webhooks/7/tok-en"),
        (
            "POST",
            "/interactions/5/abc/callback",
            "/interactions/{interaction_id}/{token}/callback",
            "interactions/5/abc",
        ),
        ("GET", "/gateway/bot", "/gateway/bot", ""),
        ("GET", "/users/@me", "/users/@me", ""),
        (
            "PUT",
            "/channels/1/messages/2/reactions/%F0%9F%98%80/@me",
            "/channels/{channel_id}/messages/{id}/reactions/{emoji}/@me",
            "channels/1",
        ),
    ],
)
def test_routes_and_their_major_parameters(
    method: str, path: str, template: str, major: str
) -> None:
    assert route_of(method, path) == Route(method.upper(), template, major)


def test_only_interaction_callbacks_are_exempt_from_the_global_limit() -> None:
    assert route_of("POST", "/interactions/5/abc/callback").exempt_from_global
    assert not route_of("POST", "/webhooks/7/tok").exempt_from_global
    assert not route_of("POST", "/channels/1/messages").exempt_from_global


def headers(limit: int, remaining: int, reset_after: float, bucket: str = "b1") -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset-After": str(reset_after),
        "X-RateLimit-Bucket": bucket,
    }


async def test_an_unknown_bucket_lets_one_request_learn_it_then_its_limit_holds() -> None:
    clock = virtual_clock()
    limits = RestLimits(50, clock=clock)
    first = await limits.admit(0, "POST", "/channels/1/messages")
    second = asyncio.create_task(limits.admit(1, "POST", "/channels/1/messages"))
    await advance(0.05)
    assert not second.done()  # waits for the first answer
    limits.settle(first, 200, headers(limit=2, remaining=1, reset_after=0.3))
    window_ends = clock() + 0.3
    settled = await asyncio.wait_for(second, 1)
    limits.settle(settled, 200, headers(limit=2, remaining=0, reset_after=0.25))
    await limits.admit(2, "POST", "/channels/1/messages")  # the window is spent: waits
    assert clock() == pytest.approx(window_ends)  # a later answer does not end it sooner
    # Another channel is another bucket: it waits only for the global limit's spacing.
    started = clock()
    await limits.admit(0, "POST", "/channels/2/messages")
    assert clock() - started == pytest.approx(limits.window / limits.global_limit)


async def test_the_global_limit_spaces_requests_and_workers_take_turns() -> None:
    clock = virtual_clock()
    limits = RestLimits(10, margin=0.0, clock=clock)
    order: list[int] = []
    times: list[float] = []

    async def send(worker: int, channel: int) -> None:
        admission = await limits.admit(worker, "GET", f"/channels/{channel}")
        order.append(worker)
        times.append(clock())
        limits.settle(admission, 200, {})

    # Worker 0 asks for 15 first, worker 1 for 5 after it: worker 1 is not served last.
    await asyncio.gather(
        *(send(0, channel) for channel in range(15)),
        *(send(1, channel) for channel in range(100, 105)),
    )
    # Never more than 10 in a second: a tenth of a second apart (on virtual time, never late).
    assert times == pytest.approx([times[0] + 0.1 * n for n in range(20)])
    assert order[1:11] == [0, 1] * 5  # after the first, the two workers alternate


async def test_workers_waiting_for_the_global_limit_share_one_wakeup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight workers flooding the limit: one timer for the next free slot, not one more for
    every worker that began waiting (each would fire at every slot while workers wait)."""
    loop = asyncio.get_running_loop()
    timers = 0
    call_at = loop.call_at

    def counted(when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        nonlocal timers
        timers += 1
        return call_at(when, callback, *args, context=context)

    monkeypatch.setattr(loop, "call_at", counted)
    limits = RestLimits(50, clock=virtual_clock())

    async def flood(worker: int) -> None:
        for n in range(25):
            admission = await limits.admit(worker, "POST", f"/channels/{worker}{n:03}/messages")
            limits.settle(admission, 200, {})

    await asyncio.gather(*(flood(worker) for worker in range(8)))
    # About two per admission: its deadline's timer and the wakeup of the slot it gets (398
    # here); a timer chain per waiting worker made 21,457.
    assert timers <= 3 * 8 * 25


async def test_a_shared_429_pauses_every_major_of_the_route_and_asks_for_a_retry() -> None:
    clock = virtual_clock()
    limits = RestLimits(50, clock=clock)
    admission = await limits.admit(0, "POST", "/channels/1/messages")
    shared = {**headers(5, 4, 1.0), "X-RateLimit-Scope": "shared", "Retry-After": "0.3"}
    assert limits.settle(admission, 429, shared)
    started = clock()
    await limits.admit(1, "POST", "/channels/2/messages")  # another channel, the same route
    assert clock() - started == pytest.approx(0.3)
    assert limits.invalid_count() == 0  # shared 429s do not count towards a ban
    assert limits.routes["POST /channels/{channel_id}/messages"].got_429 == 1


async def test_a_global_429_pauses_everything() -> None:
    clock = virtual_clock()
    limits = RestLimits(50, clock=clock)
    admission = await limits.admit(0, "GET", "/users/@me")
    assert limits.settle(admission, 429, {"X-RateLimit-Global": "true", "Retry-After": "0.3"})
    started = clock()
    await limits.admit(1, "GET", "/guilds/1")
    assert clock() - started == pytest.approx(0.3)
    assert limits.invalid_count() == 1


async def test_a_request_that_cannot_get_a_turn_in_time_is_refused_with_the_reason() -> None:
    clock = virtual_clock()
    limits = RestLimits(50, max_wait=0.2, clock=clock)
    admission = await limits.admit(0, "POST", "/channels/1/messages")
    limits.settle(admission, 200, headers(limit=1, remaining=0, reset_after=30))
    started = clock()
    with pytest.raises(GateRefusal, match="is spent until its reset: not within 0 s"):
        await limits.admit(0, "POST", "/channels/1/messages")
    assert clock() == started  # refused at once: the reset is past the deadline
    assert limits.refused == 1


async def test_invalid_requests_slow_the_gate_down_then_stop_it_before_a_ban() -> None:
    clock = virtual_clock()
    limits = RestLimits(
        50, invalid_limit=20, slowdown_at=0.5, refuse_at=0.9, margin=0.0, clock=clock
    )
    for channel in range(10):
        admission = await limits.admit(0, "GET", f"/channels/{channel}")
        limits.settle(admission, 403, {})
    assert limits.invalid_count() == 10
    times: list[float] = []
    for channel in range(100, 111):  # 10 a second now, not 50: the eleventh waits a second
        admission = await limits.admit(0, "GET", f"/channels/{channel}")
        times.append(clock())
        limits.settle(admission, 200, {})
    assert times[10] - times[0] >= 1.0 - 1e-9
    for channel in range(8):
        admission = await limits.admit(0, "GET", f"/guilds/{channel}")
        limits.settle(admission, 401, {})
    with pytest.raises(GateRefusal, match=r"18 invalid requests .* Discord bans at 20"):
        await limits.admit(0, "GET", "/users/@me")


async def test_routes_that_discord_says_share_a_bucket_share_its_limit() -> None:
    clock = virtual_clock()
    limits = RestLimits(50, clock=clock)
    first = await limits.admit(0, "GET", "/channels/1/messages/5")
    limits.settle(first, 200, headers(limit=1, remaining=0, reset_after=0.3, bucket="same"))
    window_ends = clock() + 0.3
    other = await limits.admit(0, "PATCH", "/channels/1/messages/5")
    limits.settle(other, 200, headers(limit=1, remaining=0, reset_after=0.3, bucket="same"))
    await limits.admit(0, "GET", "/channels/1/messages/6")
    assert clock() == pytest.approx(window_ends)  # the first route's window, not its own


async def test_each_new_window_learns_its_end_from_its_first_answer() -> None:
    clock = virtual_clock()
    limits = RestLimits(50, clock=clock)
    first = await limits.admit(0, "POST", "/channels/1/messages")
    limits.settle(first, 200, headers(limit=1, remaining=0, reset_after=0.2))
    for _ in range(3):  # window after window: each waits for the previous one's end
        started = clock()
        admission = await asyncio.wait_for(limits.admit(0, "POST", "/channels/1/messages"), 1)
        assert clock() - started == pytest.approx(0.2)
        limits.settle(admission, 200, headers(limit=1, remaining=0, reset_after=0.2))


async def test_tables_stay_bounded_under_made_up_paths_and_one_time_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = RestLimits(10_000, margin=0.0, clock=virtual_clock())
    most = 0
    for n in range(3 * MAX_ROUTES):
        # an interaction token per call, a reaction per emoji, a path nobody uses
        for path in (
            f"/interactions/{n + 1}/token{n}/callback",
            f"/channels/1/messages/2/reactions/emoji{n}/@me",
            f"/made/up/segment{n}",
        ):
            admission = await limits.admit(0, "POST", path)
            limits.settle(admission, 204, {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4",
                                           "X-RateLimit-Reset-After": "0"})  # fmt: skip
            most = max(most, limits.bucket_count)
    # 1,200 buckets of their own were made; a burst is swept as their number doubles.
    assert most <= 2 * MAX_ROUTES + 3
    assert len(limits.routes) <= MAX_ROUTES + 1  # the rest counted as one: "other routes"
    assert limits.routes[OTHER_ROUTES].requests > 0
    assert "POST /channels/{channel_id}/messages/{id}/reactions/{emoji}/@me" in limits.routes
    monkeypatch.setattr(buckets, "SWEEP_INTERVAL", 0.0)
    admission = await limits.admit(0, "GET", "/gateway/bot")  # a later call sweeps
    limits.settle(admission, 200, {})
    assert limits.bucket_count <= 2
