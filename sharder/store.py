"""The master's state store: the bot's shared data in SQLite (WAL), acknowledged only once durable.

Each (scope, key) holds one merged state (see ``sharder.merge``) and a version that grows with
every change. ``merge`` folds a change into memory at once and returns when the change is on
disk: changes that arrive while a commit is running wait for the next one, so a burst costs one
transaction and one fsync, not one per change (group commit). The schema carries its version in
``PRAGMA user_version`` and is migrated on open. A row that is no valid entry (a key that names
nothing, a state that does not decode) is moved to the ``quarantine`` table on open, with the
reason and a log line: never loaded, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

import msgspec

from protocol.state import KINDS, Entry, MergeState, check_key, decode_state, encode_state

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

    def open(self) -> None:
        """Open (creating or migrating the schema) and load every state into memory."""
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
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
        if entry is None:
            entry = self.entries[scope, key] = Entry(0, kind())
        entry.state.merge(change)  # type: ignore[arg-type]
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
                try:
                    await asyncio.to_thread(self._write, rows)
                except Exception as error:
                    # Not acknowledged; kept in memory and written with the next commit.
                    self._dirty = {**dirty, **self._dirty}
                    for future in waiting:
                        future.set_exception(StoreError(f"could not persist: {error}"))
                    return
                self.commits += 1
                for future in waiting:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._committing = None

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
