"""Which gateway dispatches bot code has finished handling, for the master's ledger.

A dispatch is handled once every listener hikari started for it has returned (its reply sent,
its state written), or at once when it has none. Each shard's session keeps a floor (every
seq up to it handled) and the handled seqs past it; what changed goes to the master at the end
of the loop turn, so that a process killed a moment after a reply went out has already told
the master. A session resumed in another process starts from what the master kept: Discord
replays from the floor, and the replayed dispatches already handled are skipped before any
listener runs (``runs``). What is replayed and not known to be handled (its handler was
running when the process ended: its reply may or may not have gone out) runs with
``replaying`` set, which bot code reads as ``ctx.in_replay()``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

from protocol.messages import HANDLED_ABOVE_MAX, HANDLED_CREATED_MAX, ShardHandled
from worker.spec import Session

# True in the listeners of a replayed dispatch that an earlier process received but is not
# known to have finished: set while hikari consumes it, and copied into the listener tasks.
replaying: contextvars.ContextVar[bool] = contextvars.ContextVar("replaying", default=False)


class HandledSeqs:
    """One session's handled dispatches: a floor and the handled seqs past it."""

    __slots__ = ("above", "floor", "session_id")

    def __init__(
        self, session_id: str, floor: int = 0, above: frozenset[int] = frozenset()
    ) -> None:
        self.session_id = session_id
        self.floor = floor
        self.above = set(above)

    def add(self, seq: int) -> None:
        if seq <= self.floor:
            return
        above = self.above
        if seq != self.floor + 1:
            above.add(seq)
            if len(above) <= HANDLED_ABOVE_MAX:
                return
            # A handler that never ends holds the floor: give up on the oldest gap rather than
            # grow without bound (a process dying now would not replay it).
            seq = min(above)
            above.discard(seq)
        floor = seq
        while floor + 1 in above:
            floor += 1
            above.discard(floor)
        self.floor = floor

    def snapshot(self, shard_id: int) -> ShardHandled:
        return ShardHandled(
            shard_id=shard_id,
            session_id=self.session_id,
            floor=self.floor,
            above=sorted(self.above),
        )


class HandledDispatches:
    """Every shard's handled dispatches in this process, and the report of what changed."""

    def __init__(
        self,
        sessions: dict[int, Session],
        report: Callable[[list[ShardHandled], list[int]], None],
    ):
        """``report(shards, created)``: what moved on since the last report (``flush``)."""
        self._report = report
        self._created: list[int] = []  # snowflakes of messages and interactions handled
        self._shards: dict[int, HandledSeqs] = {}
        # Replayed dispatches of the resumed sessions: those handled before are skipped, the
        # others up to what the earlier process received are replays.
        self._replay: dict[int, tuple[str, frozenset[int], int]] = {}
        self._changed: set[int] = set()
        self.closed = False  # handing the sessions over: nothing more is handled here
        self._released: set[int] = set()  # shards moved to another worker: theirs now
        self._in_flight: dict[asyncio.Future[Any], int] = {}  # listeners running, by shard
        self._loop = asyncio.get_running_loop()
        self.resume(sessions)

    def resume(self, sessions: dict[int, Session]) -> None:
        """Shards that resume these sessions, handed over from an earlier process."""
        for shard_id, session in sessions.items():
            self._released.discard(shard_id)
            self._shards[shard_id] = HandledSeqs(session.session_id, session.seq, session.handled)
            self._replay[shard_id] = (session.session_id, session.handled, session.received)

    def release(self, shard_id: int) -> None:
        """The shard moves to another worker: what it dispatches from now on is replayed
        there, and runs no listener here."""
        self._released.add(shard_id)

    def runs(self, shard_id: int, session_id: str | None, seq: int) -> bool:
        """Whether listeners run for the dispatch: not once the sessions are being handed over
        (it is the next process's), nor for a replay of one handled in an earlier process."""
        if self.closed or shard_id in self._released:
            return False
        replay = self._replay.get(shard_id)
        return replay is None or replay[0] != session_id or seq not in replay[1]

    def replayed(self, shard_id: int, session_id: str | None, seq: int) -> bool:
        """Whether the dispatch (which runs) was received by an earlier process already."""
        replay = self._replay.get(shard_id)
        return replay is not None and replay[0] == session_id and seq <= replay[2]

    def consumed(
        self,
        shard_id: int,
        session_id: str,
        seq: int,
        listeners: list[asyncio.Future[Any]],
        created: int | None = None,
    ) -> None:
        """hikari consumed the dispatch and started ``listeners``: handled once they end.
        ``created``: the snowflake of the message or interaction it made, if bot code ran."""
        running = [listener for listener in listeners if not listener.done()]
        if not running:  # no listener for its events (most of a guild load): handled now
            self._handled(shard_id, session_id, seq, created)
            return
        done = running[0] if len(running) == 1 else asyncio.gather(*running)
        self._in_flight[done] = shard_id

        def finished(future: asyncio.Future[Any]) -> None:
            self._in_flight.pop(future, None)
            # A listener cancelled (the process stopping) did not handle it: it is replayed.
            if not future.cancelled() and future.exception() is None:
                self._handled(shard_id, session_id, seq, created)

        done.add_done_callback(finished)

    async def drain(self, timeout: float, shard_id: int | None = None) -> int:
        """Wait up to ``timeout`` for the listeners running now (of one shard, if given); how
        many did not end."""
        running = {future for future, shard in self._in_flight.items() if shard_id in (None, shard)}
        if not running:
            return 0
        _, pending = await asyncio.wait(running, timeout=timeout)
        return len(pending)

    def _handled(self, shard_id: int, session_id: str, seq: int, created: int | None) -> None:
        seqs = self._shards.get(shard_id)
        if seqs is None or seqs.session_id != session_id:
            seqs = self._shards[shard_id] = HandledSeqs(session_id)
            self._replay.pop(shard_id, None)
        seqs.add(seq)
        if not self._changed:
            self._loop.call_soon(self.flush)
        self._changed.add(shard_id)
        if created is not None:
            self._created.append(created)

    def flush(self) -> None:
        """Report the shards whose handled dispatches moved on since the last report."""
        if self._changed:
            created, self._created = (
                self._created[:HANDLED_CREATED_MAX],
                self._created[HANDLED_CREATED_MAX:],
            )
            self._report(
                [self._shards[shard_id].snapshot(shard_id) for shard_id in self._changed], created
            )
            self._changed.clear()
            if self._created:  # more than one report holds: the rest in the next
                self._changed.update(self._shards)
                self._loop.call_soon(self.flush)
