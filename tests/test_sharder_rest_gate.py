"""The REST gate end to end: every worker's hikari calls the simulator's REST API through the
gate process, and the simulator counts what reaches it (429s included)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from gate.global_limit import GLOBAL_MARGIN
from simulator.child import call_control
from tests.sharder_run import RunningSharder, running_sharder

MESSAGES = "/channels/{channel_id}/messages"
FLOOD_TIMEOUT = 240.0


async def stats(sharder: RunningSharder) -> dict[str, Any]:
    sim = await sharder.simulator()
    answer: dict[str, Any] = await call_control(sim.control_url, "GET", "/stats")
    return answer


async def flood_everywhere(sharder: RunningSharder, order: dict[str, Any]) -> dict[str, Any]:
    """Every shard floods at once (``ctx.broadcast``); each shard's outcome."""
    payload = json.dumps(order, separators=(",", ":"))
    answer = await sharder.reply_to(
        await sharder.say(f"!all flood {payload} {FLOOD_TIMEOUT}"), timeout=FLOOD_TIMEOUT + 10
    )
    outcomes: dict[str, Any] = json.loads(answer)
    assert all(outcome["ok"] for outcome in outcomes.values()), outcomes
    return outcomes


async def eight_workers_flood(gate: bool) -> tuple[int, float, dict[str, Any]]:
    """8 workers fire 500 messages each, 16 in flight per worker, against a global limit of
    50/s: the 429s the simulator answered, the messages' rate, and the gate's status."""
    async with running_sharder(
        shards=8,
        workers=8,
        guilds=64,
        # Route buckets out of the way, so that the global limit is what binds (hikari sends
        # a route's first call to each new channel through one shared "unknown" bucket, which
        # a spent channel bucket would stall).
        simulator="rest_global_limit = 50\nrest_route_limit = 1000",
        rest=f"gate = {'true' if gate else 'false'}",
    ) as sharder:
        await sharder.wait_ready()
        before = await stats(sharder)
        outcomes = await flood_everywhere(sharder, {"count": 500, "window": 16})
        after = await stats(sharder)
        # The arrival rate, by the clock in the ids Discord (the simulator) gave the messages.
        values = [outcome["value"] for outcome in outcomes.values()]
        first = min(value["first_id"] for value in values) >> 22
        last = max(value["last_id"] for value in values) >> 22
        rate = (4000 - 1) / ((last - first) / 1000)
        assert [outcome["value"]["sent"] for outcome in outcomes.values()] == [500] * 8
        assert after["bot_messages"] - before["bot_messages"] >= 4000
        # The gate reports with each heartbeat: wait for the one that has every message.
        status = await sharder.wait_until(lambda s: s["rest_gate"] is None or sent(s) >= 4000, 5)
        return after["rest_429"] - before["rest_429"], rate, status


def sent(status: dict[str, Any]) -> int:
    routes = status["rest_gate"]["routes"]
    return sum(route["requests"] for route in routes if route["route"] == f"POST {MESSAGES}")


async def test_eight_workers_flooding_through_the_gate_keep_the_rate_and_all_but_no_429() -> None:
    got_429, rate, status = await eight_workers_flood(gate=True)
    print(f"through the gate: {got_429} 429s, {rate:.1f} messages/s")
    # The gate spaces requests by its own clock; the simulator counts them as its loop takes them
    # in, on the same 2 saturated cores as 8 workers. With the test suite's other half running
    # beside it, that trip's jitter has passed the 80 ms margin for 1 request in 4,000, and with
    # other suites running beside that, for 7 in 4,000 (without the gate: about 28,000 429s).
    assert got_429 <= 12
    assert rate >= 0.95 * 50 / (1 + GLOBAL_MARGIN)  # close to the gate's own ceiling
    gate = status["rest_gate"]
    assert sent(status) >= 4000 and gate["got_429"] <= 4 and gate["invalid_10min"] <= 4


async def test_without_the_gate_the_same_flood_collects_429s() -> None:
    got_429, rate, status = await eight_workers_flood(gate=False)
    print(f"without the gate: {got_429} 429s, {rate:.1f} messages/s")
    assert status["rest_gate"] is None
    assert got_429 > 0


async def test_a_route_limit_below_the_global_one_is_held_across_workers() -> None:
    async with running_sharder(
        shards=8,
        workers=8,
        guilds=16,
        simulator="rest_route_limit = 5\nrest_route_window = 1.0",
    ) as sharder:
        await sharder.wait_ready()
        sim = await sharder.simulator()
        channel = (await call_control(sim.control_url, "POST", "/messages", {"content": "hi"}))[
            "channel_id"
        ]
        before = await stats(sharder)
        started = time.monotonic()
        await flood_everywhere(sharder, {"count": 3, "window": 3, "channel": channel})
        elapsed = time.monotonic() - started
        after = await stats(sharder)
        assert after["rest_429"] - before["rest_429"] == 0
        assert after["bot_messages"] - before["bot_messages"] >= 24
        assert elapsed >= 24 / 5 - 1  # five per second into the one channel, after a full window


async def test_a_shared_429_pauses_the_route_for_every_worker_once() -> None:
    async with running_sharder(shards=4, workers=4, guilds=16) as sharder:
        await sharder.wait_ready()
        sim = await sharder.simulator()
        guild_ids = (await call_control(sim.control_url, "GET", "/world"))["guild_ids"]
        before = await stats(sharder)
        forced = {"method": "POST", "route": MESSAGES, "retry_after": 2.0}
        await call_control(sim.control_url, "POST", "/ratelimits/shared", forced)
        started = time.monotonic()
        # One worker meets the 429 first (its reply waits out the pause)...
        first = asyncio.create_task(sharder.ask("!ping", guild_ids[0], timeout=20))
        await sharder.wait_until(lambda status: status["rest_gate"]["got_429"] == 1, 10)
        # ...then every worker sends while the route is paused.
        outcomes = await flood_everywhere(sharder, {"count": 3, "window": 3})
        assert (await first).startswith("pong from shard")
        elapsed = time.monotonic() - started
        after = await stats(sharder)
        assert after["rest_shared_429"] - before["rest_shared_429"] == 1
        assert after["rest_429"] - before["rest_429"] == 1
        assert sum(outcome["value"]["sent"] for outcome in outcomes.values()) == 12
        assert elapsed >= 2.0
        gate = (await sharder.status())["rest_gate"]
        assert gate["invalid_10min"] == 0  # a shared 429 does not count towards a ban


async def test_uploads_pass_through_the_gate_intact() -> None:
    async with running_sharder(shards=2, workers=1, guilds=4) as sharder:
        await sharder.wait_ready()
        for size in (50_000, 3_000_000):  # read whole, and streamed (above 1 MiB)
            injected = await sharder.say(f"!upload {size}")
            reply = await sharder.reply_message(injected)
            data = await sharder.download(reply["attachments"][0]["url"])
            assert len(data) == size
            assert hashlib.sha256(data).hexdigest() == reply["content"]
