"""How many of each guild's dispatches went to each generation of shards (each shard count).

While a bot reshards live, two generations identify side by side; the tally is how a test sees
where a guild's events went (to the old count, the new, or both) before and after the cutover.
It counts what the hub routes for a guild (messages, interactions, presences, members, guilds
joining and leaving), not a session's own READY, GUILD_CREATE stream or member chunks.
"""

from __future__ import annotations

from simulator.stats import Stats
from simulator.world import World


class DispatchTally:
    def __init__(self, world: World, stats: Stats) -> None:
        self._world = world
        self._stats = stats
        # guild id -> shard count -> dispatches. An entry only for a guild the world made, so
        # the tally is bounded by the world's guilds; a guild that leaves keeps its counts.
        self._by_guild: dict[int, dict[int, int]] = {}

    def __len__(self) -> int:
        return len(self._by_guild)

    def add(self, guild_id: int, shard_count: int, dispatches: int) -> None:
        counts = self._by_guild.get(guild_id)
        if counts is None:
            if not self._world.has_guild(guild_id):
                return
            counts = self._by_guild[guild_id] = {}
        counts[shard_count] = counts.get(shard_count, 0) + dispatches
        self._stats.dispatches_by_shard_count[shard_count] += dispatches

    def of_guild(self, guild_id: int) -> dict[int, int] | None:
        """The guild's dispatches by shard count; None for a guild never counted."""
        counts = self._by_guild.get(guild_id)
        return None if counts is None else dict(counts)
