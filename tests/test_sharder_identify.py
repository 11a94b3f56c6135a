"""The identify gate across processes, against the simulator in strict mode: every IDENTIFY of
every worker, first or forced again, keeps Discord's buckets and windows."""

from __future__ import annotations

import asyncio
import math
import time

from simulator.child import call_control
from tests.sharder_run import running_sharder

SHARDS = 16
WORKERS = 4
MAX_CONCURRENCY = 4
WINDOW = 0.5
STRICT = f"max_concurrency = {MAX_CONCURRENCY}\nidentify_window = {WINDOW}\nstrict = true\n"


async def test_sixteen_shards_on_four_workers_identify_without_a_violation() -> None:
    async with running_sharder(shards=SHARDS, workers=WORKERS, guilds=64, simulator=STRICT) as run:
        await run.wait_ready()
        started = await run.wait_until(lambda s: s["shards_ready_s"] is not None)
        # Four shards per bucket, one IDENTIFY per bucket per window: Discord's bound is four
        # windows once the processes are up; the master times both from its own clock.
        bound = math.ceil(SHARDS / MAX_CONCURRENCY) * WINDOW
        connecting = started["shards_ready_s"] - started["workers_connected_s"]
        assert connecting <= bound * 1.15, (
            started["workers_connected_s"],
            started["shards_ready_s"],
        )
        sim = await run.simulator()
        stats = await call_control(sim.control_url, "GET", "/stats")
        assert stats["identifies"] == SHARDS
        assert stats["identify_violations"] == 0
        assert stats["close_codes"] == {}  # strict: a violation would have closed a shard

        # Forced re-identifies: a non-resumable INVALID_SESSION on a whole bucket at once, and a
        # session ended by the server (4009), all go through the gate again.
        for shard_id in (0, 4, 8, 12):
            await call_control(sim.control_url, "POST", f"/shards/{shard_id}/invalid-session")
        await call_control(sim.control_url, "POST", "/shards/1/close", {"code": 4009})

        async def all_back() -> bool:
            stats = await call_control(sim.control_url, "GET", "/stats")
            return bool(stats["identifies"] == SHARDS + 5 and stats["sessions_active"] == SHARDS)

        deadline = time.monotonic() + 30
        while not await all_back():
            assert time.monotonic() < deadline, "the shards did not identify again"
            await asyncio.sleep(0.1)
        stats = await call_control(sim.control_url, "GET", "/stats")
        assert stats["identify_violations"] == 0
        await run.wait_ready()


async def test_a_spent_session_budget_makes_shards_wait_for_the_reset() -> None:
    budget = (
        "max_concurrency = 4\nidentify_window = 0.2\n"
        "session_start_limit = 2\nsession_start_reset = 3.0\nstrict = true\n"
    )
    async with running_sharder(shards=4, workers=2, guilds=8, simulator=budget) as run:
        waiting = await run.wait_until(
            lambda s: (
                sorted(shard["state"] for shard in s["shards"])
                == ["ready", "ready", "waiting_identify", "waiting_identify"]
            ),
            # The two queued shards wait about 3 s (the budget refills 3 s after the first
            # IDENTIFY), long enough to be seen; the bound only covers a slow start-up.
            timeout=20,
        )
        queued = [s for s in waiting["shards"] if s["state"] == "waiting_identify"]
        assert all(shard["identify_queue"] is not None for shard in queued)
        await run.wait_ready(timeout=30)
        sim = await run.simulator()
        stats = await call_control(sim.control_url, "GET", "/stats")
        assert stats["identifies"] == 4
        assert stats["session_budget_violations"] == 0 and stats["identify_violations"] == 0
