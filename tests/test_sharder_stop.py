"""A graceful stop always ends, and soon: also while shards wait for their turn to identify,
and while they are in hikari's reconnect back-off with Discord unreachable."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psutil

from tests.sharder_run import RunningSharder, running_sharder

# Well below the tests' shutdown_timeout (8 s), after which the master kills what is left.
PROMPT = 4.0


async def stop_and_time(run: RunningSharder) -> float:
    started = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    while run.process.poll() is None:
        assert time.monotonic() - started < 20, "the master did not exit"
        await asyncio.sleep(0.05)
    assert run.process.returncode == 0
    return time.monotonic() - started


async def test_a_stop_ends_shards_still_waiting_for_their_turn_to_identify() -> None:
    # Two sessions left until a reset a minute away: two shards wait in the identify gate.
    spent = "max_concurrency = 4\nsession_start_limit = 2\nsession_start_reset = 60.0\n"
    async with running_sharder(shards=4, workers=2, guilds=8, simulator=spent) as run:
        await run.wait_until(
            lambda s: sum(shard["state"] == "waiting_identify" for shard in s["shards"]) == 2
        )
        took = await stop_and_time(run)
        assert took < PROMPT, f"stopping took {took:.1f} s"
        assert "did not stop within" not in run.log() and "not stopped in time" not in run.log()


async def test_a_stop_ends_shards_in_reconnect_back_off() -> None:
    async with running_sharder(shards=4, workers=2, guilds=8) as run:
        await run.wait_ready()
        master = psutil.Process(run.process.pid)
        [simulator] = [c for c in master.children() if "simulator" in " ".join(c.cmdline())]
        os.kill(simulator.pid, signal.SIGKILL)  # Discord gone: every shard backs off and retries
        await run.wait_until(lambda s: all(shard["state"] != "ready" for shard in s["shards"]))
        took = await stop_and_time(run)
        assert took < PROMPT, f"stopping took {took:.1f} s"
        assert "did not stop within" not in run.log() and "not stopped in time" not in run.log()


async def test_a_stop_before_the_children_said_hello_ends_them_too() -> None:
    async with running_sharder(shards=4, workers=2, guilds=8) as run:
        # Spawned, still importing: no child has said hello yet.
        await run.wait_until(
            lambda s: any(child["state"] == "spawning" for child in s["workers"] + s["compute"])
        )
        took = await stop_and_time(run)
        assert took < PROMPT, f"stopping took {took:.1f} s"
        assert "not stopped in time" not in run.log() and "IllegalTransition" not in run.log()
