"""The merge strategies obey the CRDT laws (commutative, associative, idempotent), and replicas
that receive the same updates in any order, with duplicates and replays, converge."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.merge import AddWinsSet, Clock, CounterMap, LwwMap, Stamp

State = TypeVar("State", LwwMap, CounterMap, AddWinsSet)
ORIGINS = st.integers(min_value=1, max_value=4)
FIELDS = st.sampled_from(["prefix", "points", "messages", "afk", "mod_role"])
VALUES = st.one_of(st.integers(), st.text(max_size=5), st.none())

# -- states built from random updates ------------------------------------------------------

stamps = st.builds(
    Stamp,
    millis=st.integers(min_value=0, max_value=20),
    counter=st.integers(min_value=0, max_value=3),
    origin=ORIGINS,
)


@st.composite
def lww_maps(draw: st.DrawFn) -> LwwMap:
    state = LwwMap()
    for name, stamp in draw(st.lists(st.tuples(FIELDS, stamps), max_size=6)):
        # A stamp names one write: the value is a function of it, as with a real clock.
        state.set(name, hash((name, stamp)) % 1000, stamp)
    return state


@st.composite
def counter_maps(draw: st.DrawFn) -> CounterMap:
    state = CounterMap()
    for name, origin, up, down in draw(
        st.lists(st.tuples(FIELDS, ORIGINS, st.integers(0, 50), st.integers(0, 50)), max_size=6)
    ):
        state.report(name, origin, up, down)
    return state


@st.composite
def add_wins_sets(draw: st.DrawFn) -> AddWinsSet:
    state = AddWinsSet()
    for element, tag, remove in draw(
        st.lists(st.tuples(FIELDS, stamps, st.booleans()), max_size=6)
    ):
        if remove:
            state.remove(element)
        else:
            state.add(element, tag)
    return state


def merged(left: State, right: State) -> State:
    result = copy.deepcopy(left)
    result.merge(right)
    return result


def laws(states: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Any]:
    return given(states, states, states)


@settings(deadline=None)
@laws(lww_maps())
def test_lww_map_laws(a: LwwMap, b: LwwMap, c: LwwMap) -> None:
    check_laws(a, b, c)


@settings(deadline=None)
@laws(counter_maps())
def test_counter_map_laws(a: CounterMap, b: CounterMap, c: CounterMap) -> None:
    check_laws(a, b, c)


@settings(deadline=None)
@laws(add_wins_sets())
def test_add_wins_set_laws(a: AddWinsSet, b: AddWinsSet, c: AddWinsSet) -> None:
    check_laws(a, b, c)


def check_laws(a: State, b: State, c: State) -> None:
    assert merged(a, b).value() == merged(b, a).value()  # commutative
    assert merged(merged(a, b), c).value() == merged(a, merged(b, c)).value()  # associative
    assert merged(a, a).value() == a.value()  # idempotent
    assert merged(merged(a, b), b).value() == merged(a, b).value()  # a replay changes nothing


# -- convergence under concurrent updates, duplicates and replays --------------------------


@st.composite
def deliveries(draw: st.DrawFn, updates: int) -> list[int]:
    """An order in which one replica receives the updates: each at least once, some again."""
    order = draw(st.permutations(list(range(updates))))
    duplicates = draw(st.lists(st.integers(0, max(0, updates - 1)), max_size=updates))
    return list(order) + (duplicates if updates else [])


@settings(deadline=None)
@given(
    st.lists(st.tuples(ORIGINS, FIELDS, st.integers(1, 5)), min_size=1, max_size=12),
    st.data(),
)
def test_concurrent_counters_converge_with_nothing_lost_or_doubled(
    increments: list[tuple[int, str, int]], data: st.DataObject
) -> None:
    # Each origin turns its increments into running totals, the way a shard reports them.
    totals: dict[tuple[int, str], int] = {}
    updates = []
    for origin, name, amount in increments:
        totals[origin, name] = totals.get((origin, name), 0) + amount
        update = CounterMap()
        update.report(name, origin, totals[origin, name])
        updates.append(update)
    expected: dict[str, int] = {}
    for _, name, amount in increments:
        expected[name] = expected.get(name, 0) + amount
    for _ in range(3):  # three replicas, each in its own order
        replica = CounterMap()
        for index in data.draw(deliveries(len(updates))):
            replica.merge(updates[index])
        assert replica.value() == expected


@settings(deadline=None)
@given(st.lists(st.tuples(ORIGINS, FIELDS, VALUES), min_size=1, max_size=12), st.data())
def test_concurrent_field_writes_converge_to_the_latest(
    writes: list[tuple[int, str, Any]], data: st.DataObject
) -> None:
    clocks = {origin: Clock(origin) for origin in range(1, 5)}
    updates = []
    for origin, name, value in writes:
        update = LwwMap()
        update.set(name, value, clocks[origin].now())
        updates.append(update)
    replicas = []
    for _ in range(3):
        replica = LwwMap()
        for index in data.draw(deliveries(len(updates))):
            replica.merge(updates[index])
        replicas.append(replica.value())
    assert replicas[0] == replicas[1] == replicas[2]
    latest: dict[str, tuple[Stamp, Any]] = {}
    for update in updates:
        for name, (stamp, value) in update.fields.items():
            if name not in latest or stamp > latest[name][0]:
                latest[name] = (stamp, value)
    assert replicas[0] == {name: value for name, (_, value) in latest.items()}


@settings(deadline=None)
@given(st.lists(st.tuples(ORIGINS, FIELDS, st.booleans()), min_size=1, max_size=12), st.data())
def test_concurrent_grants_and_revocations_converge_and_adds_win(
    operations: list[tuple[int, str, bool]], data: st.DataObject
) -> None:
    clocks = {origin: Clock(origin) for origin in range(1, 5)}
    seen_by: dict[int, AddWinsSet] = {origin: AddWinsSet() for origin in range(1, 5)}
    updates = []
    for origin, element, revoke in operations:
        local = seen_by[origin]
        update = AddWinsSet()
        if revoke:  # revokes what this origin has seen granted
            update.removed = set(local.added.get(element, set()))
        else:
            update.add(element, clocks[origin].now())
        local.merge(update)
        updates.append(update)
    values = []
    for _ in range(3):
        replica = AddWinsSet()
        for index in data.draw(deliveries(len(updates))):
            replica.merge(updates[index])
        values.append(replica.value())
    assert values[0] == values[1] == values[2]


def test_a_grant_concurrent_with_a_revocation_survives() -> None:
    clock_a, clock_b = Clock(1), Clock(2)
    base = AddWinsSet()
    base.add("manage_messages", clock_a.now())
    revoked, regranted = copy.deepcopy(base), copy.deepcopy(base)
    revoked.remove("manage_messages")  # shard A revokes what it saw
    regranted.add("manage_messages", clock_b.now())  # shard B grants again, concurrently
    for first, second in itertools.permutations([revoked, regranted]):
        assert merged(first, second).value() == {"manage_messages"}


def test_the_clock_stays_ahead_of_what_it_has_seen() -> None:
    clock = Clock(1)
    far_ahead = Stamp(clock.now().millis + 60_000, 7, 2)
    clock.observe(far_ahead)
    readings = [clock.now() for _ in range(100)]
    assert readings[0] > far_ahead
    assert all(later > earlier for earlier, later in itertools.pairwise(readings))


def test_collecting_tombstones_keeps_the_value_and_a_concurrent_addition() -> None:
    seen, concurrent = Stamp(1, 0, 1), Stamp(2, 0, 2)
    state = AddWinsSet()
    state.add("123:kick", seen)
    state.add("123:kick", concurrent)  # another worker's grant, unseen by the revoker
    state.add("456:ban", Stamp(3, 0, 1))
    revoke = AddWinsSet()
    revoke.removed = {seen, Stamp(3, 0, 1)}
    state.merge(revoke)
    before = state.value()
    state.collect_tombstones()
    assert state.value() == before == {"123:kick"}
    assert state.added == {"123:kick": {concurrent}} and state.removed == set()
