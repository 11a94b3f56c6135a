"""Session handoff: a worker's shards RESUME their gateway sessions in its next process, so
that Discord replays what the outage missed, and the handled-event ledger keeps bot code from
seeing again what it handled before. Under a steady stream of ``!ping``, killing a worker or
restarting it answers every message exactly once and starts no new session."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

from simulator.child import call_control
from tests.sharder_run import RunningSharder, run_cli, running_sharder

SHARDS = 4
# Roomy REST buckets: a new process's hikari learns them afresh, and the replayed burst of
# replies would otherwise trickle out at Discord's five per channel per five seconds.
STRICT = "max_concurrency = 4\nidentify_window = 0.5\nstrict = true\nrest_route_limit = 1000\n"
STREAM_INTERVAL = 0.04
STREAM_LENGTH = 100


async def stream_pings(
    run: RunningSharder, channels: list[int], sent: list[dict[str, Any]]
) -> None:
    sim = await run.simulator()
    for n in range(STREAM_LENGTH):
        body = {"content": "!ping", "channel_id": channels[n % len(channels)]}
        sent.append(await call_control(sim.control_url, "POST", "/messages", body))
        await asyncio.sleep(STREAM_INTERVAL)


async def replies_to(run: RunningSharder, sent: list[dict[str, Any]]) -> Counter[int]:
    """How many replies each injected message got, once every one has at least one."""
    sim = await run.simulator()
    deadline = time.monotonic() + 60
    while True:
        messages = await call_control(sim.control_url, "GET", "/messages")
        counts = Counter(
            int(message["message_reference"]["message_id"])
            for message in messages
            if message["message_reference"] and message["content"].startswith("pong")
        )
        missing = [message["id"] for message in sent if counts[message["id"]] == 0]
        if not missing:
            return counts
        assert time.monotonic() < deadline, f"{len(missing)} of {len(sent)} pings never answered"
        await asyncio.sleep(0.2)


async def victim_channels(run: RunningSharder, shards: set[int]) -> list[int]:
    sim = await run.simulator()
    world = await call_control(sim.control_url, "GET", "/world")
    guilds = [g for g in world["guild_ids"] if (g >> 22) % SHARDS in shards]
    # Channel ids are the guild's id with 0x100 + n in the low bits (see simulator.world).
    return [guild | (0x100 + n) for guild in guilds for n in range(3)]


async def outage(
    run: RunningSharder, interrupt: Any
) -> tuple[Counter[int], list[dict[str, Any]], dict[str, Any]]:
    status = await run.wait_ready()
    sim = await run.simulator()
    before = await call_control(sim.control_url, "GET", "/stats")
    victim = status["workers"][1]
    sent: list[dict[str, Any]] = []
    streaming = asyncio.create_task(stream_pings(run, await victim_channels(run, {2, 3}), sent))
    await asyncio.sleep(STREAM_LENGTH * STREAM_INTERVAL / 3)
    await interrupt(victim)
    await streaming
    await run.wait_ready()
    counts = await replies_to(run, sent)
    after = await call_control(sim.control_url, "GET", "/stats")
    changes = {
        key: after[key] - before[key] for key in ("identifies", "resumes", "identify_violations")
    }
    duplicates = sum(count - 1 for count in counts.values() if count > 1)
    print(f"{len(sent)} pings, none lost, {duplicates} answered twice (replayed); {changes}")
    assert duplicates == 0, f"{duplicates} pings answered twice"
    return counts, sent, changes


async def test_kill_9_of_a_worker_resumes_its_sessions_and_loses_no_message() -> None:
    async with running_sharder(shards=SHARDS, workers=2, guilds=16, simulator=STRICT) as run:

        async def kill(victim: dict[str, Any]) -> None:
            os.kill(victim["pid"], signal.SIGKILL)

        _, sent, changes = await outage(run, kill)
        assert len(sent) == STREAM_LENGTH
        assert changes == {"identifies": 0, "resumes": 2, "identify_violations": 0}


async def test_a_killed_workers_shards_resume_together_not_one_identify_window_apart() -> None:
    # One identify bucket and a 3 s window: hikari's own start-up would bring a worker's two
    # shards back a window apart. Resumes take no identify slot, so they come back together.
    window = 3.0
    one_bucket = f"max_concurrency = 1\nidentify_window = {window}\nstrict = true\n"
    async with running_sharder(shards=4, workers=2, guilds=8, simulator=one_bucket) as run:
        status = await run.wait_ready(timeout=60)
        victim = status["workers"][1]["pid"]
        os.kill(victim, signal.SIGKILL)
        await run.wait_until(lambda s: s["workers"][1]["pid"] not in (None, victim), 10)
        ready_at: dict[int, float] = {}
        deadline = time.monotonic() + 20
        while len(ready_at) < 2 and time.monotonic() < deadline:
            for shard in (await run.status())["shards"]:
                if shard["worker"] == 1 and shard["state"] == "ready":
                    ready_at.setdefault(shard["id"], time.monotonic())
            await asyncio.sleep(0.02)
        assert len(ready_at) == 2, f"not both back: {ready_at}"
        assert max(ready_at.values()) - min(ready_at.values()) < window / 2
        stats = await call_control((await run.simulator()).control_url, "GET", "/stats")
        assert stats["resumes"] == 2 and stats["identify_violations"] == 0


async def test_restart_of_a_worker_hands_its_sessions_over_and_loses_no_message() -> None:
    async with running_sharder(shards=SHARDS, workers=2, guilds=16, simulator=STRICT) as run:

        async def restart(victim: dict[str, Any]) -> None:
            result = await asyncio.to_thread(run_cli, "restart", "1", cwd=run.directory)
            assert result.returncode == 0, result.stderr

        _, sent, changes = await outage(run, restart)
        assert len(sent) == STREAM_LENGTH
        assert changes == {"identifies": 0, "resumes": 2, "identify_violations": 0}
        status = await run.status()
        assert status["workers"][1]["restarts"] == 1
        assert {s["id"]: s["guilds"] for s in status["shards"]} == {0: 4, 1: 4, 2: 4, 3: 4}
