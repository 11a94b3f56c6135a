"""The real hikari GatewayBot against the simulator, started through its CLI, in every compression.

Four shards must all become READY, each must receive exactly the guilds the sharding formula
gives it, and a user's ``!ping`` must be answered through REST as a reply the simulator records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable

import hikari
import pytest
from hikari.api.shard import GatewayCompression
from hikari.impl import shard as shard_impl

from simulator.compression import NONE, ZLIB_STREAM, ZSTD_STREAM
from tests.simulation import SimulatorEndpoints, eventually, has_reply, simulator_process

SHARDS = 4
GUILDS = 24

HIKARI_COMPRESSION = {
    ZLIB_STREAM: GatewayCompression.TRANSPORT_ZLIB_STREAM,
    ZSTD_STREAM: GatewayCompression.TRANSPORT_ZSTD_STREAM,
    NONE: None,
}


def force_compression(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    # GatewayBot does not expose the shards' compression; its default argument is what it uses.
    defaults = shard_impl.GatewayShardImpl.__init__.__kwdefaults__
    assert defaults is not None and "compression" in defaults, "hikari moved shard compression"
    monkeypatch.setitem(defaults, "compression", HIKARI_COMPRESSION[mode])


def gateway_bot(sim: SimulatorEndpoints) -> hikari.GatewayBot:
    return hikari.GatewayBot(
        sim.token,
        rest_url=sim.rest_url,
        banner=None,
        suppress_optimization_warning=True,
        intents=hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT,
    )


@pytest.mark.parametrize("mode", [ZLIB_STREAM, ZSTD_STREAM, NONE])
async def test_four_hikari_shards_ready_with_their_guilds_and_answer_ping(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    force_compression(monkeypatch, mode)
    with simulator_process(
        "--guilds", str(GUILDS), "--shards", str(SHARDS), "--max-concurrency", str(SHARDS)
    ) as (sim, _):
        bot = gateway_bot(sim)
        guilds_by_shard: defaultdict[int, set[int]] = defaultdict(set)

        @bot.listen(hikari.GuildAvailableEvent)
        async def on_guild(event: hikari.GuildAvailableEvent) -> None:
            guilds_by_shard[event.shard.id].add(int(event.guild_id))

        @bot.listen(hikari.GuildMessageCreateEvent)
        async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
            if event.is_human and event.content == "!ping":
                await event.message.respond("pong", reply=True)

        await bot.start(shard_count=SHARDS)
        try:
            world = await sim.control("GET", "/world")
            expected: defaultdict[int, set[int]] = defaultdict(set)
            for guild_id in world["guild_ids"]:
                expected[(guild_id >> 22) % SHARDS].add(guild_id)
            assert len(expected) == SHARDS, "the world must spread guilds over every shard"

            await eventually(lambda: sum(map(len, guilds_by_shard.values())) >= GUILDS)
            assert {shard.id for shard in bot.shards.values() if shard.is_alive} == set(
                range(SHARDS)
            )
            assert dict(guilds_by_shard) == dict(expected)

            injected = await sim.control("POST", "/messages", {"content": "!ping"})

            await eventually(lambda: has_reply(sim, injected, "pong"))
            stats = await sim.stats()
            assert stats["compression"] == {mode: SHARDS}
            assert stats["identifies"] == SHARDS
            assert stats["identify_violations"] == 0
            assert stats["sessions_active"] == SHARDS
            assert stats["bot_messages"] == 1
        finally:
            await bot.close()


async def test_hikari_resumes_after_reconnect_and_a_dropped_connection_and_reidentifies_after_op9(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    force_compression(monkeypatch, ZLIB_STREAM)
    with simulator_process("--guilds", "2", "--identify-window", "0.2") as (sim, _):
        bot = gateway_bot(sim)
        seen: list[str] = []

        @bot.listen(hikari.GuildMessageCreateEvent)
        async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
            seen.append(event.content or "")

        async def resumes() -> int:
            return int((await sim.stats())["resumes"])

        await bot.start(shard_count=1)
        try:
            await sim.control("POST", "/shards/0/reconnect")
            await eventually(lambda: _at_least(resumes, 1), timeout=20)
            await sim.control("POST", "/shards/0/drop")
            await eventually(lambda: _at_least(resumes, 2), timeout=20)
            await sim.control("POST", "/shards/0/invalid-session", {"resumable": False})
            await eventually(lambda: _identifies_at_least(sim, 2), timeout=20)
            await sim.control("POST", "/messages", {"content": "still here"})
            await eventually(lambda: "still here" in seen)
            stats = await sim.stats()
            assert stats["resumes"] == 2 and stats["identifies"] == 2
            assert stats["sessions_active"] == 1
        finally:
            await bot.close()


async def _at_least(count: Callable[[], Awaitable[int]], minimum: int) -> bool:
    return await count() >= minimum


async def _identifies_at_least(sim: SimulatorEndpoints, minimum: int) -> bool:
    stats = await sim.stats()
    return int(stats["identifies"]) >= minimum and int(stats["sessions_active"]) == 1
