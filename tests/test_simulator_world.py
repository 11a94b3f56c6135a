"""The simulator's world: deterministic, evenly sharded, shared users, fast to build."""

from __future__ import annotations

import base64
from collections import Counter

import pytest

from protocol import shard_for_guild
from simulator.world import World, guild_of


def test_same_seed_same_world_and_different_seed_different_world() -> None:
    first, second, other = (
        World(seed=7, guild_count=50),
        World(seed=7, guild_count=50),
        World(8, 50),
    )
    assert first.guild_ids == second.guild_ids
    assert [first.guild(g) for g in first.guild_ids] == [second.guild(g) for g in second.guild_ids]
    assert first.token() == second.token() != other.token()
    assert [first.guild(g).name for g in first.guild_ids] != [
        other.guild(g).name for g in other.guild_ids
    ]


@pytest.mark.parametrize("shards", [1, 4, 7, 16])
def test_guilds_spread_evenly_over_any_shard_count(shards: int) -> None:
    world = World(seed=1, guild_count=1000)
    per_shard = Counter(shard_for_guild(guild, shards) for guild in world.guild_ids)
    assert len(per_shard) == shards
    assert max(per_shard.values()) - min(per_shard.values()) <= 1


def test_guild_contents_are_real_unique_snowflakes_that_lead_back_to_their_guild() -> None:
    world = World(seed=3, guild_count=200)
    seen: set[int] = set()
    for guild_id in world.guild_ids:
        guild = world.guild(guild_id)
        ids = [*guild.channel_ids, *guild.role_ids[1:], *(emoji.id for emoji in guild.emojis)]
        assert guild.role_ids[0] == guild_id  # @everyone
        assert all(guild_of(snowflake) == guild_id for snowflake in ids)
        assert seen.isdisjoint(ids)
        seen.update(ids)
        assert len(set(guild.member_ids)) == len(guild.member_ids) == 26
        assert guild.member_ids[0] == world.bot_id
        assert {emoji.animated for emoji in guild.emojis} == {False, True}


def test_users_are_shared_across_guilds() -> None:
    world = World(seed=3, guild_count=200)
    memberships = Counter(
        member for guild in world.guild_ids for member in world.guild(guild).member_ids[1:]
    )
    assert max(memberships.values()) >= 2
    assert len(memberships) > 25


def test_token_names_the_bot_as_hikari_expects() -> None:
    world = World(seed=5, guild_count=1)
    prefix = world.token().split(".")[0]
    assert int(base64.b64decode(prefix + "=" * (-len(prefix) % 4))) == world.bot_id


def test_guilds_can_be_added_and_removed_live() -> None:
    world = World(seed=1, guild_count=3)
    added = world.add_guild()
    assert world.has_guild(added) and added not in world.guild_ids[:3]
    removed = world.guild_ids[0]
    world.remove_guild(removed)
    assert not world.has_guild(removed) and removed not in world.guild_ids
    with pytest.raises(KeyError, match=f"no guild {removed}"):
        world.guild(removed)
    with pytest.raises(KeyError):
        world.guild(added + 1)  # a channel-shaped id is not a guild


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"guild_count": -1}, "guild_count must not be negative"),
        ({"guild_count": 1, "channels_per_guild": 300}, "channels_per_guild must be between"),
        ({"guild_count": 1, "members_per_guild": 10, "user_count": 5}, "members_per_guild"),
    ],
)
def test_bad_world_options_are_refused_clearly(options: dict[str, int], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        World(seed=0, **options)


def test_a_hundred_thousand_guild_world_has_distinct_ids_in_creation_order() -> None:
    # Its build time is measured by the simulator benchmark, not asserted here.
    world = World(seed=42, guild_count=100_000)
    assert len(set(world.guild_ids)) == 100_000
    assert world.guild_ids == sorted(world.guild_ids)
    assert world.guild(world.guild_ids[-1]).id == world.guild_ids[-1]
