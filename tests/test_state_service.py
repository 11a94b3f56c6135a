"""The master's state service refuses bad changes with a clear error and changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from protocol import FrameEncoder, RoutingTable
from protocol.merge import CounterMap, LwwMap, Stamp
from protocol.messages import (
    GuildSync,
    ReplyError,
    ReplyOk,
    StateChanged,
    StateSync,
    StateUpdate,
    deadline_in,
)
from protocol.state import encode_state
from sharder import state_service as state_service_module
from sharder.state_service import MAX_DELTA, StateService
from sharder.store import StateStore
from sharder.workers import WorkerHandle

GUILD = 200_000_000_000 << 22


class Recorder:
    """Stands in for a worker's connection: keeps what the master sends it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.is_open = True
        self.writable = True
        self.replied = asyncio.Event()  # the answer to a request was sent: nothing follows it

    def send_soon(self, message: Any) -> None:
        self.sent.append(message)
        if isinstance(message, ReplyOk | ReplyError):
            self.replied.set()


async def replied(handle: WorkerHandle) -> None:
    """Until the service, working in a task of its own, has answered the worker's request."""
    assert isinstance(handle.connection, Recorder)
    await asyncio.wait_for(handle.connection.replied.wait(), 5.0)


@pytest.fixture
async def service(tmp_path: Path) -> Any:
    store = StateStore(tmp_path / "state.db")
    store.open()
    handle = WorkerHandle(0, [0], 1, 0.1)
    handle.connection = Recorder()  # type: ignore[assignment]
    yield StateService(store, RoutingTable.contiguous(1, 1), {0: handle}), handle
    await store.close()


def update(scope: str, changes: dict[str, Any], **ids: int) -> StateUpdate:
    return StateUpdate(nonce=1, deadline=deadline_in(5), scope=scope, changes=changes, **ids)  # type: ignore[arg-type]


def config_delta() -> bytes:
    change = LwwMap()
    change.set("prefix", "?", Stamp(1, 0, 1))
    return encode_state(change)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (update("guild_config", {"delta": b"\\x00garbage"}, guild_id=GUILD), "not a merge state"),
        (update("guild_config", {"prefix": "?"}, guild_id=GUILD), "exactly {'delta': bytes}"),
        (update("guild_config", {"delta": b"x" * (MAX_DELTA + 1)}, guild_id=GUILD), "the limit"),
        (update("guild_config", {"delta": config_delta()}), "needs guild_id"),
        (
            update("member_activity", {"delta": config_delta()}, guild_id=GUILD),
            "guild_id and user_id",
        ),
        (
            update("member_activity", {"delta": config_delta()}, guild_id=GUILD, user_id=5),
            "merges CounterMap, not LwwMap",
        ),
    ],
)
async def test_a_bad_change_is_refused_and_nothing_is_stored(
    service: Any, request_: StateUpdate, message: str
) -> None:
    state, handle = service
    await state._update(handle, request_)
    [answer] = handle.connection.sent
    assert isinstance(answer, ReplyError) and answer.code == "invalid"
    assert message in answer.message
    assert state.store.entries == {}


async def test_a_good_change_is_pushed_before_it_is_acknowledged(service: Any) -> None:
    state, handle = service
    counter = CounterMap()
    counter.report("messages", 1, 3)
    await state._update(
        handle,
        update("member_activity", {"delta": encode_state(counter)}, guild_id=GUILD, user_id=5),
    )
    pushed, acknowledged = handle.connection.sent
    assert isinstance(pushed, StateChanged) and pushed.key == f"{GUILD}:5" and pushed.version == 1
    assert isinstance(acknowledged, ReplyOk) and acknowledged.payload == {"version": 1}
    assert state.value("member_activity", f"{GUILD}:5") == {"messages": 3}


@pytest.mark.parametrize("key", ["abc", "", "-5", "1_000", "0", "0123", "9" * 65, "1:2"])
async def test_a_key_that_names_nothing_is_refused_on_the_master_too(
    service: Any, key: str
) -> None:
    state_service, _ = service
    with pytest.raises(ValueError, match="is not an id"):
        await state_service.set_fields("guild_config", key, {"x": 1})
    assert state_service.store.entries == {}


async def test_a_change_whose_stamp_has_the_wrong_type_is_refused(service: Any) -> None:
    state_service, handle = service
    bad = msgspec.msgpack.encode({"lww": {"prefix": ["soon", 0, 1, "?"]}})
    state_service.on_update(handle, update("guild_config", {"delta": bad}, guild_id=GUILD))
    await replied(handle)
    [reply] = handle.connection.sent
    assert isinstance(reply, ReplyError) and reply.code == "invalid"
    assert "Expected `int`, got `str`" in reply.message
    assert state_service.store.entries == {}


async def test_a_guild_too_big_for_one_frame_is_synced_in_chunks_under_the_budget(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_service, handle = service
    monkeypatch.setattr(state_service_module, "SYNC_CHUNK_BYTES", 4096)
    members = 400
    for user in range(1, members + 1):
        counter = CounterMap()
        counter.report("messages", 1, user, 0)
        await state_service.store.merge("member_activity", f"{GUILD}:{user}", counter)
    state_service.on_sync(handle, StateSync(nonce=7, deadline=deadline_in(5)))
    await replied(handle)  # sent by a task, as fast as the worker reads
    *chunks, answer = handle.connection.sent
    assert isinstance(answer, ReplyOk) and answer.payload == {"guilds": 1}
    assert len(chunks) > 1 and all(isinstance(chunk, GuildSync) for chunk in chunks)
    assert all(len(FrameEncoder().encode(chunk)) <= 4096 + 256 for chunk in chunks)
    synced = {key for chunk in chunks for key in chunk.state}
    assert synced == {f"member_activity:{GUILD}:{user}" for user in range(1, members + 1)}
