"""Live resharding: a new generation of shards with the new count identifies beside the old one
and fills its caches with its listeners muted; one cutover switches routing and bot code to it,
and the old sessions close. Under a steady stream of ``!ping`` every message is answered once,
by the generation its snowflake belongs to, and the identify rules hold."""

from __future__ import annotations

import asyncio
from typing import Any

from simulator.child import call_control
from tests.sharder_run import run_cli, running_sharder
from tests.test_sharder_handoff import STRICT, replies_to
from tests.test_sharder_rolling import gateway_counts, pings_until

GUILDS = 32


async def test_a_reshard_from_4_to_8_under_traffic_answers_every_ping_once() -> None:
    async with running_sharder(shards=4, workers=2, guilds=GUILDS, simulator=STRICT) as run:
        status = await run.wait_ready()
        old_pids = {worker["pid"] for worker in status["workers"]}
        sim = await run.simulator()
        world = await call_control(sim.control_url, "GET", "/world")
        guild = world["guild_ids"][5]
        await run.command(
            {"command": "state_set", "scope": "guild_config", "key": str(guild), "fields": {"p": 2}}
        )
        before = await gateway_counts(run)
        done, sent = asyncio.Event(), list[dict[str, Any]]()
        pinging = asyncio.create_task(pings_until(run, done, sent))
        await asyncio.sleep(1.0)
        resharded = await asyncio.to_thread(run_cli, "reshard", "8", cwd=run.directory)
        await asyncio.sleep(1.0)
        done.set()
        await pinging
        assert resharded.returncode == 0, resharded.stderr
        assert "resharded from 4 to 8 shards" in resharded.stdout
        assert "connecting" in resharded.stdout

        status = await run.wait_ready()
        assert status["shard_count"] == 8 and status["reshard"]["state"] == "done"
        assert [shard["id"] for shard in status["shards"]] == list(range(8))
        assert [worker["shards"] for worker in status["workers"]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
        assert not {worker["pid"] for worker in status["workers"]} & old_pids
        counts = await replies_to(run, sent)
        doubles = sum(count - 1 for count in counts.values() if count > 1)
        changes = {key: value - before[key] for key, value in (await gateway_counts(run)).items()}
        print(f"{len(sent)} pings over the reshard, {doubles} answered twice; {changes}")
        assert doubles == 0
        assert changes == {"identifies": 8, "resumes": 0, "identify_violations": 0}
        # Both generations got the guild's events while they ran side by side.
        seen = await call_control(sim.control_url, "GET", f"/dispatches?guild_id={guild}")
        assert seen["by_shard_count"].get("4", 0) > 0 and seen["by_shard_count"].get("8", 0) > 0

        # Served by the new generation: its shard, its worker, the guild's state with it.
        reply = await run.reply_to(await run.say("!ping", guild_id=guild))
        assert reply.startswith(f"pong from shard {(guild >> 22) % 8}")
        assert await run.ask(f"!call {guild} config", guild_id=guild) == 'ok {"p": 2}'
        sessions = await call_control(sim.control_url, "GET", "/sessions")
        assert {session["shard_count"] for session in sessions} == {8}  # the old ones ended
