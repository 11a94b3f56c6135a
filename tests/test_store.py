"""The state store: merged states survive a reopen and a kill -9 (every acknowledged change is
there), many changes share one commit, and bad changes are refused without effect."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from protocol.merge import AddWinsSet, Clock, CounterMap, LwwMap
from protocol.state import Entry, encode_state
from sharder.store import SCHEMA_VERSION, StateStore, StoreError

ROOT = Path(__file__).resolve().parent.parent


def counters(entry: Entry | None) -> dict[str, int]:
    assert entry is not None and isinstance(entry.state, CounterMap)
    return entry.state.value()


async def test_states_and_versions_survive_a_reopen(tmp_path: Path) -> None:
    clock = Clock(1)
    store = StateStore(tmp_path / "state.db")
    store.open()
    config = LwwMap()
    config.set("prefix", "?", clock.now())
    assert await store.merge("guild_config", "42", config) == 1
    points = CounterMap()
    points.report("points", origin=3, increments=7)
    assert await store.merge("member_activity", "42:9", points) == 1
    grants = AddWinsSet()
    grants.add("role:5:manage", clock.now())
    await store.merge("permissions", "42", grants)
    config.set("prefix", "!", clock.now())
    assert await store.merge("guild_config", "42", config) == 2
    await store.close()

    again = StateStore(tmp_path / "state.db")
    again.open()
    assert again.get("guild_config", "42").state.value() == {"prefix": "!"}  # type: ignore[union-attr]
    assert again.get("guild_config", "42").version == 2  # type: ignore[union-attr]
    assert counters(again.get("member_activity", "42:9")) == {"points": 7}
    assert again.get("permissions", "42").state.value() == {"role:5:manage"}  # type: ignore[union-attr]
    await again.close()


async def test_concurrent_changes_share_commits(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.open()

    async def bump(origin: int, total: int) -> int:
        change = CounterMap()
        change.report("messages", origin, total)
        return await store.merge("member_activity", f"1:{origin % 50}", change)

    await asyncio.gather(*(bump(origin, 1) for origin in range(2000)))
    assert store.commits < 100, store.commits  # not one commit per change
    total = sum(
        counters(entry)["messages"]
        for (scope, _), entry in store.entries.items()
        if scope == "member_activity"
    )
    assert total == 2000
    await store.close()


async def test_a_bad_change_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.open()
    with pytest.raises(StoreError, match="unknown scope 'karma'"):
        await store.merge("karma", "1", LwwMap())
    with pytest.raises(StoreError, match="guild_config merges LwwMap, not CounterMap"):
        await store.merge("guild_config", "1", CounterMap())
    assert store.entries == {} and store.commits == 0
    await store.close()


def test_the_schema_is_versioned_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    store.open()
    asyncio.run(store.close())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="has schema"):
        StateStore(path).open()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from protocol.merge import CounterMap
    from sharder.store import StateStore

    async def main() -> None:
        store = StateStore(Path(sys.argv[1]))
        store.open()
        total = 0
        while True:
            total += 1
            change = CounterMap()
            change.report("points", origin=1, increments=total)
            await store.merge("member_activity", "7:8", change)
            print(total, flush=True)  # acknowledged

    asyncio.run(main())
    """
)


def test_every_acknowledged_change_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    acknowledged = 0
    try:
        assert writer.stdout is not None
        for line in writer.stdout:
            acknowledged = int(line)
            if acknowledged >= 300:
                break
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert acknowledged >= 300
    store = StateStore(path)
    store.open()
    entry = store.get("member_activity", "7:8")
    assert entry is not None and counters(entry)["points"] >= acknowledged
    asyncio.run(store.close())


async def test_rows_that_are_no_valid_entry_are_quarantined_on_open_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    store.open()
    good = LwwMap()
    good.set("prefix", "?", Clock(1).now())
    await store.merge("guild_config", "12345", good)
    await store.close()
    with sqlite3.connect(path) as db:  # what an old version or a bad hand let in
        rows = [
            ("guild_config", "abc", 1, encode_state(good)),
            ("guild_config", "-5", 1, encode_state(good)),
            ("user_data", "1_000", 1, encode_state(good)),
            ("guild_config", "777", 1, b"\xc1 not msgpack"),
            ("guild_config", "778", 1, msgspec.msgpack.encode({"lww": {"x": ["1", 0, 1, 2]}})),
        ]
        db.executemany("INSERT INTO state VALUES (?, ?, ?, ?)", rows)
    again = StateStore(path)
    again.open()
    try:
        assert list(again.entries) == [("guild_config", "12345")]
        for scope, key, *_ in rows:
            assert f"state {scope} {key!r} is not a valid entry, quarantined" in caplog.text
    finally:
        await again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == len(rows)
        assert db.execute("SELECT COUNT(*) FROM state").fetchone()[0] == 1


async def test_a_second_store_on_one_file_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = StateStore(tmp_path / "state.db")
    first.open()
    try:
        with pytest.raises(StoreError, match=rf"in use by another sharder \(pid {os.getpid()}\)"):
            StateStore(tmp_path / "state.db").open()
    finally:
        await first.close()
    again = StateStore(tmp_path / "state.db")  # the lock went with the first
    again.open()
    await again.close()


async def test_a_failed_commit_leaves_memory_as_the_last_durable_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path / "state.db")
    store.open()
    try:
        clock = Clock(1)
        kept = LwwMap()
        kept.set("prefix", "!", clock.now())
        assert await store.merge("guild_config", "1", kept) == 1

        def disk_full(rows: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(store, "_write", disk_full)
        lost = LwwMap()
        lost.set("prefix", "?", clock.now())
        fresh = LwwMap()
        fresh.set("name", "new", clock.now())
        results = await asyncio.gather(
            store.merge("guild_config", "1", lost),
            store.merge("guild_config", "2", fresh),
            return_exceptions=True,
        )
        assert all(isinstance(result, StoreError) for result in results), results
        entry = store.get("guild_config", "1")
        assert entry is not None and entry.version == 1 and entry.state.value() == {"prefix": "!"}
        assert store.get("guild_config", "2") is None
        monkeypatch.undo()
        assert await store.merge("guild_config", "2", fresh) == 1  # and it carries on
    finally:
        await store.close()


async def test_revoked_grants_leave_no_tombstones_in_the_store(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.open()
    try:
        clock = Clock(1)
        for _ in range(200):  # granted and revoked again and again, as a busy bot does
            grant = AddWinsSet()
            grant.add("123:kick", clock.now())
            await store.merge("permissions", "42", grant)
            entry = store.get("permissions", "42")
            assert entry is not None and isinstance(entry.state, AddWinsSet)
            revoke = AddWinsSet()
            revoke.removed = set(entry.state.added["123:kick"])
            await store.merge("permissions", "42", revoke)
        entry = store.get("permissions", "42")
        assert entry is not None and isinstance(entry.state, AddWinsSet)
        assert entry.state.value() == set() and entry.state.removed == set()
        assert entry.state.added == {}
        kept = AddWinsSet()
        kept.add("123:ban", clock.now())
        await store.merge("permissions", "42", kept)
        assert entry.state.value() == {"123:ban"}
    finally:
        await store.close()
