"""What a worker's view of the shared state holds, and what it costs: user data is read on
demand and kept for at most ``user_cache`` users; changes for users it does not hold cost it
nothing; the cost per held user and per entry of its guilds stays within the figures
docs/scale.md gives."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from protocol.merge import AddWinsSet, CounterMap, LwwMap, Stamp
from protocol.messages import StateChanged, StateFetch
from protocol.state import encode_state
from worker.state import SharedState

# docs/scale.md: a held user with a short field costs at most this much of a worker's memory.
BYTES_PER_HELD_USER = 2048
# ... and an entry of one of its guilds (a config field, a member's counter, a grant).
BYTES_PER_GUILD_ENTRY = 2048


def user_entry(note: str, at: int) -> bytes:
    state = LwwMap()
    state.set("afk", note, Stamp(at, 0, 1))
    return encode_state(state)


class MasterStandIn:
    """Answers STATE_FETCH from its own table of users, and counts the fetches.

    A test that clears ``answering`` holds every answer until it sets it again: it decides when
    the answer lands, with the fetch known to be on its way (``asked``).
    """

    def __init__(self, users: dict[int, tuple[int, bytes]]) -> None:
        self.users = users
        self.fetches: list[int] = []
        self.asked = asyncio.Event()
        self.answering = asyncio.Event()
        self.answering.set()
        self._nonce = 0

    def next_nonce(self) -> int:
        self._nonce += 1
        return self._nonce

    async def call(self, request: Any) -> dict[str, Any]:
        assert isinstance(request, StateFetch)
        self.fetches.append(request.user_id)
        self.asked.set()
        await self.answering.wait()
        version, data = self.users.get(request.user_id, (0, None))
        return {"version": version, "data": data}

    async def fetch_on_its_way(self) -> None:
        await asyncio.wait_for(self.asked.wait(), 5.0)


def view(master: MasterStandIn, user_cache: int) -> SharedState:
    return SharedState(master, origin=1, request_timeout=5.0, user_cache=user_cache)  # type: ignore[arg-type]


def changed(user_id: int, version: int, note: str) -> StateChanged:
    return StateChanged(
        scope="user_data", key=str(user_id), version=version, data=user_entry(note, version)
    )


async def test_a_user_is_fetched_once_then_read_from_memory() -> None:
    master = MasterStandIn({7: (3, user_entry("lunch", 3))})
    state = view(master, user_cache=10)
    assert await state.user(7) == {"afk": "lunch"}
    assert await state.user(7) == {"afk": "lunch"}
    assert await state.user(8) == {}  # never written: known to be empty, not fetched again
    assert await state.user(8) == {}
    assert master.fetches == [7, 8]


async def test_at_most_user_cache_users_are_held_the_least_recently_read_dropped() -> None:
    master = MasterStandIn({n: (1, user_entry(f"n{n}", 1)) for n in range(1, 4)})
    state = view(master, user_cache=2)
    await state.user(1)
    await state.user(2)
    await state.user(1)  # 2 is now the least recently read
    await state.user(3)
    assert state.cached_user(2) is None
    assert state.cached_user(1) == {"afk": "n1"}
    assert state.cached_user(3) == {"afk": "n3"}
    await state.user(2)
    assert master.fetches == [1, 2, 3, 2]


async def test_changes_apply_to_held_users_only_and_never_go_backwards() -> None:
    master = MasterStandIn({5: (2, user_entry("old", 2))})
    state = view(master, user_cache=10)
    state.apply(changed(6, 9, "not held"))
    assert state.cached_user(6) is None
    await state.user(5)
    state.apply(changed(5, 4, "newer"))
    state.apply(changed(5, 3, "late and older"))
    assert state.cached_user(5) == {"afk": "newer"}
    assert state.version("user_data", "5") == 4


async def test_a_change_pushed_while_the_user_is_fetched_is_not_lost() -> None:
    master = MasterStandIn({5: (2, user_entry("at fetch", 2))})
    master.answering.clear()
    state = view(master, user_cache=10)
    reading = asyncio.create_task(state.user(5))
    await master.fetch_on_its_way()  # a newer change arrives before its answer
    state.apply(changed(5, 3, "pushed meanwhile"))
    master.answering.set()
    assert await reading == {"afk": "pushed meanwhile"}


async def test_concurrent_readers_of_one_user_share_one_fetch() -> None:
    master = MasterStandIn({5: (1, user_entry("x", 1))})
    master.answering.clear()
    state = view(master, user_cache=10)
    readers = asyncio.gather(*(state.user(5) for _ in range(10)))
    await master.fetch_on_its_way()  # every reader has asked by now; none has an answer
    master.answering.set()
    assert await readers == [{"afk": "x"}] * 10
    assert master.fetches == [5]


async def test_memory_is_bounded_by_user_cache_and_flat_for_users_not_held() -> None:
    users = 5_000
    master = MasterStandIn({n: (1, user_entry("gone fishing", 1)) for n in range(1, users + 1)})
    state = view(master, user_cache=1_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1, users + 1):
            await state.user(n)
        held = tracemalloc.get_traced_memory()[0] - before
        for n in range(users + 1, 3 * users):  # pushes of users this worker never read
            state.apply(changed(n, 2, "elsewhere"))
        flat = tracemalloc.get_traced_memory()[0] - before - held
    finally:
        tracemalloc.stop()
    assert sum(state.cached_user(n) is not None for n in range(1, users + 1)) == 1_000
    assert held <= 1_000 * BYTES_PER_HELD_USER, f"{held / 1_000:.0f} bytes per held user"
    assert flat <= 64 * 1024, f"{flat} bytes for {2 * users} users not held"


def guild_entry(scope: str, n: int) -> bytes:
    state: Any
    if scope == "guild_config":
        state = LwwMap()
        state.set("prefix", "?", Stamp(n, 0, 1))
    elif scope == "member_activity":
        state = CounterMap()
        state.report("messages", 1, n, 0)
    else:
        state = AddWinsSet()
        state.add("123:kick", Stamp(n, 0, 1))
    return encode_state(state)


@pytest.mark.parametrize(
    ("scope", "key"),
    [
        ("guild_config", str),
        ("member_activity", lambda n: f"{n}:{n}"),
        ("permissions", str),
    ],
)
def test_an_entry_of_the_workers_guilds_costs_what_the_docs_say(
    scope: str, key: Callable[[int], str]
) -> None:
    entries = 2_000
    state = view(MasterStandIn({}), user_cache=10)
    pushed = [
        StateChanged(scope=scope, key=key(n), version=1, data=guild_entry(scope, n))  # type: ignore[arg-type]
        for n in range(1, entries + 1)
    ]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for change in pushed:
            state.apply(change)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert state.version(scope, key(entries)) == 1
    assert held <= entries * BYTES_PER_GUILD_ENTRY, f"{held / entries:.0f} bytes per entry"
