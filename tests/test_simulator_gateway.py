"""The simulated gateway, driven by a bare client that breaks each rule on purpose.

Each close code has the input that earns it; each enforcement rule has a test that breaks it and
reads the violation from the simulator's counters; RESUME must replay exactly what was missed.

Every test runs on virtual time (``tests/virtual_time.py``), the simulator and its clients in the
test's loop: a window or deadline (identify buckets, the session budget, the resume window,
heartbeats) is crossed with ``advance``, just before and just after its end, without waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from simulator.compression import MODES, NONE
from simulator.gateway import connection
from simulator.server import Simulator
from tests.gateway_client import ALL_INTENTS, GatewayClosed, RawGatewayClient
from tests.simulation import ControlError, call_control, eventually, running_simulator
from tests.virtual_time import advance, virtual_clock

pytestmark = pytest.mark.virtual_time

GUILDS = 6
HEARTBEAT_INTERVAL = 10.0  # seconds; a client 1.5 intervals late is closed with 4009
IDENTIFY_WINDOW = 5.0
RESUME_WINDOW = 10.0
MESSAGE_CONTENT = 1 << 15
GUILD_MESSAGES = 1 << 9


def shard_guilds(sim: Simulator, shard_id: int, shard_count: int) -> list[int]:
    return [g for g in sim.world.guild_ids if (g >> 22) % shard_count == shard_id]


def channel_on_shard(sim: Simulator, shard_id: int, shard_count: int) -> int:
    return sim.world.guild(shard_guilds(sim, shard_id, shard_count)[0]).channel_ids[0]


async def connected(
    sim: Simulator, shard: tuple[int, int] = (0, 1), intents: int = ALL_INTENTS
) -> RawGatewayClient:
    """A client past READY and all its GUILD_CREATEs."""
    client = await RawGatewayClient.connect(sim.gateway_url)
    ready = await client.identify(sim.token, shard, intents)
    for _ in ready["guilds"]:
        assert (await client.receive())["t"] == "GUILD_CREATE"
    return client


async def closed_with(client: RawGatewayClient) -> int | None:
    try:
        return await client.expect_close()
    finally:
        await client.http.close()


@pytest.mark.parametrize("mode", MODES)
async def test_identify_gives_ready_then_exactly_the_shards_guilds(mode: str) -> None:
    async with running_simulator(guilds=GUILDS) as sim:
        client = await RawGatewayClient.connect(sim.gateway_url, mode)
        try:
            interval = await client.hello()
            assert interval == int(sim.config.heartbeat_interval * 1000)
            await client.send({"op": 1, "d": None})
            assert (await client.receive())["op"] == 11
            await client.send(
                {"op": 2, "d": {"token": sim.token, "shard": [1, 2], "intents": ALL_INTENTS}}
            )
            ready = await client.receive()
            assert ready["t"] == "READY" and ready["s"] == 1
            expected = shard_guilds(sim, 1, 2)
            assert [int(g["id"]) for g in ready["d"]["guilds"]] == expected
            assert all(g["unavailable"] for g in ready["d"]["guilds"])
            assert ready["d"]["resume_gateway_url"] == sim.gateway_url
            assert ready["d"]["shard"] == [1, 2]
            creates = [await client.receive() for _ in expected]
            assert [int(c["d"]["id"]) for c in creates] == expected
            assert [c["s"] for c in creates] == list(range(2, 2 + len(expected)))
            assert all(c["t"] == "GUILD_CREATE" and not c["d"]["unavailable"] for c in creates)
            assert sim.stats.compression[mode] == 1
        finally:
            await client.close()


async def send_and_expect_close(sim: Simulator, *payloads: object, raw: bytes = b"") -> int | None:
    client = await RawGatewayClient.connect(sim.gateway_url)
    await client.hello()
    if raw:
        await client.ws.send_bytes(raw)
    for payload in payloads:
        await client.send(payload)
    return await closed_with(client)


async def test_unknown_opcode_closes_4001() -> None:
    async with running_simulator() as sim:
        assert await send_and_expect_close(sim, {"op": 99, "d": None}) == 4001


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b'{"op": "1"}', b'{"op": 1, "d": "' + b"x" * 5000 + b'"}']
)
async def test_undecodable_payload_closes_4002(raw: bytes) -> None:
    async with running_simulator() as sim:
        assert await send_and_expect_close(sim, raw=raw) == 4002


async def test_payload_before_identify_closes_4003() -> None:
    async with running_simulator() as sim:
        presence = {
            "op": 3,
            "d": {"since": None, "activities": [], "status": "online", "afk": False},
        }
        assert await send_and_expect_close(sim, presence) == 4003


async def test_wrong_token_closes_4004() -> None:
    async with running_simulator() as sim:
        identify = {"op": 2, "d": {"token": "not-the-token", "intents": 0, "shard": [0, 1]}}
        assert await send_and_expect_close(sim, identify) == 4004


async def test_second_identify_closes_4005() -> None:
    async with running_simulator(guilds=1) as sim:
        client = await connected(sim)
        await client.send({"op": 2, "d": {"token": sim.token, "intents": 0, "shard": [0, 1]}})
        assert await closed_with(client) == 4005


async def test_resume_with_a_seq_ahead_of_the_session_closes_4007() -> None:
    async with running_simulator(guilds=1) as sim:
        first = await connected(sim)
        session_id = first.session_id
        assert session_id is not None and first.seq is not None
        await first.abort()
        second = await RawGatewayClient.connect(sim.gateway_url)
        await second.resume(sim.token, session_id, first.seq + 10)
        assert await closed_with(second) == 4007


async def test_more_than_the_send_limit_closes_4008() -> None:
    async with running_simulator(gateway_send_limit=5, gateway_send_window=60.0) as sim:
        beats = [{"op": 1, "d": None}] * 6
        assert await send_and_expect_close(sim, *beats) == 4008
        assert sim.stats.gateway_rate_limited == 1


async def test_missing_heartbeats_close_4009() -> None:
    async with running_simulator(heartbeat_interval=HEARTBEAT_INTERVAL) as sim:
        allowed = HEARTBEAT_INTERVAL * 1.5
        clock = virtual_clock()
        client = await RawGatewayClient.connect(sim.gateway_url)
        await client.hello()
        await advance(allowed - 0.1)  # late, but within the grace: the beat is taken
        await client.send({"op": 1, "d": None})
        assert (await client.receive())["op"] == 11
        beat_at = clock()
        # No next beat. Reading meanwhile, so the client answers the close frame when it comes.
        assert await client.expect_close(timeout=allowed + 1) == 4009
        assert clock() == pytest.approx(beat_at + allowed, abs=1e-6)  # when it fell overdue
        assert sim.stats.heartbeat_timeouts == 1
        await client.http.close()


@pytest.mark.parametrize("shard", [[2, 2], [-1, 2], [0, 0], [0], "0,1"])
async def test_invalid_shard_closes_4010(shard: Any) -> None:
    async with running_simulator() as sim:
        identify = {"op": 2, "d": {"token": sim.token, "intents": 0, "shard": shard}}
        assert await send_and_expect_close(sim, identify) == 4010


async def test_too_many_guilds_on_a_shard_closes_4011() -> None:
    async with running_simulator(guilds=10, max_guilds_per_shard=4) as sim:
        identify = {"op": 2, "d": {"token": sim.token, "intents": 0, "shard": [0, 2]}}
        assert await send_and_expect_close(sim, identify) == 4011
        # Three shards hold at most four guilds each: accepted.
        client = await connected(sim, (0, 3))
        await client.close()


@pytest.mark.parametrize("query", ["v=5&encoding=json", "v=10&encoding=etf", "v=10&compress=lz4"])
async def test_unsupported_version_encoding_or_compression_closes_4012(query: str) -> None:
    async with running_simulator() as sim:
        client = await RawGatewayClient.connect(sim.gateway_url, NONE, query=query)
        assert await closed_with(client) == 4012


@pytest.mark.parametrize("intents", [1 << 30, -1, "513", None])
async def test_invalid_intents_close_4013(intents: Any) -> None:
    async with running_simulator() as sim:
        identify = {"op": 2, "d": {"token": sim.token, "intents": intents, "shard": [0, 1]}}
        assert await send_and_expect_close(sim, identify) == 4013


async def test_privileged_intents_not_enabled_close_4014() -> None:
    async with running_simulator(allowed_privileged_intents=0) as sim:
        identify = {"op": 2, "d": {"token": sim.token, "intents": MESSAGE_CONTENT, "shard": [0, 1]}}
        assert await send_and_expect_close(sim, identify) == 4014


async def test_control_closes_a_shard_with_4000_and_the_session_stays_resumable() -> None:
    async with running_simulator(guilds=2) as sim:
        client = await connected(sim)
        closer = asyncio.create_task(closed_with(client))
        await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await call_control(sim.control_url, "POST", "/shards/0/close", {})
        assert await closer == 4000
        assert client.session_id is not None
        assert sim.gateway.sessions.resumable(client.session_id) is not None


# -- enforcement ------------------------------------------------------------------------------


async def identify_only(sim: Simulator, shard: tuple[int, int]) -> RawGatewayClient:
    client = await RawGatewayClient.connect(sim.gateway_url)
    await client.hello()
    await client.send({"op": 2, "d": {"token": sim.token, "intents": 0, "shard": list(shard)}})
    return client


async def test_identify_buckets_count_a_second_identify_inside_the_window() -> None:
    async with running_simulator(
        guilds=4, max_concurrency=2, identify_window=IDENTIFY_WINDOW
    ) as sim:
        clients = [await identify_only(sim, (shard, 4)) for shard in (0, 1)]
        for client in clients:
            assert (await client.receive())["t"] == "READY"
        assert sim.stats.identify_violations == 0
        await advance(IDENTIFY_WINDOW - 0.1)
        same_bucket = await identify_only(sim, (2, 4))  # 2 % 2 == 0: shard 0's bucket
        assert (await same_bucket.receive())["t"] == "READY"  # lenient: counted, not closed
        assert sim.stats.identify_violations == 1
        await advance(0.2)  # just past both buckets' windows; the refused IDENTIFY took none
        after_window = [await identify_only(sim, (shard, 4)) for shard in (2, 3)]
        for client in after_window:
            assert (await client.receive())["t"] == "READY"
        assert sim.stats.identify_violations == 1
        assert sim.stats.identifies == 5
        for client in [*clients, same_bucket, *after_window]:
            await client.close()


async def test_strict_mode_closes_an_identify_inside_the_window_with_4008() -> None:
    async with running_simulator(guilds=2, identify_window=IDENTIFY_WINDOW, strict=True) as sim:
        first = await identify_only(sim, (0, 2))
        assert (await first.receive())["t"] == "READY"
        await advance(IDENTIFY_WINDOW - 0.1)
        second = await identify_only(sim, (1, 2))
        assert await closed_with(second) == 4008
        assert sim.stats.identify_violations == 1
        await advance(0.2)
        third = await identify_only(sim, (1, 2))
        assert (await third.receive())["t"] == "READY"
        assert sim.stats.identify_violations == 1
        for client in (first, third):
            await client.close()


@pytest.mark.parametrize("strict", [False, True])
async def test_identifies_past_the_daily_session_budget_are_counted(strict: bool) -> None:
    budget_reset = 4 * IDENTIFY_WINDOW  # the "day" after which the budget refills
    async with running_simulator(
        guilds=1,
        session_start_total=2,
        session_start_reset=budget_reset,
        identify_window=IDENTIFY_WINDOW,
        strict=strict,
    ) as sim:
        clients = []
        for _ in range(2):
            clients.append(await identify_only(sim, (0, 1)))
            assert (await clients[-1].receive())["t"] == "READY"
            await advance(IDENTIFY_WINDOW)  # so that only the budget is in the way
        over = await identify_only(sim, (0, 1))
        if strict:
            assert await closed_with(over) == 4008
        else:
            assert (await over.receive())["t"] == "READY"
            clients.append(over)
        assert sim.stats.session_budget_violations == 1
        await advance(budget_reset - 2 * IDENTIFY_WINDOW + 0.1)  # just past the budget's reset
        refilled = await identify_only(sim, (0, 1))
        assert (await refilled.receive())["t"] == "READY"
        assert sim.stats.session_budget_violations == 1
        for client in [*clients, refilled]:
            await client.close()


# -- sessions and RESUME ---------------------------------------------------------------------


async def inject(sim: Simulator, channel_id: int, count: int) -> list[str]:
    author = sim.world.guild(sim.world.guild_ids[0]).member_ids[1]
    contents = [f"missed {n}" for n in range(count)]
    for content in contents:
        sim.messages.post(channel_id, author, content)
    return contents


async def test_resume_replays_exactly_the_missed_dispatches_in_order() -> None:
    async with running_simulator(guilds=1) as sim:
        channel_id = sim.world.guild(sim.world.guild_ids[0]).channel_ids[0]
        client = await connected(sim)
        seen = await inject(sim, channel_id, 3)
        received = [await client.receive() for _ in seen]
        assert [p["d"]["content"] for p in received] == seen
        last_seq, session_id = client.seq, client.session_id
        assert last_seq is not None and session_id is not None
        await client.abort()
        await eventually(lambda: sim.gateway.sessions.connected() == 0)

        missed = await inject(sim, channel_id, 5)
        resumed = await RawGatewayClient.connect(sim.gateway_url)
        await resumed.resume(sim.token, session_id, last_seq)
        replay = await resumed.receive_until("RESUMED")
        assert [p["d"]["content"] for p in replay[:-1]] == missed
        assert [p["s"] for p in replay[:-1]] == list(range(last_seq + 1, last_seq + 6))
        assert replay[-1]["s"] == last_seq + 5
        assert sim.stats.resumes == 1 and sim.stats.events_replayed == 5

        live = await inject(sim, channel_id, 1)  # and the session goes on where it left off
        after = await resumed.receive()
        assert after["d"]["content"] == live[0] and after["s"] == last_seq + 6
        await resumed.close()


async def test_resume_from_an_older_seq_replays_what_the_client_did_not_see() -> None:
    async with running_simulator(guilds=1) as sim:
        channel_id = sim.world.guild(sim.world.guild_ids[0]).channel_ids[0]
        client = await connected(sim)
        assert client.seq is not None and client.session_id is not None
        acknowledged = client.seq
        sent = await inject(sim, channel_id, 4)  # in flight when the connection dies
        await client.abort()
        resumed = await RawGatewayClient.connect(sim.gateway_url)
        await resumed.resume(sim.token, client.session_id, acknowledged)
        replay = await resumed.receive_until("RESUMED")
        assert [p["d"]["content"] for p in replay[:-1]] == sent
        await resumed.close()


async def test_a_dropped_session_resumes_within_the_resume_window_and_not_after() -> None:
    async with running_simulator(guilds=1, resume_window=RESUME_WINDOW) as sim:
        client = await connected(sim)
        assert client.session_id is not None
        await client.abort()
        await eventually(lambda: sim.gateway.sessions.connected() == 0)  # the server saw it
        await advance(RESUME_WINDOW - 0.1)
        in_time = await RawGatewayClient.connect(sim.gateway_url)
        await in_time.resume(sim.token, client.session_id, client.seq)
        assert (await in_time.receive())["t"] == "RESUMED"
        await in_time.abort()  # dropped again: the window starts over
        await eventually(lambda: sim.gateway.sessions.connected() == 0)
        await advance(RESUME_WINDOW + 0.1)
        late = await RawGatewayClient.connect(sim.gateway_url)
        await late.resume(sim.token, client.session_id, client.seq)
        invalid = await late.receive()
        assert invalid == {"op": 9, "d": False}
        assert sim.stats.resumes_refused == 1
        # The connection stays usable: IDENTIFY starts a new session.
        await late.send({"op": 2, "d": {"token": sim.token, "intents": 0, "shard": [0, 1]}})
        assert (await late.receive())["t"] == "READY"
        await late.close()


@pytest.mark.parametrize("code", [1000, 1001])
async def test_a_normal_close_ends_the_session(code: int) -> None:
    async with running_simulator(guilds=1) as sim:
        client = await connected(sim)
        assert client.session_id is not None
        await client.close(code)
        await eventually(lambda: sim.gateway.sessions.connected() == 0)
        again = await RawGatewayClient.connect(sim.gateway_url)
        await again.resume(sim.token, client.session_id, client.seq)
        assert await again.receive() == {"op": 9, "d": False}
        await again.close()


async def test_a_second_connection_resuming_a_live_session_closes_the_first() -> None:
    async with running_simulator(guilds=1) as sim:
        first = await connected(sim)
        assert first.session_id is not None
        second = await RawGatewayClient.connect(sim.gateway_url)
        await second.resume(sim.token, first.session_id, first.seq)
        assert (await second.receive())["t"] == "RESUMED"
        assert await closed_with(first) == 4009
        assert sim.stats.resumes_displacing == 1
        channel_id = sim.world.guild(sim.world.guild_ids[0]).channel_ids[0]
        sent = await inject(sim, channel_id, 1)
        assert (await second.receive())["d"]["content"] == sent[0]
        await second.close()


async def force(sim: Simulator, shard_id: int, action: str) -> int:
    answer = await call_control(sim.control_url, "POST", f"/shards/{shard_id}/{action}")
    return int(answer["connections"])


async def test_control_reconnect_invalid_session_and_drop_reach_the_shard() -> None:
    async with running_simulator(guilds=2) as sim:
        client = await connected(sim, (1, 2))
        assert await force(sim, 1, "reconnect") == 1
        assert await client.receive() == {"op": 7, "d": None}
        assert await force(sim, 1, "invalid-session") == 1
        assert await client.receive() == {"op": 9, "d": False}
        assert client.session_id is not None
        assert sim.gateway.sessions.resumable(client.session_id) is None
        # The connection may IDENTIFY again after op 9.
        await client.send({"op": 2, "d": {"token": sim.token, "intents": 0, "shard": [1, 2]}})
        assert (await client.receive())["t"] == "READY"
        assert await force(sim, 1, "drop") == 1
        with pytest.raises(GatewayClosed) as closed:
            await client.receive()
        assert closed.value.code == 1006  # abnormal closure: no close frame came
        await client.http.close()
        with pytest.raises(ControlError) as missing:
            await force(sim, 0, "reconnect")
        assert missing.value.status == 404


# -- routing and intents ---------------------------------------------------------------------


async def test_guilds_joining_and_leaving_reach_their_shard() -> None:
    async with running_simulator(guilds=2) as sim:
        clients = [await connected(sim, (shard, 2)) for shard in range(2)]
        guild_id = (await call_control(sim.control_url, "POST", "/guilds"))["id"]
        owner, other = clients[(guild_id >> 22) % 2], clients[1 - (guild_id >> 22) % 2]
        joined = await owner.receive()
        assert joined["t"] == "GUILD_CREATE" and "unavailable" not in joined["d"]
        await call_control(sim.control_url, "DELETE", f"/guilds/{guild_id}")
        left = await owner.receive()
        assert left["t"] == "GUILD_DELETE" and left["d"] == {"id": str(guild_id)}
        with pytest.raises(TimeoutError):
            await other.receive(timeout=0.2)
        for client in clients:
            await client.close()


async def test_intents_filter_messages_and_their_content() -> None:
    async with running_simulator(guilds=1) as sim:
        channel_id = sim.world.guild(sim.world.guild_ids[0]).channel_ids[0]
        full = await connected(sim, intents=ALL_INTENTS)
        no_content = await connected(sim, intents=ALL_INTENTS & ~MESSAGE_CONTENT)
        no_messages = await connected(sim, intents=ALL_INTENTS & ~GUILD_MESSAGES)
        await inject(sim, channel_id, 1)
        assert (await full.receive())["d"]["content"] == "missed 0"
        assert (await no_content.receive())["d"]["content"] == ""
        with pytest.raises(TimeoutError):
            await no_messages.receive(timeout=0.2)
        for client in (full, no_content, no_messages):
            await client.close()


async def test_request_guild_members_answers_with_a_chunk() -> None:
    async with running_simulator(guilds=1, members_per_guild=7) as sim:
        guild_id = sim.world.guild_ids[0]
        client = await connected(sim)
        await client.send({"op": 8, "d": {"guild_id": str(guild_id), "query": "", "limit": 0}})
        chunk = await client.receive()
        assert chunk["t"] == "GUILD_MEMBERS_CHUNK"
        assert len(chunk["d"]["members"]) == 8  # seven members and the bot
        await client.close()


async def test_a_client_that_stops_reading_is_dropped_and_resumes_without_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection, "MAX_PENDING_DISPATCHES", 100)
    async with running_simulator(guilds=1) as sim:
        channel_id = sim.world.guild(sim.world.guild_ids[0]).channel_ids[0]
        client = await RawGatewayClient.connect(sim.gateway_url, NONE)
        await client.identify(sim.token)
        assert (await client.receive())["t"] == "GUILD_CREATE"
        acknowledged, session_id = client.seq, client.session_id
        assert acknowledged is not None and session_id is not None
        author = sim.world.guild(sim.world.guild_ids[0]).member_ids[1]
        padding = "x" * 1900  # fills the socket buffers quickly
        sent = 0
        while not sim.stats.slow_clients_dropped:
            assert sent < 100_000, "a client that never reads was never dropped"
            sim.messages.post(channel_id, author, f"{sent} {padding}")
            sent += 1
            if sent % 100 == 0:
                await asyncio.sleep(0)
        await client.http.close()
        resumed = await RawGatewayClient.connect(sim.gateway_url, NONE)
        await resumed.resume(sim.token, session_id, acknowledged)
        replay = await resumed.receive_until("RESUMED", timeout=30)
        assert [int(p["d"]["content"].split()[0]) for p in replay[:-1]] == list(range(sent))
        await resumed.close()
