"""Gateway sessions: what outlives a websocket so that a client can RESUME.

A session numbers its dispatches and keeps the last ``resume_buffer`` of them; a RESUME replays
those after the client's last seq. A session whose connection dropped stays resumable for
``resume_window`` seconds; one that was closed normally (1000/1001), invalidated or timed out is
ended and forgotten.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Protocol

from simulator.limits import Clock


class Outbox(Protocol):
    """Where a session's dispatches go while it has a connection."""

    def queue(self, frame: bytes) -> None: ...


class InvalidSeq(Exception):
    """The seq a RESUME names is ahead of the session or older than its buffer."""


class Session:
    __slots__ = (
        "buffer",
        "dropped_at",
        "ended",
        "guild_ids",
        "intents",
        "outbox",
        "seq",
        "session_id",
        "shard_count",
        "shard_id",
    )

    def __init__(
        self,
        session_id: str,
        shard_id: int,
        shard_count: int,
        intents: int,
        buffer_size: int,
    ) -> None:
        self.session_id = session_id
        self.shard_id = shard_id
        self.shard_count = shard_count
        self.intents = intents
        self.seq = 0
        self.buffer: deque[tuple[int, bytes]] = deque(maxlen=buffer_size)
        self.outbox: Outbox | None = None
        self.dropped_at = 0.0
        self.ended = False
        self.guild_ids: set[int] = set()

    def dispatch(self, event: bytes, data: bytes) -> None:
        """Number, keep and (when connected) send one op 0 payload; ``data`` is encoded JSON."""
        self.seq += 1
        frame = b'{"op":0,"s":%d,"t":"%s","d":%s}' % (self.seq, event, data)
        self.buffer.append((self.seq, frame))
        if self.outbox is not None:
            self.outbox.queue(frame)

    def missed_since(self, seq: int) -> list[bytes]:
        """The buffered dispatches after ``seq``, oldest first."""
        if seq > self.seq:
            raise InvalidSeq(f"seq {seq} is ahead of the session's {self.seq}")
        if seq == self.seq:
            return []
        oldest = self.buffer[0][0] if self.buffer else self.seq + 1
        if seq < oldest - 1:
            raise InvalidSeq(f"seq {seq} is older than the replay buffer (from {oldest})")
        return [frame for number, frame in self.buffer if number > seq]


class SessionRegistry:
    def __init__(self, resume_window: float, clock: Clock = time.monotonic) -> None:
        self.resume_window = resume_window
        self._clock = clock
        self._by_id: dict[str, Session] = {}
        # shard_count -> shard_id -> sessions: a guild's event goes to every session on its shard.
        self._by_shard: dict[int, dict[int, list[Session]]] = {}

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_id.values()))

    def add(self, session: Session) -> None:
        self._by_id[session.session_id] = session
        by_id = self._by_shard.setdefault(session.shard_count, {})
        by_id.setdefault(session.shard_id, []).append(session)

    def resumable(self, session_id: str, now: float | None = None) -> Session | None:
        session = self._by_id.get(session_id)
        if session is None or session.ended:
            return None
        now = self._clock() if now is None else now
        if session.outbox is None and now - session.dropped_at > self.resume_window:
            self.end(session)
            return None
        return session

    def detach(self, session: Session, now: float | None = None) -> None:
        """The session's connection went away; it stays resumable for the window."""
        session.outbox = None
        session.dropped_at = self._clock() if now is None else now

    def end(self, session: Session) -> None:
        session.ended = True
        session.outbox = None
        self._by_id.pop(session.session_id, None)
        shard_sessions = self._by_shard.get(session.shard_count, {}).get(session.shard_id, [])
        if session in shard_sessions:
            shard_sessions.remove(session)

    def for_guild(self, guild_id: int) -> Iterator[tuple[int, list[Session]]]:
        """Each shard count with sessions on the guild's shard, and those sessions."""
        shard_key = guild_id >> 22
        for shard_count, by_id in self._by_shard.items():
            sessions = by_id.get(shard_key % shard_count)
            if sessions:
                yield shard_count, sessions

    def shards(self) -> Iterator[tuple[int, int, list[Session]]]:
        """``(shard_count, shard_id, sessions)`` of every shard that has a session."""
        for shard_count, by_id in self._by_shard.items():
            for shard_id, sessions in by_id.items():
                if sessions:
                    yield shard_count, shard_id, sessions

    def expire(self, now: float | None = None) -> int:
        """End dropped sessions past the resume window; returns how many."""
        now = self._clock() if now is None else now
        expired = [
            session
            for session in self._by_id.values()
            if session.outbox is None and now - session.dropped_at > self.resume_window
        ]
        for session in expired:
            self.end(session)
        return len(expired)

    def connected(self) -> int:
        return sum(1 for session in self._by_id.values() if session.outbox is not None)
