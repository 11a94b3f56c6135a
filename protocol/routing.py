"""Routing math: which shard serves a guild, and which process owns a shard."""

from __future__ import annotations

from collections.abc import Mapping

SNOWFLAKE_LIMIT = 2**64


def shard_for_guild(guild_id: int, shard_count: int) -> int:
    """Discord's rule: the guild's creation timestamp (its id less the low 22 bits) mod shards."""
    if shard_count < 1:
        raise ValueError(f"shard_count must be at least 1, got {shard_count}")
    if not 0 <= guild_id < SNOWFLAKE_LIMIT:
        raise ValueError(f"guild_id {guild_id} is not a 64-bit snowflake")
    return (guild_id >> 22) % shard_count


def contiguous_assignment(shard_count: int, owner_count: int) -> dict[int, int]:
    """Split shards 0..S-1 into ``owner_count`` contiguous runs, sizes differing by at most one."""
    if not 1 <= owner_count <= shard_count:
        raise ValueError(f"cannot split {shard_count} shards over {owner_count} owners")
    base, extra = divmod(shard_count, owner_count)
    assignment: dict[int, int] = {}
    shard = 0
    for owner in range(owner_count):
        for _ in range(base + (owner < extra)):
            assignment[shard] = owner
            shard += 1
    return assignment


class RoutingTable:
    """Maps every shard to the owner (worker id) that serves it; a shard changes owner only
    when it is moved (``move``), and the whole table at a reshard's cutover (``replace``)."""

    def __init__(self, shard_count: int, assignment: Mapping[int, int]) -> None:
        missing = set(range(shard_count)) - assignment.keys()
        extra = assignment.keys() - set(range(shard_count))
        if missing or extra:
            raise ValueError(
                f"assignment must cover shards 0..{shard_count - 1} exactly "
                f"(missing {sorted(missing)}, unexpected {sorted(extra)})"
            )
        self.shard_count = shard_count
        self._owners = [assignment[shard] for shard in range(shard_count)]

    @classmethod
    def contiguous(cls, shard_count: int, owner_count: int) -> RoutingTable:
        return cls(shard_count, contiguous_assignment(shard_count, owner_count))

    def owner_of_shard(self, shard_id: int) -> int:
        if not 0 <= shard_id < self.shard_count:
            raise KeyError(f"shard {shard_id} is outside 0..{self.shard_count - 1}")
        return self._owners[shard_id]

    def owner_of_guild(self, guild_id: int) -> int:
        return self._owners[shard_for_guild(guild_id, self.shard_count)]

    def owners(self) -> list[int]:
        """The owners that serve shards, in order."""
        return sorted(set(self._owners))

    def replace(self, other: RoutingTable) -> None:
        """Take ``other``'s shards and owners (a reshard's cutover), in place: whoever holds
        this table routes by the new one from now on."""
        self.shard_count = other.shard_count
        self._owners = list(other._owners)

    def move(self, shard_id: int, owner: int) -> None:
        self.owner_of_shard(shard_id)  # KeyError for a shard outside the table
        self._owners[shard_id] = owner

    def shards_of(self, owner: int) -> list[int]:
        return [shard for shard, who in enumerate(self._owners) if who == owner]
