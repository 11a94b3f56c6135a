"""Which generation of shards handles a dispatch, around a live reshard's cutover.

While the bot reshards, two generations of sessions get the same guild's events: the old one,
serving, and the new one, filling its caches with its listeners muted. At the cutover the
master names one instant, a little ahead, to both: the old generation handles what belongs
before it, the new one what belongs from it on. A message or an interaction belongs where its
snowflake (its creation time, by Discord's clock) falls, so each is handled by exactly one
generation however late it arrives; an event without a snowflake of its own (a reaction, a
member update) belongs where its arrival falls, which both generations judge by this host's
clock within the few milliseconds between the two sessions' deliveries.
"""

from __future__ import annotations

import time
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
# Dispatches whose ``id`` is their own creation's snowflake.
CREATED = frozenset({"MESSAGE_CREATE", "INTERACTION_CREATE"})
# A session's own handshake: every generation's listeners take it (the worker's report of its
# shards' readiness is one of them).
HANDSHAKE = frozenset({"READY", "RESUMED"})


def snowflake_at(wall_time: float) -> int:
    """The lowest snowflake made at ``wall_time`` (seconds since the Unix epoch) or later."""
    return (int(wall_time * 1000) - DISCORD_EPOCH_MS) << 22


class CutoverGate:
    """This process's side of a cutover: a new generation's (muted until it) or an old one's."""

    __slots__ = ("at", "new", "snowflake")

    def __init__(self, new: bool) -> None:
        self.new = new
        self.at: float | None = None  # the cutover instant, wall clock, once named
        self.snowflake = 0

    def cut(self, at: float) -> None:
        self.at = at
        self.snowflake = snowflake_at(at)

    def ours(self, event_name: str, payload: Any) -> bool:
        """Whether this generation's listeners run for the dispatch."""
        if event_name in HANDSHAKE:
            return True
        if self.at is None:
            return not self.new  # before any cutover: the old serves, the new is muted
        if event_name in CREATED and isinstance(payload, dict) and "id" in payload:
            before = int(payload["id"]) < self.snowflake
        else:
            before = time.time() < self.at
        return before != self.new
