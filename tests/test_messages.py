"""Every catalogue kind survives a frame round trip, and the catalogue has what the README lists."""

from __future__ import annotations

import msgspec
import pytest

from protocol import CATALOGUE, FrameDecoder, FrameEncoder, deadline_in
from protocol.messages import (
    CatchUp,
    CommandBroadcast,
    CommandExec,
    ComputeRequest,
    ComputeResult,
    Cutover,
    GuildSync,
    HandledReport,
    Heartbeat,
    HeartbeatAck,
    Hello,
    IdentifyGrant,
    IdentifyRequest,
    IdentifySent,
    Message,
    ReplyError,
    ReplyOk,
    Request,
    RestGateReport,
    RouteReport,
    Session,
    ShardDisconnect,
    ShardHandled,
    ShardHealth,
    ShardReady,
    ShardRelease,
    ShardReleased,
    ShardTake,
    StateChanged,
    StateFetch,
    StateSync,
    StateUpdate,
    WorkerStandby,
)

GUILD = 81_384_788_765_712_384
USER = 2**64 - 1

SAMPLES: list[Message] = [
    Hello(version=1, role="shard_worker", worker_id=3, pid=4242),
    Hello(version=1, role="master", worker_id=3, pid=4241, nonce_origin=9),
    HandledReport(shards=[ShardHandled(shard_id=2, session_id="abc", floor=41, above=[43, 47])]),
    Heartbeat(nonce=1, deadline=deadline_in(1), sent_at=12.5),
    HeartbeatAck(
        nonce=1,
        loop_lag_ms=0.4,
        rss_bytes=50_000_000,
        shards=[
            ShardHealth(
                shard_id=0, state="ready", guilds=10, latency_ms=41.0, session_id="s", seq=9
            ),
            ShardHealth(shard_id=1, state="waiting_identify"),
        ],
    ),
    ReplyOk(nonce=2, payload={"shard": 1, "nested": [1, 2.5, None, "x"]}),
    ReplyError(nonce=3, code="target_down", message="worker 2 is restarting"),
    IdentifyRequest(nonce=4, deadline=deadline_in(30), shard_id=7),
    IdentifyGrant(nonce=4, shard_id=7, expires_at=12.5),
    IdentifySent(shard_id=7, sent_at=11.0),
    ShardReady(shard_id=7, session_id="abc", guild_ids=[GUILD, 1]),
    ShardDisconnect(shard_ids=[6, 7], reason="rolling restart", resumable=True),
    WorkerStandby(),
    Cutover(at=1_796_000_000.25),
    CatchUp(handled=[GUILD, GUILD + 1]),
    ShardRelease(shard_ids=[6]),
    ShardReleased(shard_id=6, session=Session("abc", 52, "ws://127.0.0.1:1/gateway")),
    ShardTake(
        sessions={6: Session("abc", 40, "ws://127.0.0.1:1/gateway", frozenset({43}), 44)},
        guild_counts={6: 250, 7: 251},
    ),
    CommandExec(nonce=5, deadline=deadline_in(5), guild_id=GUILD, name="where", payload=[GUILD]),
    CommandBroadcast(nonce=6, deadline=deadline_in(5), name="stats"),
    StateUpdate(
        nonce=7,
        deadline=deadline_in(5),
        scope="guild_config",
        guild_id=GUILD,
        changes={"prefix": "?"},
    ),
    StateSync(nonce=10, deadline=deadline_in(5)),
    StateFetch(nonce=11, deadline=deadline_in(5), user_id=USER),
    GuildSync(guild_id=GUILD, version=12, state={"config": {"prefix": "!"}}),
    StateChanged(scope="guild_config", key=str(GUILD), version=12, data=b"\x81"),
    ComputeRequest(nonce=8, deadline=deadline_in(2), task="math", args={"expr": "2+2"}),
    ComputeResult(nonce=9, value={"width": 256}, data=b"\x89PNG\r\n", content_type="image/png"),
    RestGateReport(
        requests=120,
        got_429=1,
        invalid_10min=1,
        refused=0,
        routes=[
            RouteReport(
                route="POST /channels/{channel_id}/messages",
                requests=120,
                queued_ms=840.5,
                queued_max_ms=20.1,
                got_429=1,
                invalid=1,
            )
        ],
    ),
]


def test_samples_cover_the_whole_catalogue() -> None:
    assert {type(sample) for sample in SAMPLES} == set(CATALOGUE.values())


def test_catalogue_has_every_kind_the_readme_lists() -> None:
    # But PRESENCE_UPDATE: presence is asked of the shard that has it (ctx.presence), not
    # relayed to every worker, where it would grow with the users.
    required = {
        "SHARD_READY", "SHARD_DISCONNECT", "GUILD_SYNC", "STATE_UPDATE", "COMMAND_BROADCAST",
        "COMMAND_EXEC", "HEARTBEAT", "HEARTBEAT_ACK", "IDENTIFY_REQUEST", "IDENTIFY_GRANT",
        "REPLY_OK", "REPLY_ERROR", "COMPUTE_REQUEST", "COMPUTE_RESULT", "HELLO",
    }  # fmt: skip
    assert required <= CATALOGUE.keys()


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    frames = FrameEncoder().encode(message)
    assert list(FrameDecoder().feed(frames)) == [message]


def test_every_request_kind_has_nonce_and_deadline() -> None:
    for kind in CATALOGUE.values():
        if issubclass(kind, Request):
            fields = set(kind.__struct_fields__)
            assert {"nonce", "deadline"} <= fields, kind


def test_ids_are_unsigned_snowflakes() -> None:
    with pytest.raises(msgspec.ValidationError, match="guild_id"):
        msgspec.convert({"guild_id": -1, "version": 1, "state": {}}, GuildSync)
