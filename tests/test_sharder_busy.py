"""Busy is not hung: a worker whose event loop is held for seconds by a large guild load is
shown busy and left alone; a stopped process is still replaced after ``heartbeat_misses`` beats.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tests.sharder_run import running_sharder

# Seconds. Three beats (0.9 s) are far shorter than the load below holds the loop, and far
# longer than any single C call of it holds the interpreter (the liveness thread waits for it).
BEAT = 0.3


def loaded(status: dict[str, Any]) -> int:
    return sum(shard["guilds_loaded"] for shard in status["shards"])


async def test_a_worker_busy_loading_large_guilds_is_shown_busy_and_not_killed() -> None:
    # hikari builds a guild's GUILD_CREATE in one go: 50,000 members hold the loop for seconds
    # each, without a turn, where a heartbeat answered by the loop would go unanswered.
    async with running_sharder(
        shards=1,
        workers=1,
        guilds=2,
        heartbeat_interval=BEAT,
        simulator="members_per_guild = 50000",
    ) as sharder:
        longest_busy_ms = 0.0

        def watch(status: dict[str, Any]) -> bool:
            nonlocal longest_busy_ms
            worker = status["workers"][0]
            if worker["state"] == "busy":
                longest_busy_ms = max(longest_busy_ms, worker["loop_lag_ms"])
            return loaded(status) == 2

        status = await sharder.wait_until(watch, timeout=120)
        assert longest_busy_ms > 3 * BEAT * 1000, f"never busy for 3 beats: {longest_busy_ms} ms"
        worker = status["workers"][0]
        assert worker["restarts"] == 0 and worker["last_exit"] is None, worker
        assert "worker 0 is busy" in sharder.log()


async def test_a_loop_that_does_not_turn_for_loop_stall_timeout_is_hung() -> None:
    async with running_sharder(
        shards=2,
        workers=2,
        guilds=8,
        heartbeat_interval=0.1,
        supervisor="loop_stall_timeout = 1.5",
    ) as sharder:
        status = await sharder.wait_ready()
        sim = await sharder.simulator()
        world = await sim.control("GET", "/world")
        guild = next(g for g in world["guild_ids"] if (g >> 22) % 2 == 1)  # worker 1's shard
        before = status["workers"][1]["pid"]
        # Asked by worker 0's !call: the handler blocks worker 1's loop for 30 s.
        other = next(g for g in world["guild_ids"] if (g >> 22) % 2 == 0)
        await sharder.say(f"!call {guild} block 30 40", other)
        replaced = await sharder.wait_until(
            lambda s: s["workers"][1]["pid"] not in (None, before), 15
        )
        last_exit = replaced["workers"][1]["last_exit"]
        assert last_exit.startswith("hung: its event loop has not turned for"), last_exit
        assert replaced["workers"][0]["restarts"] == 0


async def test_a_stopped_worker_is_replaced_after_heartbeat_misses_beats() -> None:
    beat = 1.0
    async with running_sharder(shards=2, workers=2, guilds=8, heartbeat_interval=beat) as sharder:
        before = (await sharder.wait_ready())["workers"][0]
        os.kill(before["pid"], signal.SIGSTOP)
        stopped_at = time.monotonic()
        replaced = await sharder.wait_until(
            lambda s: s["workers"][0]["pid"] not in (None, before["pid"]), 15
        )
        elapsed = time.monotonic() - stopped_at
        assert replaced["workers"][0]["last_exit"].startswith("hung: 3 heartbeats unanswered")
        # Silent for 3 beats (its last stamp is at most a quarter beat old when it stopped),
        # seen at the next heartbeat pass, then the 0.2 s backoff: no sooner, not much later.
        assert 3 * beat - beat / 4 <= elapsed <= 4 * beat + 0.2 + 1.0, elapsed
