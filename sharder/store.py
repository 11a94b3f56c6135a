"""The master's state store: the bot's shared data in SQLite (WAL), acknowledged only once durable.

Each (scope, key) holds one merged state (see ``protocol.merge``) and a version that grows with
every change. ``merge`` folds a change into memory at once and returns when the change is on
disk: changes that arrive while a commit is running wait for the next one, so a burst costs one
transaction and one fsync, not one per change (group commit). The schema carries its version in
``PRAGMA user_version`` and is migrated on open. A row that is no valid entry (a key that names
nothing, a state that does not decode) is moved to the ``quarantine`` table on open, with the
reason and a log line: never loaded, never fatal.

One master at a time: ``open`` takes an exclusive lock on ``PATH.lock`` (holding the holder's
pid) and refuses a file another sharder holds, checks that the journal is WAL and runs SQLite's
quick check. A commit that fails (a full disk) leaves memory as the last durable state: every
change not yet on disk is refused, not kept to be written later.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from pathlib import Path

import msgspec

from protocol.merge import AddWinsSet
from protocol.state import KINDS, Entry, MergeState, check_key, decode_state, encode_state
from sharder.measures import MEASURES

log = logging.getLogger("sharder.store")

SCHEMA_VERSION = 2
MIGRATIONS = {
    1: """
        CREATE TABLE state (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            version INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (scope, key)
        ) WITHOUT ROWID
    """,
    2: """
        CREATE TABLE quarantine (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            version INTEGER NOT NULL,
            data BLOB NOT NULL,
            reason TEXT NOT NULL
        )
    """,
}


UPSERT = (
    "INSERT INTO state (scope, key, version, data) VALUES (?, ?, ?, ?) ON CONFLICT (scope, key) "
    "DO UPDATE SET version = excluded.version, data = excluded.data"
)


class StoreError(Exception):
    """A change the store refuses (unknown scope, wrong kind of state); nothing was applied."""


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[tuple[str, str], Entry] = {}
        self.commits = 0
        self._db: sqlite3.Connection | None = None
        self._dirty: dict[tuple[str, str], Entry] = {}
        self._waiting: list[asyncio.Future[None]] = []
        self._committing: asyncio.Task[None] | None = None
        # Each key changed since its last durable state: that state (version and encoding), or
        # None where the key did not exist; a failed commit puts them back.
        self._undo: dict[tuple[str, str], tuple[int, bytes] | None] = {}
        self._lock: int | None = None

    def open(self) -> None:
        """Open (creating or migrating the schema) and load every state into memory."""
        self._take_lock()
        try:
            self._load()
        except BaseException:
            self._release_lock()
            raise

    def _take_lock(self) -> None:
        lock_path = f"{self.path}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"{self.path} is in use by another sharder (pid {holder}); one master per file"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock = fd

    def _release_lock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor lets go of the lock
            self._lock = None

    def _load(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            db.close()
            raise StoreError(f"{self.path} cannot use a write-ahead log (journal mode {mode})")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            db.close()
            raise StoreError(f"{self.path} is damaged: {check}")
        db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(
                f"{self.path} has schema {version}; this sharder knows {SCHEMA_VERSION}"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            db.execute("BEGIN")
            db.execute(MIGRATIONS[step])
            db.execute(f"PRAGMA user_version={step}")
            db.execute("COMMIT")
        bad = []
        for scope, key, entry_version, data in db.execute(
            "SELECT scope, key, version, data FROM state"
        ):
            try:
                check_key(scope, key)
                self.entries[scope, key] = Entry(entry_version, decode_state(data))
            except (ValueError, TypeError, KeyError, msgspec.MsgspecError) as error:
                log.error("state %s %r is not a valid entry, quarantined: %s", scope, key, error)
                bad.append((scope, key, entry_version, data, str(error)))
        if bad:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?)", bad)
            db.executemany(
                "DELETE FROM state WHERE scope = ? AND key = ?", [row[:2] for row in bad]
            )
            db.execute("COMMIT")
        self._db = db

    async def close(self) -> None:
        if self._committing is not None:
            await self._committing
        if self._db is not None:
            self._db.close()
            self._db = None
        self._release_lock()

    def get(self, scope: str, key: str) -> Entry | None:
        return self.entries.get((scope, key))

    async def merge(self, scope: str, key: str, change: MergeState) -> int:
        """Fold ``change`` into the state of (scope, key); its new version, once durable."""
        kind = KINDS.get(scope)
        if kind is None:
            raise StoreError(f"unknown scope {scope!r}; scopes are {', '.join(KINDS)}")
        if not isinstance(change, kind):
            raise StoreError(f"{scope} merges {kind.__name__}, not {type(change).__name__}")
        entry = self.entries.get((scope, key))
        if (scope, key) not in self._undo:
            self._undo[scope, key] = (
                (entry.version, encode_state(entry.state)) if entry is not None else None
            )
        if entry is None:
            entry = self.entries[scope, key] = Entry(0, kind())
        entry.state.merge(change)  # type: ignore[arg-type]
        if isinstance(entry.state, AddWinsSet):
            entry.state.collect_tombstones()  # grants revoked and regranted would grow for good
        entry.version += 1
        self._dirty[scope, key] = entry
        durable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(durable)
        if self._committing is None:
            self._committing = asyncio.get_running_loop().create_task(self._commit_loop())
        await durable
        return entry.version

    async def _commit_loop(self) -> None:
        try:
            while self._dirty:
                dirty, self._dirty = self._dirty, {}
                waiting, self._waiting = self._waiting, []
                rows = [
                    (scope, key, entry.version, encode_state(entry.state))
                    for (scope, key), entry in dirty.items()
                ]
                started = time.monotonic()
                try:
                    await asyncio.to_thread(self._write, rows)
                except Exception as error:
                    self._roll_back(waiting, error)
                    return
                MEASURES.state_commits.observe(time.monotonic() - started)
                MEASURES.state_commit_changes.observe(len(waiting))
                for scope, key, version, data in rows:
                    if (scope, key) in self._dirty:  # changed again meanwhile: undo to this
                        self._undo[scope, key] = (version, data)
                    else:
                        self._undo.pop((scope, key), None)
                self.commits += 1
                for future in waiting:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._committing = None

    def _roll_back(self, waiting: list[asyncio.Future[None]], error: Exception) -> None:
        """Memory back to the last durable state; every change not on disk is refused."""
        for (scope, key), before in self._undo.items():
            if before is None:
                self.entries.pop((scope, key), None)
            else:
                self.entries[scope, key] = Entry(before[0], decode_state(before[1]))
        refused = [*waiting, *self._waiting]
        log.error("the state store could not commit: %s; %d change(s) refused", error, len(refused))
        for future in refused:
            if not future.done():
                future.set_exception(StoreError(f"could not persist: {error}"))
        self._undo.clear()
        self._dirty.clear()
        self._waiting.clear()

    def _write(self, rows: list[tuple[str, str, int, bytes]]) -> None:
        db = self._db
        if db is None:
            raise StoreError("the store is closed")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(UPSERT, rows)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
