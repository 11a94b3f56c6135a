"""Merge strategies for the bot's shared state: each kind of data merges one explicit way.

Every strategy is a state-based CRDT: ``merge`` is commutative, associative and idempotent, so
replicas that have seen the same updates, in any order, any number of times, agree. That is what
lets updates be replayed after a crash, delivered twice, or race between shards.

- guild configuration, cross-guild user data: ``LwwMap``, per-field last-writer-wins ordered by a
  hybrid logical clock (``Stamp``), ties broken by origin;
- member activity: ``CounterMap``, per-field counters kept per origin; an origin reports its own
  running totals, so a replayed update never double-counts and concurrent increments from
  different origins all count;
- permissions: ``AddWinsSet``, an observed-remove set: a removal removes only the additions it
  has seen, so an addition concurrent with a removal survives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Stamp(NamedTuple):
    """A hybrid logical clock reading: wall milliseconds, a counter, and the origin's id."""

    millis: int
    counter: int
    origin: int


class Clock:
    """Issues stamps that grow monotonically and stay ahead of every stamp seen."""

    def __init__(self, origin: int) -> None:
        self.origin = origin
        self.last = Stamp(0, 0, origin)

    def now(self) -> Stamp:
        millis = int(time.time() * 1000)
        last = self.last
        self.last = (
            Stamp(millis, 0, self.origin)
            if millis > last.millis
            else Stamp(last.millis, last.counter + 1, self.origin)
        )
        return self.last

    def observe(self, seen: Stamp) -> None:
        if seen[:2] > self.last[:2]:
            self.last = Stamp(seen.millis, seen.counter, self.origin)


@dataclass(slots=True)
class LwwMap:
    """field -> (stamp, value); the later stamp wins, field by field."""

    fields: dict[str, tuple[Stamp, Any]] = field(default_factory=dict)

    def set(self, name: str, value: Any, stamp: Stamp) -> None:
        current = self.fields.get(name)
        if current is None or stamp > current[0]:
            self.fields[name] = (stamp, value)

    def merge(self, other: LwwMap) -> None:
        for name, (stamp, value) in other.fields.items():
            self.set(name, value, stamp)

    def value(self) -> dict[str, Any]:
        return {name: value for name, (_, value) in self.fields.items()}


@dataclass(slots=True)
class CounterMap:
    """field -> origin -> (increments, decrements), each a running total of that origin."""

    counts: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)

    def report(self, name: str, origin: int, increments: int, decrements: int = 0) -> None:
        """An origin's running totals; older (smaller) reports change nothing."""
        per_origin = self.counts.setdefault(name, {})
        up, down = per_origin.get(origin, (0, 0))
        per_origin[origin] = (max(up, increments), max(down, decrements))

    def merge(self, other: CounterMap) -> None:
        for name, per_origin in other.counts.items():
            for origin, (up, down) in per_origin.items():
                self.report(name, origin, up, down)

    def value(self) -> dict[str, int]:
        return {
            name: sum(up - down for up, down in per_origin.values())
            for name, per_origin in self.counts.items()
        }


@dataclass(slots=True)
class AddWinsSet:
    """element -> the tags of its additions; removal tags are kept, so removals merge too."""

    added: dict[str, set[Stamp]] = field(default_factory=dict)
    removed: set[Stamp] = field(default_factory=set)

    def add(self, element: str, tag: Stamp) -> None:
        self.added.setdefault(element, set()).add(tag)

    def remove(self, element: str) -> None:
        """Remove the additions of ``element`` seen so far (a concurrent addition survives)."""
        self.removed |= self.added.get(element, set())

    def merge(self, other: AddWinsSet) -> None:
        for element, tags in other.added.items():
            self.added.setdefault(element, set()).update(tags)
        self.removed |= other.removed

    def value(self) -> set[str]:
        return {element for element, tags in self.added.items() if tags - self.removed}

    def collect_tombstones(self) -> None:
        """Forget removed additions together with their removals: the set as if they had never
        been added, its value unchanged.

        Safe only where a removed addition cannot arrive again: the master's store, where an
        addition is merged before any removal of it (a worker removes only additions the
        master sent it) and no change is delivered twice, and where workers take whole states,
        never merge them. Anywhere else a tombstone is what stops a late copy of an addition.
        """
        if not self.removed:
            return
        for element in list(self.added):
            live = self.added[element] - self.removed
            if live:
                self.added[element] = live
            else:
                del self.added[element]
        self.removed.clear()
