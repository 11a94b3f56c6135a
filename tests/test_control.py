"""The control socket over real unix sockets: round trips, the socket file's life, bad input,
silent and slow peers, and the client's errors. The tests of timeouts run on virtual time."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sharder.control import ControlError, ControlUnavailable, call, call_sync
from sharder.control_requests import MAX_REQUEST_BYTES
from sharder.control_server import ControlServer
from sharder.control_socket import AlreadyRunning
from sharder.status import SharderStatus, ShardStatus, WorkerStatus
from tests.virtual_time import virtual_clock

WORKERS = 4


def make_status() -> SharderStatus:
    return SharderStatus(
        pid=4242,
        uptime_s=12.5,
        state="running",
        shard_count=8,
        api_url="http://127.0.0.1:1/api/v10",
        simulated=True,
        events_per_s=3.5,
        workers=[
            WorkerStatus(
                id=worker,
                pid=1000 + worker,
                state="ready",
                shards=[2 * worker, 2 * worker + 1],
                restarts=worker,
                rss_bytes=50 * 2**20,
                loop_lag_ms=0.5,
                last_exit="exit code 1" if worker else None,
            )
            for worker in range(WORKERS)
        ],
        shards=[
            ShardStatus(id=shard, worker=shard // 2, state="ready", guilds=10, latency_ms=40.0)
            for shard in range(8)
        ],
    )


class FakeHandler:
    """A supervisor stand-in; ``restart`` can be told to fail or to hang."""

    def __init__(self) -> None:
        self.snapshot = make_status()
        self.stops = 0
        self.restarted: list[int] = []
        self.moved: list[tuple[int, int]] = []
        self.restart_error: Exception | None = None
        self.restart_hangs = False
        self.on_stop: ControlServer | None = None
        self.state: dict[tuple[str, str], dict[str, Any]] = {}

    def status(self) -> SharderStatus:
        return self.snapshot

    async def stop(self) -> None:
        self.stops += 1
        if self.on_stop is not None:
            await self.on_stop.close()

    async def restart(self, worker_id: int) -> str:
        if self.restart_hangs:
            await asyncio.Event().wait()  # never set: until the server cancels it
        if self.restart_error is not None:
            raise self.restart_error
        if not 0 <= worker_id < WORKERS:
            raise ValueError(f"no worker {worker_id}; workers are 0-{WORKERS - 1}")
        self.restarted.append(worker_id)
        return f"restarting worker {worker_id}"

    def rolling_restart(self) -> str:
        self.restarted.extend(range(WORKERS))
        return f"rolling restart of {WORKERS} workers started"

    async def reshard(self, shard_count: int | None) -> str:
        return f"resharding to {shard_count}"

    def move_shard(self, shard_id: int, worker_id: int) -> str:
        if worker_id >= WORKERS:
            raise ValueError(f"no worker {worker_id}; workers are 0-{WORKERS - 1}")
        self.moved.append((shard_id, worker_id))
        return f"moving shard {shard_id} to worker {worker_id}"

    def state_get(self, scope: str, key: str) -> Any:
        return self.state.get((scope, key))

    async def state_set(self, scope: str, key: str, fields: dict[str, Any]) -> int:
        if scope not in ("guild_config", "user_data"):
            raise ValueError(f"{scope} cannot be set field by field")
        self.state.setdefault((scope, key), {}).update(fields)
        return len(self.state)


@pytest.fixture
def socket_path(tmp_path: Path) -> Iterator[Path]:
    """A path for the socket, short enough for AF_UNIX (about 107 bytes)."""
    if len(str(tmp_path)) < 90:
        yield tmp_path / "c.sock"
        return
    directory = tempfile.mkdtemp(prefix="ctl", dir="/tmp")
    try:
        yield Path(directory) / "c.sock"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def handler() -> FakeHandler:
    return FakeHandler()


@pytest.fixture
async def server(socket_path: Path, handler: FakeHandler) -> AsyncIterator[ControlServer]:
    control = ControlServer(socket_path, handler, read_timeout=0.5, handler_timeout=10.0)
    await control.start()
    try:
        yield control
    finally:
        await control.close()


def bind_stale_socket(path: Path) -> None:
    """Leave a socket file nobody listens on, as a sharder killed with SIGKILL does."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()


def socket_file_exists(path: Path) -> bool:
    # A stat of a local temp file: not worth a thread in an async test.
    return os.path.lexists(path)


async def exchange(path: Path, raw: bytes, timeout: float = 5.0) -> dict[str, object]:
    """Send ``raw`` as is and return the decoded answer line."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            writer.write(raw)
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
    answer: dict[str, object] = msgspec.json.decode(line)
    return answer


async def test_status_stop_and_restart_round_trips(
    server: ControlServer, socket_path: Path, handler: FakeHandler
) -> None:
    answer = await call(socket_path, {"command": "status"})
    assert answer["ok"] is True
    assert msgspec.convert(answer["status"], SharderStatus) == handler.snapshot

    assert await call(socket_path, {"command": "restart", "worker": 2}) == {
        "ok": True,
        "message": "restarting worker 2",
    }
    assert handler.restarted == [2]
    assert await call(socket_path, {"command": "restart", "worker": 7}) == {
        "ok": False,
        "error": "no worker 7; workers are 0-3",
    }
    assert await call(socket_path, {"command": "restart", "rolling": True}) == {
        "ok": True,
        "message": "rolling restart of 4 workers started",
    }
    assert handler.restarted == [2, 0, 1, 2, 3]
    assert await call(socket_path, {"command": "move", "shard": 5, "worker": 1}) == {
        "ok": True,
        "message": "moving shard 5 to worker 1",
    }
    assert await call(socket_path, {"command": "move", "shard": 5, "worker": 9}) == {
        "ok": False,
        "error": "no worker 9; workers are 0-3",
    }
    assert handler.moved == [(5, 1)]
    assert await call(socket_path, {"command": "reshard", "shards": 8}) == {
        "ok": True,
        "message": "resharding to 8",
    }
    assert await call(socket_path, {"command": "reshard"}) == {
        "ok": True,
        "message": "resharding to None",
    }

    assert await call(socket_path, {"command": "stop"}) == {"ok": True, "message": "stopping"}
    assert handler.stops == 1


async def test_call_sync_from_a_thread_without_a_loop(
    server: ControlServer, socket_path: Path
) -> None:
    answer = await asyncio.to_thread(call_sync, socket_path, {"command": "status"}, 5.0)
    assert answer["ok"] is True and answer["status"]["pid"] == 4242


async def test_socket_file_is_0600_and_the_umask_is_restored(
    socket_path: Path, handler: FakeHandler
) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    control = ControlServer(socket_path, handler)
    await control.start()
    try:
        info = os.stat(socket_path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        current = os.umask(umask)
        assert current == umask
    finally:
        await control.close()


async def test_second_server_on_the_same_path_is_refused(
    server: ControlServer, socket_path: Path, handler: FakeHandler
) -> None:
    with pytest.raises(AlreadyRunning) as raised:
        await ControlServer(socket_path, handler).start()
    assert str(raised.value) == f"a sharder is already running (control socket {socket_path})"
    # The first server lost neither its file nor its clients.
    assert (await call(socket_path, {"command": "status"}))["ok"] is True


async def test_stale_socket_file_is_replaced(socket_path: Path, handler: FakeHandler) -> None:
    bind_stale_socket(socket_path)
    os.chmod(socket_path, 0o644)  # tells it apart from ours: its inode number may be reused
    with pytest.raises(ControlUnavailable, match="connection refused"):
        await call(socket_path, {"command": "status"})
    control = ControlServer(socket_path, handler)
    await control.start()
    try:
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        assert (await call(socket_path, {"command": "status"}))["ok"] is True
    finally:
        await control.close()


async def test_a_file_that_is_not_a_socket_is_left_alone(
    socket_path: Path, handler: FakeHandler
) -> None:
    os.mkfifo(socket_path)
    with pytest.raises(ControlError, match="exists and is not a socket"):
        await ControlServer(socket_path, handler).start()
    assert stat.S_ISFIFO(os.stat(socket_path).st_mode)


async def test_close_removes_the_socket_file(socket_path: Path, handler: FakeHandler) -> None:
    control = ControlServer(socket_path, handler)
    await control.start()
    assert socket_file_exists(socket_path)
    await control.close()
    assert not socket_file_exists(socket_path)
    with pytest.raises(ControlUnavailable, match="no such file or directory"):
        await call(socket_path, {"command": "status"})


async def test_close_leaves_a_socket_file_that_is_no_longer_its_own(
    socket_path: Path, handler: FakeHandler
) -> None:
    control = ControlServer(socket_path, handler)
    await control.start()
    os.unlink(socket_path)
    bind_stale_socket(socket_path)  # someone else's file at the same path now
    replacement = os.stat(socket_path).st_ino
    await control.close()
    assert os.stat(socket_path).st_ino == replacement


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"garbage\n", "request is not valid JSON: JSON is malformed: invalid character (byte 0)"),
        (b"[1, 2]\n", 'a request is a JSON object, e.g. {"command": "status"}'),
        (
            b"{}\n",
            'request has no "command"; commands are '
            "status, stop, restart, move, reshard, state_get, state_set",
        ),
        (
            b'{"command": "reboot"}\n',
            'unknown command "reboot"; commands are '
            "status, stop, restart, move, reshard, state_get, state_set",
        ),
        (
            b'{"command": 3}\n',
            "unknown command 3; commands are "
            "status, stop, restart, move, reshard, state_get, state_set",
        ),
        (
            b'{"command": "restart"}\n',
            'bad restart request: give either "worker" or "rolling": true',
        ),
        (
            b'{"command": "restart", "worker": "1"}\n',
            "bad restart request: worker: Expected `int | null`, got `str`",
        ),
        (
            b'{"command": "restart", "worker": true}\n',
            "bad restart request: worker: Expected `int | null`, got `bool`",
        ),
        (
            b'{"command": "restart", "worker": 1, "rolling": true}\n',
            'bad restart request: give either "worker" or "rolling": true',
        ),
        (
            b'{"command": "restart", "worker": -1}\n',
            "bad restart request: worker: Expected `int` >= 0",
        ),
        (
            b'{"command": "reshard", "shards": 0}\n',
            "bad reshard request: shards: Expected `int` >= 1",
        ),
        (
            b'{"command": "move", "shard": 1}\n',
            "bad move request: Object missing required field `worker`",
        ),
        (
            b'{"command": "status", "verbose": true}\n',
            "bad status request: Object contains unknown field `verbose`",
        ),
        (
            b"[" * 5_000 + b"\n",
            "request is not valid JSON: 5001 bytes nested deeper than 1000 levels, "
            "the decoder's limit",
        ),
    ],
)
async def test_bad_requests_get_a_clear_error_and_the_server_carries_on(
    server: ControlServer, socket_path: Path, handler: FakeHandler, raw: bytes, error: str
) -> None:
    assert await exchange(socket_path, raw) == {"ok": False, "error": error}
    assert handler.restarted == [] and handler.stops == 0
    assert (await call(socket_path, {"command": "status"}))["ok"] is True


# 4 MiB is more than the socket buffers hold: the client is still writing when it is refused.
@pytest.mark.parametrize("size", [100 * 1024, 4 * 1024 * 1024])
async def test_a_request_over_64_kib_is_refused(
    server: ControlServer, socket_path: Path, size: int
) -> None:
    answer = await call(socket_path, {"command": "status", "padding": "x" * size})
    assert answer == {
        "ok": False,
        "error": f"request line longer than {MAX_REQUEST_BYTES} bytes",
    }
    assert (await call(socket_path, {"command": "status"}))["ok"] is True


async def test_handler_failure_is_answered_logged_and_survived(
    server: ControlServer,
    socket_path: Path,
    handler: FakeHandler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler.restart_error = RuntimeError("boom")
    with caplog.at_level(logging.ERROR, logger="sharder.control"):
        answer = await call(socket_path, {"command": "restart", "worker": 1})
    assert answer == {"ok": False, "error": "restart failed: RuntimeError: boom"}
    [record] = [record for record in caplog.records if record.name == "sharder.control"]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    handler.restart_error = None
    assert (await call(socket_path, {"command": "restart", "worker": 1}))["ok"] is True


@pytest.mark.virtual_time
async def test_a_silent_client_is_dropped_while_others_are_served(
    socket_path: Path, handler: FakeHandler
) -> None:
    clock = virtual_clock()
    control = ControlServer(socket_path, handler, read_timeout=1.5)
    await control.start()
    started = clock()
    silent_reader, silent_writer = await asyncio.open_unix_connection(str(socket_path))
    try:
        for _ in range(3):
            assert (await call(socket_path, {"command": "status"}, timeout=2.0))["ok"] is True
        # Served long before the silent client's read timeout, not after it.
        assert clock() - started < 1.0
        # The server hangs up on it after its read timeout, without an answer.
        assert await asyncio.wait_for(silent_reader.read(), 5.0) == b""
        assert clock() - started >= 1.4
    finally:
        silent_writer.close()
        await control.close()


async def test_call_on_a_missing_socket_says_no_sharder_is_running(socket_path: Path) -> None:
    with pytest.raises(ControlUnavailable) as raised:
        await call(socket_path, {"command": "status"})
    assert str(raised.value) == (
        f"no sharder is running: cannot connect to {socket_path} (no such file or directory)"
    )


def test_call_sync_on_a_missing_socket(socket_path: Path) -> None:
    with pytest.raises(ControlUnavailable, match="no sharder is running"):
        call_sync(socket_path, {"command": "status"}, 1.0)


@pytest.mark.virtual_time
async def test_call_times_out_when_the_handler_hangs(
    server: ControlServer, socket_path: Path, handler: FakeHandler
) -> None:
    clock = virtual_clock()
    handler.restart_hangs = True
    started = clock()
    with pytest.raises(TimeoutError) as raised:
        await call(socket_path, {"command": "restart", "worker": 1}, timeout=0.3)
    assert 0.25 <= clock() - started < 3.0
    assert str(raised.value) == (
        f"the sharder did not answer 'restart' within 0.3 s (control socket {socket_path})"
    )
    # The hung request does not hold up others, nor close() (the fixture's, with its grace).
    assert (await call(socket_path, {"command": "status"}))["ok"] is True


@pytest.mark.virtual_time
async def test_a_handler_that_overruns_its_timeout_is_answered(
    socket_path: Path, handler: FakeHandler
) -> None:
    handler.restart_hangs = True
    control = ControlServer(socket_path, handler, handler_timeout=0.2)
    await control.start()
    try:
        answer = await call(socket_path, {"command": "restart", "worker": 0}, timeout=5.0)
        assert answer == {"ok": False, "error": "restart did not finish within 0.2 s"}
    finally:
        await control.close()


async def test_stop_that_closes_the_server_is_still_answered(
    socket_path: Path, handler: FakeHandler
) -> None:
    control = ControlServer(socket_path, handler)
    handler.on_stop = control
    await control.start()
    assert await call(socket_path, {"command": "stop"}) == {"ok": True, "message": "stopping"}
    assert not socket_file_exists(socket_path)


async def test_state_get_and_set_round_trip_and_bad_ones_are_refused(
    server: ControlServer, socket_path: Path
) -> None:
    path = socket_path
    answer = await call(
        path,
        {"command": "state_set", "scope": "guild_config", "key": "42", "fields": {"prefix": "?"}},
    )
    assert answer == {"ok": True, "version": 1}
    assert await call(path, {"command": "state_get", "scope": "guild_config", "key": "42"}) == {
        "ok": True,
        "value": {"prefix": "?"},
    }
    refused = await call(
        path, {"command": "state_set", "scope": "permissions", "key": "42", "fields": {"x": 1}}
    )
    assert refused["ok"] is False and "cannot be set field by field" in refused["error"]
    bad = await call(path, {"command": "state_get", "scope": "karma", "key": "1"})
    assert bad["ok"] is False and "scope" in bad["error"]
