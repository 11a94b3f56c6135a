"""Which generation of shards handles a dispatch, around a live reshard's cutover.

While the bot reshards, two generations of sessions get the same guild's events: the old one,
serving, and the new one, filling its caches with its listeners muted. At the cutover the
master names one instant, a little ahead, to both: the old generation handles what belongs
before it, the new one what belongs from it on. A message or an interaction belongs where its
snowflake (its creation time, by Discord's clock) falls, so each is handled by exactly one
generation however late it arrives; an event without a snowflake of its own (a reaction, a
member update) belongs where its arrival falls, which both generations judge by this host's
clock within the few milliseconds between the two sessions' deliveries.

A message the old generation never got to handle (its shard was down: Discord closed it with
4011, which is why the bot reshards) is not lost: the new generation sets aside the messages
and interactions it received while muted, and once the old generation has gone and the master
knows every one it handled, runs the rest (``catch_up``), late.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
# Dispatches whose ``id`` is their own creation's snowflake.
CREATED = frozenset({"MESSAGE_CREATE", "INTERACTION_CREATE"})
# A session's own handshake: every generation's listeners take it (the worker's report of its
# shards' readiness is one of them).
HANDSHAKE = frozenset({"READY", "RESUMED"})
# Messages and interactions a new generation keeps while muted, the oldest dropped past it.
SET_ASIDE_MAX = 10_000
Held = tuple[str, int, Any]  # event name, shard id, payload


def created_id(event_name: str, payload: Any) -> int | None:
    """The snowflake of the message or interaction the dispatch made, if it made one."""
    if event_name in CREATED and isinstance(payload, dict) and "id" in payload:
        return int(payload["id"])
    return None


def snowflake_at(wall_time: float) -> int:
    """The lowest snowflake made at ``wall_time`` (seconds since the Unix epoch) or later."""
    return (int(wall_time * 1000) - DISCORD_EPOCH_MS) << 22


class CutoverGate:
    """This process's side of a cutover: a new generation's (muted until it) or an old one's."""

    __slots__ = ("at", "dropped", "new", "set_aside", "snowflake")

    def __init__(self, new: bool) -> None:
        self.new = new
        self.at: float | None = None  # the cutover instant, wall clock, once named
        self.snowflake = 0
        # A new generation's messages and interactions from before the instant, by snowflake.
        self.set_aside: OrderedDict[int, Held] = OrderedDict()
        self.dropped = 0  # set aside, then dropped past SET_ASIDE_MAX

    def hold(self, created: int, event_name: str, shard_id: int, payload: Any) -> None:
        """A message or interaction of the old generation's, received by a new one."""
        if not self.new:
            return
        self.set_aside[created] = (event_name, shard_id, payload)
        if len(self.set_aside) > SET_ASIDE_MAX:
            self.set_aside.popitem(last=False)
            self.dropped += 1

    def catch_up(self, handled: Collection[int], run: Callable[[Held], None]) -> int:
        """Run what was set aside from before the instant that the old generation did not
        handle (``handled``); how many. Nothing is set aside from then on."""
        missed = [
            held
            for created, held in self.set_aside.items()
            if created < self.snowflake and created not in handled
        ]
        self.set_aside.clear()
        self.new, self.at = False, None  # the serving generation now: everything is its own
        for held in missed:
            run(held)
        return len(missed)

    def cut(self, at: float) -> None:
        self.at = at
        self.snowflake = snowflake_at(at)

    def ours(self, event_name: str, payload: Any) -> bool:
        """Whether this generation's listeners run for the dispatch."""
        if event_name in HANDSHAKE:
            return True
        if self.at is None:
            return not self.new  # before any cutover: the old serves, the new is muted
        created = created_id(event_name, payload)
        before = created < self.snowflake if created is not None else time.time() < self.at
        return before != self.new
