"""The control API over HTTP: injections are checked where they enter, traffic reaches shards.

The simulator runs in the test's loop on virtual time (``tests/virtual_time.py``): paced traffic
moves with ``advance``, and a wait for the end of a stream ends as soon as nothing is in flight.
"""

from __future__ import annotations

import collections

import pytest

from tests.gateway_client import RawGatewayClient
from tests.simulation import ControlError, call_control, running_simulator
from tests.virtual_time import advance

pytestmark = pytest.mark.virtual_time


async def test_traffic_started_over_http_reaches_the_shards_and_stops() -> None:
    async with running_simulator(guilds=4) as sim:
        clients = []
        for shard_id in range(2):
            client = await RawGatewayClient.connect(sim.gateway_url)
            ready = await client.identify(sim.token, (shard_id, 2))
            for _ in ready["guilds"]:
                await client.receive()
            clients.append(client)
        spec = {
            "rate": 0,
            "count": 200,
            "mix": {"message": 1, "member_update": 1, "presence_update": 1, "interaction": 1},
        }
        status = await call_control(sim.control_url, "POST", "/traffic/start", spec)
        assert status["running"]
        await sim.traffic.wait(timeout=15)
        assert sim.stats.events_dispatched == 200 + 2 + 4  # traffic, READYs, GUILD_CREATEs
        seen: collections.Counter[str] = collections.Counter()
        for client in clients:
            for _ in range(len(seen), 10_000):
                try:
                    payload = await client.receive(timeout=0.3)
                except TimeoutError:
                    break
                seen[payload["t"]] += 1
        status = await call_control(sim.control_url, "GET", "/traffic")
        assert status["sent"] == 200 and not status["running"]
        assert sum(seen.values()) == 200
        assert set(seen) == {
            "MESSAGE_CREATE",
            "GUILD_MEMBER_UPDATE",
            "PRESENCE_UPDATE",
            "INTERACTION_CREATE",
        }
        assert dict(seen) == {
            event: status["by_kind"][kind]
            for event, kind in [
                ("MESSAGE_CREATE", "message"),
                ("GUILD_MEMBER_UPDATE", "member_update"),
                ("PRESENCE_UPDATE", "presence_update"),
                ("INTERACTION_CREATE", "interaction"),
            ]
        }
        for client in clients:
            await client.close()


async def test_traffic_runs_until_stopped_and_refuses_a_second_start() -> None:
    async with running_simulator(guilds=2) as sim:
        await call_control(sim.control_url, "POST", "/traffic/start", {"rate": 500})
        with pytest.raises(ControlError) as twice:
            await call_control(sim.control_url, "POST", "/traffic/start", {"rate": 500})
        assert twice.value.status == 409
        await advance(0.1)  # 50 events due at 500 a second, a tick or so behind at most
        stopped = await call_control(sim.control_url, "POST", "/traffic/stop")
        assert not stopped["running"] and 40 <= stopped["sent"] <= 50
        assert sim.stats.user_messages > 0


@pytest.mark.parametrize(
    "spec", [{"rate": -1}, {"speed": 1}, {"mix": {"typing": 1}}, {"distribution": "zipf"}]
)
async def test_a_bad_traffic_spec_is_refused_with_the_reason(spec: object) -> None:
    async with running_simulator() as sim:
        with pytest.raises(ControlError) as refused:
            await call_control(sim.control_url, "POST", "/traffic/start", spec)
        assert refused.value.status == 400
        assert "TrafficSpec" in str(refused.value)
        assert not sim.traffic.running


async def test_injected_message_picks_a_guild_channel_and_member_when_left_out() -> None:
    async with running_simulator(guilds=3) as sim:
        injected = await call_control(sim.control_url, "POST", "/messages", {"content": "hi"})
        guild = sim.world.guild(injected["guild_id"])
        assert injected["channel_id"] in guild.channel_ids
        assert sim.stats.user_messages == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"content": "x", "guild_id": 1}, 404),
        ({"content": "x", "channel_id": 12345}, 404),
        ({"author_id": 1}, 400),
        ({"content": 5}, 400),
        ({"content": "x", "extra": 1}, 400),
    ],
)
async def test_a_bad_injection_is_refused(body: object, status: int) -> None:
    async with running_simulator(guilds=2) as sim:
        with pytest.raises(ControlError) as refused:
            await call_control(sim.control_url, "POST", "/messages", body)
        assert refused.value.status == status
        assert sim.stats.user_messages == 0


async def test_injection_into_another_guilds_channel_or_by_a_non_member_is_refused() -> None:
    async with running_simulator(guilds=2, members_per_guild=3, users=50) as sim:
        first, second = (sim.world.guild(g) for g in sim.world.guild_ids)
        mismatched = {"content": "x", "guild_id": first.id, "channel_id": second.channel_ids[0]}
        with pytest.raises(ControlError) as refused:
            await call_control(sim.control_url, "POST", "/messages", mismatched)
        assert refused.value.status == 400
        outsider = next(u for u in second.member_ids if u not in first.member_ids)
        stranger = {"content": "x", "guild_id": first.id, "author_id": outsider}
        with pytest.raises(ControlError) as refused:
            await call_control(sim.control_url, "POST", "/messages", stranger)
        assert refused.value.status == 404


async def test_sessions_and_world_are_listed() -> None:
    async with running_simulator(guilds=3) as sim:
        client = await RawGatewayClient.connect(sim.gateway_url)
        await client.identify(sim.token, (0, 1))
        sessions = await call_control(sim.control_url, "GET", "/sessions")
        assert [(s["shard_id"], s["connected"], s["compression"]) for s in sessions] == [
            (0, True, "zlib-stream")
        ]
        world = await call_control(sim.control_url, "GET", "/world")
        assert world["guild_ids"] == sim.world.guild_ids and world["bot_id"] == sim.world.bot_id
        await client.close()
