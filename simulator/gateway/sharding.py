"""How many shards the bot needs, as Discord decides it: the count ``GET /gateway/bot``
recommends (one shard per ``guilds_per_shard`` guilds, never fewer than ``shards``), and the cap
on the guilds one shard may hold (``max_guilds_per_shard``), past which Discord closes the shard
with 4011 "sharding required".

Both follow the world as guilds join, so a bot that reshards live sees what it would see on
Discord: the recommendation rises, and a shard of an old, smaller count is closed once it holds
too many guilds while a newer count's shards are fine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from simulator.config import SimulatorConfig


def recommended_shards(config: SimulatorConfig, guild_count: int) -> int:
    if config.guilds_per_shard == 0:
        return config.shards
    return max(config.shards, -(-guild_count // config.guilds_per_shard))


def guilds_by_shard(guild_ids: Iterable[int], shard_count: int) -> Counter[int]:
    """How many of the guilds each shard of ``shard_count`` holds, by shard id."""
    return Counter((guild_id >> 22) % shard_count for guild_id in guild_ids)


def sharding_required(held: int, limit: int) -> str | None:
    """Why a shard holding ``held`` guilds must be closed with 4011; None when it may run."""
    if held <= limit:
        return None
    return f"{held} guilds on one shard; the limit is {limit}"
