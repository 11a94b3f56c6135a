"""``ctx.state``: a worker's view of the bot's shared state, kept in sync by the master.

Reads of this worker's guilds come from memory: their state is sent by the master when the
worker starts (before its shards connect) and after every change. A user's data is fetched from
the master the first time it is read (``await ctx.state.user(...)``) and kept, up to
``[state] user_cache`` users, the least recently read dropped first: no worker holds every
user. A write goes to the master, which merges it, makes it durable, pushes the new state to the
workers that may hold the key (this one included) and then acknowledges: when
``await ctx.state.set_guild_config(...)`` returns, the change is on disk and in this view. A
key's version never goes backwards here.

Counters are kept per origin (this worker): each write sends this worker's running total, so a
write delivered twice never counts twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from child.link import MasterLink, RequestError
from protocol.merge import AddWinsSet, Clock, CounterMap, LwwMap
from protocol.messages import (
    GuildSync,
    StateChanged,
    StateFetch,
    StateScope,
    StateSync,
    StateUpdate,
)
from protocol.state import (
    KINDS,
    Entry,
    MergeState,
    decode_state,
    encode_state,
    guild_of,
    key_of,
)

Listener = Callable[[str, str], None]
SYNC_TIMEOUT = 60.0


class StateError(Exception):
    """A write the master refused or did not acknowledge; it may not have been applied."""


class SharedState:
    def __init__(
        self, link: MasterLink, origin: int, request_timeout: float, user_cache: int
    ) -> None:
        self._link = link
        self._origin = origin
        self._timeout = request_timeout
        self._clock = Clock(origin)
        self._entries: dict[tuple[str, str], Entry] = {}  # of this worker's guilds
        # Users read lately, the least recently read first; and those being fetched, whose
        # changes are kept meanwhile (the answer may predate them).
        self._users: OrderedDict[str, Entry] = OrderedDict()
        self._user_cache = user_cache
        self._fetching: dict[str, asyncio.Future[None]] = {}
        self._totals: dict[tuple[str, str], tuple[int, int]] = {}  # (key, field): this origin's
        self._listeners: list[Listener] = []

    # -- keeping in sync ---------------------------------------------------------------------

    async def sync(self) -> int:
        """Receive the state this worker holds; the number of guilds that have any."""
        request = StateSync(nonce=self._link.next_nonce(), deadline=time.monotonic() + SYNC_TIMEOUT)
        try:
            answer = await self._link.call(request)
        except RequestError as failure:
            raise StateError(f"state sync failed: {failure}") from None
        return int(answer["guilds"])

    def apply(self, message: StateChanged | GuildSync) -> None:
        if isinstance(message, StateChanged):
            self._apply(message.scope, message.key, message.version, message.data)
            return
        for scoped_key, (version, data) in message.state.items():
            scope, _, key = scoped_key.partition(":")
            self._apply(scope, key, version, data)

    def forget_guilds(self, leaving: Callable[[int], bool]) -> int:
        """Drop what this worker holds of the guilds ``leaving(guild_id)`` names (their shard
        moved to another worker, which is sent their state); how many entries went."""
        gone = {
            (scope, key)
            for scope, key in self._entries
            if (guild_id := guild_of(scope, key)) is not None and leaving(guild_id)
        }
        for scoped_key in gone:
            del self._entries[scoped_key]
        keys = {key for _, key in gone}
        self._totals = {total: kept for total, kept in self._totals.items() if total[0] not in keys}
        return len(gone)

    def subscribe(self, listener: Listener) -> None:
        """``listener(scope, key)`` after every change this view takes."""
        self._listeners.append(listener)

    # -- reading -----------------------------------------------------------------------------

    def guild_config(self, guild_id: int) -> dict[str, Any]:
        state = self._state("guild_config", key_of("guild_config", guild_id, 0))
        return state.value() if isinstance(state, LwwMap) else {}

    def activity(self, guild_id: int, user_id: int) -> dict[str, int]:
        state = self._state("member_activity", key_of("member_activity", guild_id, user_id))
        return state.value() if isinstance(state, CounterMap) else {}

    def grants(self, guild_id: int) -> set[str]:
        state = self._state("permissions", key_of("permissions", guild_id, 0))
        return state.value() if isinstance(state, AddWinsSet) else set()

    async def user(self, user_id: int) -> dict[str, Any]:
        """The user's data: from this worker's memory, or fetched from the master once."""
        key = key_of("user_data", 0, user_id)
        if key not in self._users:
            await self._fetch_user(user_id, key)
        found = self.cached_user(user_id)
        if found is None:  # the fetch this reader waited for, another reader's, failed
            raise StateError(f"user {user_id}'s data could not be read")
        return found

    def cached_user(self, user_id: int) -> dict[str, Any] | None:
        """The user's data if this worker holds it (read lately), without asking the master:
        for plain handlers and listeners, which cannot wait."""
        key = key_of("user_data", 0, user_id)
        entry = self._users.get(key)
        if entry is None:
            return None
        self._users.move_to_end(key)
        return entry.state.value() if isinstance(entry.state, LwwMap) else {}

    def top(self, guild_id: int, name: str, limit: int = 10) -> list[tuple[int, int]]:
        """The guild's members with the highest counter ``name``: ``[(user_id, count)]``."""
        prefix = f"{guild_id}:"
        ranking = [
            (int(key[len(prefix) :]), entry.state.value().get(name, 0))
            for (scope, key), entry in self._entries.items()
            if scope == "member_activity"
            and key.startswith(prefix)
            and isinstance(entry.state, CounterMap)
        ]
        ranking.sort(key=lambda pair: (-pair[1], pair[0]))
        return ranking[:limit]

    def version(self, scope: str, key: str) -> int:
        entry = self._users.get(key) if scope == "user_data" else self._entries.get((scope, key))
        return entry.version if entry is not None else 0

    # -- writing -------------------------------------------------------------------------------

    async def set_guild_config(self, guild_id: int, **fields: Any) -> int:
        return await self._write("guild_config", self._fields(fields), guild_id=guild_id)

    async def set_user(self, user_id: int, **fields: Any) -> int:
        return await self._write("user_data", self._fields(fields), user_id=user_id)

    async def count(self, guild_id: int, user_id: int, name: str, amount: int = 1) -> int:
        """Add ``amount`` (may be negative) to a member's counter ``name``."""
        key = key_of("member_activity", guild_id, user_id)
        up, down = self._own_totals(key, name)
        up, down = (up + amount, down) if amount >= 0 else (up, down - amount)
        self._totals[key, name] = (up, down)
        change = CounterMap()
        change.report(name, self._origin, up, down)
        return await self._write("member_activity", change, guild_id=guild_id, user_id=user_id)

    async def grant(self, guild_id: int, item: str) -> int:
        change = AddWinsSet()
        change.add(item, self._clock.now())
        return await self._write("permissions", change, guild_id=guild_id)

    async def revoke(self, guild_id: int, item: str) -> int:
        """Remove the grants of ``item`` this view has seen (a concurrent grant survives)."""
        seen = self._entries.get(("permissions", key_of("permissions", guild_id, 0)))
        change = AddWinsSet()
        if seen is not None and isinstance(seen.state, AddWinsSet):
            change.removed = set(seen.state.added.get(item, set()))
        return await self._write("permissions", change, guild_id=guild_id)

    # -- internals -------------------------------------------------------------------------------

    def _apply(self, scope: str, key: str, version: int, data: bytes) -> None:
        if scope == "user_data":
            if key not in self._users and key not in self._fetching:
                return  # a user this worker does not hold: read from the master when asked
            current = self._users.get(key)
        else:
            current = self._entries.get((scope, key))
        if current is not None and version <= current.version:
            return  # never backwards: an older push arriving late changes nothing
        self._store(scope, key, Entry(version, decode_state(data)))
        for listener in self._listeners:
            listener(scope, key)

    def _store(self, scope: str, key: str, entry: Entry) -> None:
        if scope != "user_data":
            self._entries[scope, key] = entry
            return
        self._users[key] = entry
        self._users.move_to_end(key)
        while len(self._users) > self._user_cache:
            self._users.popitem(last=False)

    async def _fetch_user(self, user_id: int, key: str) -> None:
        """Fetch one user's entry; readers of a user being fetched wait for the same answer."""
        pending = self._fetching.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fetching[key] = done
        request = StateFetch(
            nonce=self._link.next_nonce(),
            deadline=time.monotonic() + self._timeout,
            user_id=user_id,
        )
        try:
            answer = await self._link.call(request)
            fetched = (
                Entry(answer["version"], decode_state(answer["data"]))
                if answer["data"] is not None
                else Entry(0, LwwMap())
            )
            current = self._users.get(key)  # a change pushed while we waited may be newer
            if current is None or fetched.version > current.version:
                self._store("user_data", key, fetched)
        except RequestError as failure:
            raise StateError(f"user {user_id}'s data could not be read: {failure}") from None
        finally:
            del self._fetching[key]
            done.set_result(None)

    def _state(self, scope: str, key: str) -> MergeState | None:
        entry = self._entries.get((scope, key))
        return entry.state if entry is not None else None

    def _own_totals(self, key: str, name: str) -> tuple[int, int]:
        known = self._totals.get((key, name))
        if known is not None:
            return known
        entry = self._entries.get(("member_activity", key))
        if entry is not None and isinstance(entry.state, CounterMap):
            # After a restart this origin continues from what the master kept for it.
            return entry.state.counts.get(name, {}).get(self._origin, (0, 0))
        return 0, 0

    def _fields(self, fields: dict[str, Any]) -> LwwMap:
        if not fields:
            raise StateError("no fields to set")
        change = LwwMap()
        stamp = self._clock.now()
        for name, value in fields.items():
            change.set(name, value, stamp)
        return change

    async def _write(
        self, scope: StateScope, change: Any, *, guild_id: int = 0, user_id: int = 0
    ) -> int:
        assert isinstance(change, KINDS[scope])
        request = StateUpdate(
            nonce=self._link.next_nonce(),
            deadline=time.monotonic() + self._timeout,
            scope=scope,
            changes={"delta": encode_state(change)},
            guild_id=guild_id,
            user_id=user_id,
        )
        try:
            answer = await self._link.call(request)
        except RequestError as failure:
            raise StateError(f"{scope} change not acknowledged: {failure}") from None
        return int(answer["version"])
