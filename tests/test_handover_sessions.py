"""Which session a restarted worker's shard resumes: the newest of its latest session that is
at least the replay margin old, so that events received but not yet handled are replayed."""

from __future__ import annotations

import time

import pytest

from protocol.messages import ShardHealth
from sharder.workers import WorkerHandle
from worker.spec import Session


def report(handle: WorkerHandle, session_id: str, seq: int) -> None:
    handle.remember_session(
        ShardHealth(shard_id=0, state="ready", session_id=session_id, seq=seq, resume_url="ws://x")
    )


def test_the_session_a_margin_before_the_end_is_resumed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    handle = WorkerHandle(0, [0], 1, 0.1)
    for seq in (10, 20, 30, 40):  # reported at 1000, 1001, 1002, 1003; now is 1004
        report(handle, "a", seq)
        clock[0] += 1.0
    assert handle.sessions_to_resume(2.0) == {0: Session("a", 30, "ws://x")}  # reported at 1002
    assert handle.sessions_to_resume(0.0) == {0: Session("a", 40, "ws://x")}
    # Younger than the margin: the oldest report of that session, never another session's.
    report(handle, "b", 5)
    assert handle.sessions_to_resume(2.0) == {0: Session("b", 5, "ws://x")}


def test_reports_without_a_session_are_not_kept() -> None:
    handle = WorkerHandle(0, [0], 1, 0.1)
    handle.remember_session(ShardHealth(shard_id=0, state="connecting", guilds=3))
    assert handle.sessions_to_resume(0.0) == {}
    assert handle.guild_counts == {0: 3}
