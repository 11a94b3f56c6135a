"""Live resharding: a new generation of shards with the new count identifies beside the old one
and fills its caches with its listeners muted; one cutover switches routing and bot code to it,
and the old sessions close. Under a steady stream of ``!ping`` every message is answered once,
by the generation its snowflake belongs to, and the identify rules hold."""

from __future__ import annotations

import asyncio
from typing import Any

import psutil

from scripts.bench_chaos import snowflake_time
from simulator.child import call_control
from tests.changes import through_traffic
from tests.sharder_run import RunningSharder, run_cli, running_sharder
from tests.test_sharder_handoff import STRICT, replies_to

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
        resharded = await through_traffic(run, "reshard", "8")
        assert "resharded from 4 to 8 shards" in resharded.command.stdout
        assert "connecting" in resharded.command.stdout
        assert resharded.doubles == 0
        assert resharded.gateway == {"identifies": 8, "resumes": 0, "identify_violations": 0}

        status = await run.status()
        assert status["shard_count"] == 8 and status["reshard"]["state"] == "done"
        assert [shard["id"] for shard in status["shards"]] == list(range(8))
        assert [worker["shards"] for worker in status["workers"]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
        assert not {worker["pid"] for worker in status["workers"]} & old_pids
        # Both generations got the guild's events while they ran side by side.
        seen = await call_control(sim.control_url, "GET", f"/dispatches?guild_id={guild}")
        assert seen["by_shard_count"].get("4", 0) > 0 and seen["by_shard_count"].get("8", 0) > 0

        # Served by the new generation: its shard, its worker, the guild's state with it.
        reply = await run.reply_to(await run.say("!ping", guild_id=guild))
        assert reply.startswith(f"pong from shard {(guild >> 22) % 8}")
        assert await run.ask(f"!call {guild} config", guild_id=guild) == 'ok {"p": 2}'
        sessions = await call_control(sim.control_url, "GET", "/sessions")
        assert {session["shard_count"] for session in sessions} == {8}  # the old ones ended


async def test_a_reshard_that_fails_before_the_cutover_rolls_back_and_the_old_shards_serve_on() -> (
    None
):
    # 32 guilds on 2 shards is more than the simulator lets a shard hold: the new generation's
    # sessions are closed with 4011 and its workers fail.
    crowded = STRICT + "max_guilds_per_shard = 10\n"
    async with running_sharder(shards=4, workers=2, guilds=GUILDS, simulator=crowded) as run:
        status = await run.wait_ready()
        pids = [worker["pid"] for worker in status["workers"]]
        children = len(psutil.Process(run.process.pid).children())
        resharded = await asyncio.to_thread(run_cli, "reshard", "2", cwd=run.directory)
        assert resharded.returncode == 1
        assert "resharding from 4 to 2 shards failed" in resharded.stderr
        assert "rolled back, 4 shards serve on" in resharded.stderr
        status = await run.wait_until(lambda s: len(s["workers"]) == 2 and s["state"] == "running")
        assert status["shard_count"] == 4 and status["reshard"]["state"] == "failed"
        assert [worker["pid"] for worker in status["workers"]] == pids
        assert "pong" in await run.ask("!ping")
        sim = await run.simulator()
        # The new generation's processes are gone, not left beside the old one.
        await run.wait_until(lambda s: len(psutil.Process(run.process.pid).children()) == children)
        sessions = await call_control(sim.control_url, "GET", "/sessions")
        assert {session["shard_count"] for session in sessions} == {4}


async def reshard_by_itself(run: RunningSharder, why: str) -> dict[str, Any]:
    """Wait for a reshard the sharder began on its own, to its end."""
    status = await run.wait_until(
        lambda s: s["reshard"] is not None and s["reshard"]["state"] != "resharding", 60
    )
    assert status["reshard"]["state"] == "done", status["reshard"]
    assert why in status["reshard"]["why"], status["reshard"]
    return await run.wait_ready()


async def pings_to_the_new_generation(
    run: RunningSharder, guilds: list[int], sent: list[dict[str, Any]]
) -> None:
    """Pings, from the moment the new generation has a session, to guilds on its shards that
    are connected, until the reshard ends."""
    sim = await run.simulator()
    while (await run.status())["reshard"]["state"] == "resharding":
        sessions = await call_control(sim.control_url, "GET", "/sessions")
        up = {s["shard_id"] for s in sessions if s["shard_count"] == 8 and s["connected"]}
        targets = [guild for guild in guilds if (guild >> 22) % 8 in up]
        if targets:
            body = {"content": "!ping", "guild_id": targets[len(sent) % len(targets)]}
            sent.append(await call_control(sim.control_url, "POST", "/messages", body))
        await asyncio.sleep(0.05)


async def test_discord_closing_shards_with_4011_reshards_to_its_recommendation() -> None:
    crowded = STRICT + "max_guilds_per_shard = 10\nguilds_per_shard = 8\n"
    async with running_sharder(shards=4, workers=2, guilds=GUILDS, simulator=crowded) as run:
        await run.wait_ready()
        sim = await run.simulator()
        guilds = (await call_control(sim.control_url, "GET", "/world"))["guild_ids"]
        # 16 guilds more: 12 a shard, past the 10 a shard may hold.
        added = await call_control(sim.control_url, "POST", "/guilds", {"count": 16})
        assert added["sessions_closed"] == 4
        # The old shards are down: what users say from now on reaches only the new generation,
        # muted until the cutover; it sets those messages aside and runs them after it.
        await run.wait_until(lambda s: s["reshard"] is not None)
        sent: list[dict[str, Any]] = []
        await pings_to_the_new_generation(run, guilds, sent)
        status = await reshard_by_itself(run, "with 4011 (sharding required)")
        # 48 guilds at 8 a shard: 6, rounded up to the identify buckets (4): 8.
        assert status["shard_count"] == 8 and status["reshard"]["to_shards"] == 8
        counts = await replies_to(run, sent)
        assert all(count == 1 for count in counts.values()), counts
        cutover = status["reshard"]["cutover_at"]
        caught_up = [m for m in sent if snowflake_time(m["id"]) < cutover]
        print(f"{len(sent)} pings, {len(caught_up)} before the cutover: all answered once")
        assert caught_up, "no ping reached the new generation before the cutover"
        guild = added["ids"][0]
        reply = await run.reply_to(await run.say("!ping", guild_id=guild))
        assert reply.startswith(f"pong from shard {(guild >> 22) % 8}")


async def test_a_recommendation_past_reshard_at_reshards_on_its_own() -> None:
    async with running_sharder(
        shards=4,
        workers=2,
        guilds=GUILDS,
        simulator=STRICT + "guilds_per_shard = 8\n",
        sharding="reshard_at = 1.5\nreshard_check_interval = 1.0\n",
    ) as run:
        await run.wait_ready()
        sim = await run.simulator()
        await asyncio.sleep(2.5)  # looked twice: 4 recommended for 4, nothing to do
        assert (await run.status())["reshard"] is None
        await call_control(sim.control_url, "POST", "/guilds", {"count": 24})  # 56: 7 shards
        status = await reshard_by_itself(run, "Discord recommends 7 shards for 4")
        assert status["shard_count"] == 8
