"""What a live reshard needs of the simulator: two generations of shards (two shard counts)
connected side by side, each given every event of the guilds its shards hold; a tally of where
each guild's dispatches went; a ``GET /gateway/bot`` recommendation that rises as guilds join;
and 4011 for a shard that joining guilds take past the cap, judged per shard count.

The simulator and its bare gateway clients run in the test's loop on virtual time, as in
``test_simulator_gateway``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulator.config import SimulatorConfig
from simulator.server import Simulator
from tests.gateway_client import GatewayClosed, RawGatewayClient
from tests.simulation import ControlError, call_control, eventually, running_simulator
from tests.test_simulator_gateway import connected

pytestmark = pytest.mark.virtual_time


def shard_of(guild_id: int, shard_count: int) -> int:
    return (guild_id >> 22) % shard_count


@contextlib.asynccontextmanager
async def clients(
    sim: Simulator, *shards: tuple[int, int]
) -> AsyncIterator[list[RawGatewayClient]]:
    """A client past READY and its GUILD_CREATEs on each ``(shard_id, shard_count)``; all
    closed at the end, whatever the test left open."""
    async with contextlib.AsyncExitStack() as stack:
        connected_clients = []
        for shard in shards:
            client = await connected(sim, shard)
            stack.push_async_callback(client.close)
            connected_clients.append(client)
        yield connected_clients


async def control(sim: Simulator, method: str, path: str, body: object = None) -> Any:
    return await call_control(sim.control_url, method, path, body)


async def recommended_shards(sim: Simulator) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{sim.rest_url}/gateway/bot", headers={"Authorization": f"Bot {sim.token}"}
        ) as reply,
    ):
        assert reply.status == 200, await reply.text()
        shards: int = (await reply.json())["shards"]
        return shards


async def nothing_comes(client: RawGatewayClient) -> None:
    with pytest.raises(TimeoutError):
        await client.receive(timeout=0.2)


# -- two generations at once -------------------------------------------------------------------


async def test_two_generations_both_get_a_guilds_events_and_the_tally_shows_both() -> None:
    async with running_simulator(guilds=8) as sim:
        guild_id = sim.world.guild_ids[0]
        old_shard, new_shard = shard_of(guild_id, 2), shard_of(guild_id, 4)
        other_shard = (new_shard + 2) % 4  # of the same shard of 2, but not of 4
        async with clients(sim, (old_shard, 2), (new_shard, 4), (other_shard, 4)) as (
            old,
            new,
            bystander,
        ):
            # A session's own READY and GUILD_CREATE stream are not the guild's dispatches.
            assert await control(sim, "GET", f"/dispatches?guild_id={guild_id}") == {
                "guild_id": guild_id,
                "by_shard_count": {},
            }
            sent = await control(sim, "POST", "/messages", {"content": "hi", "guild_id": guild_id})
            for client in (old, new):
                message = await client.receive()
                assert message["t"] == "MESSAGE_CREATE"
                assert message["d"]["id"] == str(sent["id"])
            await nothing_comes(bystander)
            await control(sim, "POST", "/interactions", {"command": "ping", "guild_id": guild_id})
            for client in (old, new):
                assert (await client.receive())["t"] == "INTERACTION_CREATE"

            assert await control(sim, "GET", f"/dispatches?guild_id={guild_id}") == {
                "guild_id": guild_id,
                "by_shard_count": {"2": 2, "4": 2},
            }
            other = sim.world.guild_ids[1]
            await control(sim, "POST", "/messages", {"content": "hi", "guild_id": other})
            # On no shard either generation has a session on: reaching none, it is not counted.
            assert shard_of(other, 2) != old_shard
            assert shard_of(other, 4) not in (new_shard, other_shard)
            assert await control(sim, "GET", f"/dispatches?guild_id={other}") == {
                "guild_id": other,
                "by_shard_count": {},
            }
            assert await control(sim, "GET", "/dispatches") == {
                "by_shard_count": {"2": 2, "4": 2},
                "guilds": 1,
            }
            stats = await control(sim, "GET", "/stats")
            assert stats["dispatches_by_shard_count"] == {"2": 2, "4": 2}


async def test_the_dispatch_tally_refuses_unknown_guilds_and_bad_ids() -> None:
    async with running_simulator(guilds=2) as sim:
        for query, status in (("guild_id=12345", 404), ("guild_id=abc", 400)):
            with pytest.raises(ControlError) as refused:
                await control(sim, "GET", f"/dispatches?{query}")
            assert refused.value.status == status


async def test_a_leaving_guild_is_counted_and_keeps_its_tally() -> None:
    async with running_simulator(guilds=2) as sim:
        guild_id = sim.world.guild_ids[0]
        async with clients(sim, (0, 1)) as (client,):
            await control(sim, "DELETE", f"/guilds/{guild_id}")
            assert (await client.receive())["t"] == "GUILD_DELETE"
            assert await control(sim, "GET", f"/dispatches?guild_id={guild_id}") == {
                "guild_id": guild_id,
                "by_shard_count": {"1": 1},
            }


# -- guilds joining --------------------------------------------------------------------------


async def test_gateway_bot_recommends_a_shard_per_guilds_per_shard_as_guilds_join() -> None:
    async with running_simulator(
        guilds=5, shards=2, guilds_per_shard=3, rest_route_limit=10_000
    ) as sim:
        assert await recommended_shards(sim) == 2  # ceil(5 / 3) is 2: no more than configured
        await control(sim, "POST", "/guilds")
        await control(sim, "POST", "/guilds")
        assert await recommended_shards(sim) == 3  # 7 guilds
        await control(sim, "POST", "/guilds", {"count": 5})
        assert await recommended_shards(sim) == 4  # 12 guilds
        await control(sim, "POST", "/guilds", {"count": 1})
        assert await recommended_shards(sim) == 5  # 13 guilds


async def test_guilds_per_shard_0_recommends_the_configured_shards_only() -> None:
    async with running_simulator(guilds=50, shards=2, guilds_per_shard=0) as sim:
        await control(sim, "POST", "/guilds", {"count": 100})
        assert await recommended_shards(sim) == 2


def test_guilds_per_shard_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="guilds_per_shard"):
        SimulatorConfig(guilds_per_shard=-1)


async def test_guilds_joining_in_bulk_reach_every_generation_on_their_shards() -> None:
    async with (
        running_simulator(guilds=4) as sim,
        clients(sim, *((shard, 2) for shard in range(2)), (0, 4)) as generations,
    ):
        before = set(sim.world.guild_ids)
        added = await control(sim, "POST", "/guilds", {"count": 6})
        ids = added["ids"]
        assert len(ids) == len(set(ids)) == 6 and not before & set(ids)
        assert added["id"] == ids[0]
        assert sim.world.guild_ids[-6:] == ids
        on_zero_of_four = [g for g in ids if shard_of(g, 4) == 0]
        assert added["sessions"] == 6 + len(on_zero_of_four)  # every guild on one of 2
        assert added["sessions_closed"] == 0
        expected = [
            [g for g in ids if shard_of(g, 2) == 0],
            [g for g in ids if shard_of(g, 2) == 1],
            on_zero_of_four,
        ]
        for client, guilds in zip(generations, expected, strict=True):
            creates = [await client.receive() for _ in guilds]
            assert [int(create["d"]["id"]) for create in creates] == guilds
            assert all(create["t"] == "GUILD_CREATE" for create in creates)
            await nothing_comes(client)


async def test_more_guilds_than_one_turn_takes_join_whole_and_in_order() -> None:
    async with (
        running_simulator(guilds=1, members_per_guild=1, users=4) as sim,
        clients(sim, (0, 1)) as (client,),
    ):
        added = await control(sim, "POST", "/guilds", {"count": 600})  # over a few loop turns
        assert added["sessions"] == 600
        creates = [await client.receive() for _ in range(600)]
        assert [int(create["d"]["id"]) for create in creates] == added["ids"]


@pytest.mark.parametrize(
    "body",
    [{"count": 0}, {"count": 10_001}, {"count": "3"}, {"count": 2.5}, {"guilds": 3}, [3]],
    ids=str,
)
async def test_adding_guilds_refuses_a_bad_count_with_400(body: object) -> None:
    async with running_simulator(guilds=2) as sim:
        with pytest.raises(ControlError) as refused:
            await control(sim, "POST", "/guilds", body)
        assert refused.value.status == 400
        assert len(sim.world.guild_ids) == 2


# -- 4011 sharding required --------------------------------------------------------------------


async def test_guilds_joining_past_the_cap_close_the_old_generation_4011_not_the_new() -> None:
    # Eight guilds, at most two a shard: four shards hold two each, eight shards one each.
    async with (
        running_simulator(guilds=8, max_guilds_per_shard=2) as sim,
        clients(sim, (0, 4), (1, 4), (0, 8)) as (old_full, old_other, new),
    ):
        added = await control(sim, "POST", "/guilds")
        guild_id = added["id"]
        # The ninth guild lands on shard 0 of 4 (now three guilds) and 0 of 8 (two).
        assert shard_of(guild_id, 4) == 0 and shard_of(guild_id, 8) == 0
        assert added["sessions_closed"] == 1
        assert added["sessions"] == 1  # only the new generation's shard took it
        with pytest.raises(GatewayClosed) as closed:
            await old_full.receive()  # closed before any GUILD_CREATE of the guild
        assert closed.value.code == 4011
        joined = await new.receive()
        assert joined["t"] == "GUILD_CREATE" and joined["d"]["id"] == str(guild_id)
        await nothing_comes(old_other)
        assert sim.stats.close_codes[4011] == 1

        # The closed session is over: its RESUME is refused, and a new IDENTIFY of the old
        # count's shard is refused at once, while the new count still identifies.
        assert old_full.session_id is not None
        again = await RawGatewayClient.connect(sim.gateway_url)
        try:
            await again.resume(sim.token, old_full.session_id, old_full.seq)
            assert await again.receive() == {"op": 9, "d": False}
            identify = {"token": sim.token, "intents": 0, "shard": [0, 4]}
            await again.send({"op": 2, "d": identify})
            assert await again.expect_close() == 4011
        finally:
            await again.http.close()
        async with clients(sim, (1, 8)):
            pass
        assert await control(sim, "GET", f"/dispatches?guild_id={guild_id}") == {
            "guild_id": guild_id,
            "by_shard_count": {"8": 1},
        }


async def test_a_dropped_session_past_the_cap_is_ended_and_cannot_resume() -> None:
    async with running_simulator(guilds=2, max_guilds_per_shard=2) as sim:
        client = await connected(sim, (0, 1))
        assert client.session_id is not None
        await client.abort()  # resumable for the resume window, had no guild joined
        await eventually(lambda: sim.gateway.sessions.connected() == 0)
        added = await control(sim, "POST", "/guilds")
        assert added["sessions_closed"] == 1 and added["sessions"] == 0
        again = await RawGatewayClient.connect(sim.gateway_url)
        try:
            await again.resume(sim.token, client.session_id, client.seq)
            assert await again.receive() == {"op": 9, "d": False}
        finally:
            await again.close()
