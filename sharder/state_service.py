"""The master's side of shared state: a worker's change is merged, made durable, pushed to the
workers that may hold its key, and only then acknowledged; a starting worker is sent the state
of its guilds before its shards connect.

A guild's keys live with the worker that owns the guild's shard. User data lives here: a worker
fetches a user's entry when it reads it and keeps a bounded number of them, so no worker's
memory grows with every user the bot has written about; every change of a user's data is
pushed to every worker, which applies it if it holds that user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from protocol import ProtocolError, RoutingTable, shard_for_guild
from protocol.merge import Clock, LwwMap
from protocol.messages import (
    GuildSync,
    Message,
    ReplyError,
    ReplyOk,
    StateChanged,
    StateFetch,
    StateScope,
    StateSync,
    StateUpdate,
)
from protocol.state import Entry, check_key, decode_state, encode_state, guild_of, key_of
from sharder.store import StateStore, StoreError
from sharder.workers import WorkerHandle

log = logging.getLogger("sharder.state")

MAX_DELTA = 64 * 1024  # bytes of one change; more is refused
# A guild's state goes in GUILD_SYNCs of about this much, far under the frame cap, whatever the
# guild's size (200,000 members with counters would fill 16 MiB in one).
SYNC_CHUNK_BYTES = 1024 * 1024
MASTER_ORIGIN = 0


class StateService:
    def __init__(
        self, store: StateStore, table: RoutingTable, workers: Mapping[int, WorkerHandle]
    ) -> None:
        self.store = store
        self.table = table
        self.workers = workers
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock = Clock(MASTER_ORIGIN)
        # While a reshard's new generation starts: who will own each guild after the cutover.
        self.incoming: RoutingTable | None = None

    def on_update(self, handle: WorkerHandle, update: StateUpdate) -> None:
        task = asyncio.get_running_loop().create_task(self._update(handle, update))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_sync(self, handle: WorkerHandle, request: StateSync) -> None:
        """Send the worker everything its shards hold, then answer the request."""
        # By the worker's own shards and count: a reshard's new generation counts differently.
        owned, count = set(handle.shard_ids), handle.shard_count
        syncs = self._guild_syncs(lambda guild_id: shard_for_guild(guild_id, count) in owned)
        answer = ReplyOk(nonce=request.nonce, payload={"guilds": len({s.guild_id for s in syncs})})
        self._send_in_order(handle, [*syncs, answer])

    def sync_shard(self, handle: WorkerHandle, shard_id: int, then: Message) -> None:
        """Send the worker everything one shard's guilds hold (the shard moved to it), then
        ``then``, in that order."""
        count = handle.shard_count
        syncs = self._guild_syncs(lambda guild_id: shard_for_guild(guild_id, count) == shard_id)
        self._send_in_order(handle, [*syncs, then])

    def _guild_syncs(self, wanted: Callable[[int], bool]) -> list[GuildSync]:
        """The state of the guilds ``wanted`` names, in chunks of about ``SYNC_CHUNK_BYTES``."""
        per_guild: defaultdict[int, list[GuildSync]] = defaultdict(list)
        sizes: dict[int, int] = {}
        for (scope, key), entry in self.store.entries.items():
            guild_id = guild_of(scope, key)
            if guild_id is None or not wanted(guild_id):
                continue
            data = encode_state(entry.state)
            chunks = per_guild[guild_id]
            size = len(data) + len(key) + 32  # the key, scope, version and msgpack's framing
            if not chunks or sizes[guild_id] + size > SYNC_CHUNK_BYTES:
                chunks.append(GuildSync(guild_id=guild_id, version=0, state={}))
                sizes[guild_id] = 0
            chunk = chunks[-1]
            chunk.state[f"{scope}:{key}"] = [entry.version, data]
            chunk.version = max(chunk.version, entry.version)
            sizes[guild_id] += size
        return [chunk for chunks in per_guild.values() for chunk in chunks]

    def _send_in_order(self, handle: WorkerHandle, messages: list[Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._send_paced(handle, messages))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _send_paced(handle: WorkerHandle, messages: list[Any]) -> None:
        """Send as fast as the worker reads: a large state is more than a link may hold."""
        connection = handle.connection
        for message in messages:
            if connection is not None and connection.is_open and not connection.writable:
                with contextlib.suppress(ProtocolError):
                    await connection.wait_writable()
            if connection is None or not connection.is_open:
                return  # gone: its next process asks again
            connection.send_soon(message)

    def on_fetch(self, handle: WorkerHandle, request: StateFetch) -> None:
        """A user's entry, as the store has it now."""
        entry = self.store.get("user_data", key_of("user_data", 0, request.user_id))
        answer = (
            {"version": entry.version, "data": encode_state(entry.state)}
            if entry is not None
            else {"version": 0, "data": None}
        )
        self._send(handle, [ReplyOk(nonce=request.nonce, payload=answer)])

    async def set_fields(self, scope: StateScope, key: str, fields: dict[str, Any]) -> int:
        """A change made on the master itself (``sharder state set``)."""
        if scope not in ("guild_config", "user_data"):
            raise StoreError(f"{scope} cannot be set field by field; only guild_config, user_data")
        check_key(scope, key)  # ValueError: it would fail every worker's sync
        change = LwwMap()
        stamp = self._clock.now()
        for name, value in fields.items():
            change.set(name, value, stamp)
        version = await self.store.merge(scope, key, change)
        self._push(scope, key)
        return version

    def value(self, scope: str, key: str) -> Any:
        entry = self.store.get(scope, key)
        if entry is None:
            return None
        value = entry.state.value()
        return sorted(value) if isinstance(value, set) else value

    async def _update(self, handle: WorkerHandle, update: StateUpdate) -> None:
        try:
            change = self._decode(update)
            key = check_key(update.scope, key_of(update.scope, update.guild_id, update.user_id))
            version = await self.store.merge(update.scope, key, change)
        except (StoreError, ValueError, TypeError, msgspec.DecodeError) as error:
            self._send(handle, [ReplyError(nonce=update.nonce, code="invalid", message=str(error))])
            return
        self._push(update.scope, key)  # before the acknowledgement: the writer's view has it then
        self._send(handle, [ReplyOk(nonce=update.nonce, payload={"version": version})])

    def _decode(self, update: StateUpdate) -> Any:
        data = update.changes.get("delta")
        if not isinstance(data, bytes) or set(update.changes) != {"delta"}:
            raise ValueError("changes must be exactly {'delta': bytes}")
        if len(data) > MAX_DELTA:
            raise ValueError(f"a change of {len(data)} bytes; the limit is {MAX_DELTA}")
        if update.scope == "member_activity" and not (update.guild_id and update.user_id):
            raise ValueError("member_activity needs guild_id and user_id")
        if update.scope == "user_data" and not update.user_id:
            raise ValueError("user_data needs user_id")
        if update.scope in ("guild_config", "permissions") and not update.guild_id:
            raise ValueError(f"{update.scope} needs guild_id")
        try:
            return decode_state(data)
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"not a merge state: {error!r}") from None

    def _push(self, scope: str, key: str) -> None:
        entry = self.store.get(scope, key)
        assert entry is not None
        message = self._changed(scope, key, entry)
        guild_id = guild_of(scope, key)
        if guild_id is None:
            targets = list(self.workers.values())
        else:
            targets = [self.workers[self.table.owner_of_guild(guild_id)]]
            if self.incoming is not None:  # a reshard's new generation, filling its state
                targets.append(self.workers[self.incoming.owner_of_guild(guild_id)])
        for target in targets:
            self._send(target, [message])
            if target.standby is not None:  # loading the worker's state to take its place
                self._send(target.standby, [message])

    @staticmethod
    def _changed(scope: str, key: str, entry: Entry) -> StateChanged:
        return StateChanged(
            scope=scope,  # type: ignore[arg-type]
            key=key,
            version=entry.version,
            data=encode_state(entry.state),
        )

    @staticmethod
    def _send(handle: WorkerHandle, messages: list[Any]) -> None:
        connection = handle.connection
        if connection is not None and connection.is_open:
            for message in messages:
                connection.send_soon(message)
