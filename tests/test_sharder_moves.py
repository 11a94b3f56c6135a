"""Moving a shard to another worker: its session handed over by RESUME within the running
processes, its guilds' shared state with it. Under a steady stream of ``!ping`` nothing is lost,
nothing answered twice, and no session is started anew."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from simulator.child import call_control
from tests.changes import gateway_counts, through_traffic
from tests.sharder_run import run_cli, running_sharder
from tests.test_sharder_handoff import STRICT, replies_to

SHARDS = 4
GUILDS = 16


def owners(status: dict[str, Any]) -> dict[int, int]:
    return {shard["id"]: shard["worker"] for shard in status["shards"]}


async def test_a_moved_shard_resumes_on_its_new_worker_under_traffic_losing_nothing() -> None:
    async with running_sharder(shards=SHARDS, workers=2, guilds=GUILDS, simulator=STRICT) as run:
        status = await run.wait_ready()
        assert owners(status) == {0: 0, 1: 0, 2: 1, 3: 1}
        pids = [worker["pid"] for worker in status["workers"]]
        sim = await run.simulator()
        world = await call_control(sim.control_url, "GET", "/world")
        guild = next(g for g in world["guild_ids"] if (g >> 22) % SHARDS == 1)
        await run.command(
            {"command": "state_set", "scope": "guild_config", "key": str(guild), "fields": {"p": 1}}
        )
        before = await gateway_counts(run)
        moved = await through_traffic(run, "move", "1", "1")
        assert "moved shard 1 from worker 0 to worker 1" in moved.command.stdout
        assert moved.doubles == 0
        assert moved.gateway == {"identifies": 0, "resumes": 1, "identify_violations": 0}

        status = await run.status()
        assert status["move"]["state"] == "done"
        assert owners(status) == {0: 0, 1: 1, 2: 1, 3: 1}
        assert [worker["shards"] for worker in status["workers"]] == [[0], [1, 2, 3]]
        assert [worker["pid"] for worker in status["workers"]] == pids  # no process replaced

        # The guild's commands and shared state are served by its new worker now.
        reply = await run.reply_to(await run.say("!ping", guild_id=guild))
        assert reply.startswith("pong from shard 1")
        echo = await run.ask(f"!call {guild} echo", guild_id=guild)
        assert json.loads(echo.removeprefix("ok "))["pid"] == pids[1]
        assert await run.ask(f"!call {guild} config", guild_id=guild) == 'ok {"p": 1}'

        # And back again.
        back = await asyncio.to_thread(run_cli, "move", "1", "0", cwd=run.directory)
        assert back.returncode == 0, back.stderr
        status = await run.wait_ready()
        assert owners(status) == {0: 0, 1: 0, 2: 1, 3: 1}
        assert (await gateway_counts(run))["identifies"] == before["identifies"]


async def test_a_move_that_cannot_be_done_is_refused_with_the_reason() -> None:
    async with running_sharder(shards=SHARDS, workers=2, guilds=GUILDS) as run:
        await run.wait_ready()
        for arguments, error in (
            (("7", "1"), "no shard 7; shards are 0-3"),
            (("1", "5"), "no worker 5; workers are 0, 1"),
            (("1", "0"), "shard 1 is on worker 0 already"),
        ):
            refused = await asyncio.to_thread(run_cli, "move", *arguments, cwd=run.directory)
            assert refused.returncode == 1
            assert error in refused.stderr


async def test_rebalance_by_events_moves_a_shard_off_the_busy_worker_on_its_own() -> None:
    rebalance = 'rebalance = "events"\nrebalance_threshold = 1.5\nrebalance_after = 2.0\n'
    async with running_sharder(
        shards=SHARDS, workers=2, guilds=GUILDS, simulator=STRICT, sharding=rebalance
    ) as run:
        await run.wait_ready()
        sim = await run.simulator()
        world = await call_control(sim.control_url, "GET", "/world")
        # Traffic for worker 0's shards only: it carries all the events.
        busy = [g | 0x100 for g in world["guild_ids"] if (g >> 22) % SHARDS in (0, 1)]
        sent: list[dict[str, Any]] = []
        moved: dict[str, Any] | None = None
        for n in range(400):
            body = {"content": "!ping", "channel_id": busy[n % len(busy)]}
            sent.append(await call_control(sim.control_url, "POST", "/messages", body))
            await asyncio.sleep(0.03)
            if n % 20 == 0:
                moved = (await run.status())["move"]
                if moved is not None and moved["state"] == "done":
                    break
        assert moved is not None and moved["state"] == "done", moved
        assert moved["why"].startswith("rebalance: worker 0 carried"), moved
        assert moved["source"] == 0 and moved["target"] == 1 and moved["shard"] in (0, 1)
        status = await run.wait_ready()
        assert sorted(owners(status).values()) == [0, 1, 1, 1]
        counts = await replies_to(run, sent)
        assert sum(count - 1 for count in counts.values() if count > 1) == 0
        assert (await gateway_counts(run))["identifies"] == SHARDS  # the first start's only
