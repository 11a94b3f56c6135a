from __future__ import annotations

import pytest

from protocol import RoutingTable, contiguous_assignment, shard_for_guild


def test_shard_for_guild_is_discords_formula() -> None:
    guild = 197_038_439_483_310_086
    assert shard_for_guild(guild, 1) == 0
    assert shard_for_guild(guild, 16) == (guild >> 22) % 16
    assert [shard_for_guild(n << 22, 4) for n in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert shard_for_guild(2**64 - 1, 7) == ((2**64 - 1) >> 22) % 7


@pytest.mark.parametrize(
    ("guild", "shards", "error"),
    [(1, 0, "shard_count"), (-1, 4, "snowflake"), (2**64, 4, "snowflake")],
)
def test_shard_for_guild_rejects_bad_input(guild: int, shards: int, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        shard_for_guild(guild, shards)


def test_contiguous_assignment_balances_runs() -> None:
    assert contiguous_assignment(8, 4) == {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3}
    sizes = [list(contiguous_assignment(10, 4).values()).count(w) for w in range(4)]
    assert sizes == [3, 3, 2, 2]
    with pytest.raises(ValueError, match="cannot split 2 shards over 3"):
        contiguous_assignment(2, 3)


def test_routing_table_routes_guilds() -> None:
    table = RoutingTable.contiguous(8, 4)
    guild = 5 << 22  # shard 5 -> worker 2
    assert table.owner_of_guild(guild) == 2
    assert table.owner_of_shard(5) == 2
    assert table.shards_of(2) == [4, 5]


def test_routing_table_rejects_bad_shards() -> None:
    table = RoutingTable.contiguous(4, 2)
    with pytest.raises(KeyError, match=r"shard 4 is outside 0\.\.3"):
        table.owner_of_shard(4)
    with pytest.raises(ValueError, match=r"missing \[3\]"):
        RoutingTable(4, {0: 0, 1: 0, 2: 1})
