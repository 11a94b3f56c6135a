"""The sharder end to end: ``python -m sharder start --simulate`` with real workers, real hikari
and the simulator; what a user of the reference bot and of ``ShardContext`` sees."""

from __future__ import annotations

import re
from collections import Counter

from simulator.child import call_control
from tests.sharder_run import running_sharder

SHARDS = 8
WORKERS = 4
GUILDS = 64


async def test_eight_shards_on_four_workers_serve_exactly_their_guilds_and_answer_commands() -> None:
    async with running_sharder(shards=SHARDS, workers=WORKERS, guilds=GUILDS) as sharder:
        status = await sharder.wait_ready()
        assert status["shard_count"] == SHARDS
        assert [w["shards"] for w in status["workers"]] == [[0, 1], [2, 3], [4, 5], [6, 7]]
        assert all(w["state"] == "ready" and w["pid"] for w in status["workers"])

        sim = await sharder.simulator()
        world = await call_control(sim.control_url, "GET", "/world")
        expected = Counter((guild_id >> 22) % SHARDS for guild_id in world["guild_ids"])
        assert {s["id"]: s["guilds"] for s in status["shards"]} == dict(expected)
        sessions = await call_control(sim.control_url, "GET", "/sessions")
        assert sorted((s["shard_id"], s["guilds"]) for s in sessions) == sorted(expected.items())

        guild_id = world["guild_ids"][5]
        ping = await sharder.ask("!ping", guild_id)
        assert re.fullmatch(rf"pong from shard {(guild_id >> 22) % SHARDS} \(latency .+\)", ping)

        members = GUILDS * 26  # 25 members and the bot in every guild
        stats = await sharder.ask("!stats")
        assert stats.startswith(f"guilds: {GUILDS}, members: {members}, shards: {SHARDS}/{SHARDS}")

        for target in world["guild_ids"][:SHARDS]:
            where = await sharder.ask(f"!where {target}", world["guild_ids"][0])
            shard_id = (target >> 22) % SHARDS
            assert f"({target}) is on shard {shard_id}, worker {shard_id // 2}" in where
