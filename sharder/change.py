"""What every change without downtime shares: a rolling restart (``rolling``), a shard move
(``moves``) and a live reshard (``resharding``) each run from the moment they are asked until
they end (done, failed or cancelled), are moved on by the supervisor's every pass (``advance``),
and say how long they took and why they ended as they did.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("sharder.supervisor")

State = TypeVar("State", bound=str)


class Change(abc.ABC, Generic[State]):
    def __init__(self, running: State, clock: Callable[[], float] = time.monotonic) -> None:
        """``running``: the state while it runs (``rolling``, ``moving``, ``resharding``)."""
        self.running = running
        self.state: State = running
        self.reason: str | None = None  # why it did not end done
        self.clock = clock
        self.started_at = clock()
        self.ended_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state == self.running

    @abc.abstractmethod
    def advance(self) -> None:
        """Move on as far as what happened allows (every supervisor pass)."""

    @abc.abstractmethod
    def what(self) -> str:
        """The change in words, for the log: "rolling restart of 4 workers"."""

    def took_s(self) -> float | None:
        """Start to end, once it ended."""
        return round(self.ended_at - self.started_at, 3) if self.ended_at is not None else None

    def _end(self, state: State, reason: str | None) -> None:
        self.state = state
        self.reason = reason
        self.ended_at = self.clock()
        took = self.ended_at - self.started_at
        if reason is None:
            log.info("%s %s in %.1f s", self.what(), state, took)
        else:
            log.error("%s %s after %.1f s: %s", self.what(), state, took, reason)
