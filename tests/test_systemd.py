"""The systemd notify protocol: unit tests of the notifier, and the master under a
``NOTIFY_SOCKET`` the test owns (READY once every shard is, STATUS, WATCHDOG from the
supervisor loop only, RELOADING and READY around a rolling restart, STOPPING)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sharder.systemd import Notifier
from tests.sharder_run import running_sharder


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    directory = tempfile.mkdtemp(prefix="notify-", dir="/tmp")
    path = str(Path(directory) / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)
    try:
        yield receiver, path
    finally:
        receiver.close()
        os.unlink(path)
        os.rmdir(directory)


def drain(receiver: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(receiver.recv(4096).decode())
        except BlockingIOError:
            return messages


async def keep_reading(receiver: socket.socket, into: list[str]) -> None:
    while True:
        into.extend(drain(receiver))
        await asyncio.sleep(0.02)


def test_without_notify_socket_every_call_is_a_quiet_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping("y")


def test_messages_reach_the_socket(notify_socket: tuple[socket.socket, str]) -> None:
    receiver, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"})
    assert notifier.enabled and notifier.watchdog_interval == 1.5
    notifier.ready("4/4 shards ready")
    notifier.status("3/4 shards ready")
    notifier.watchdog()
    notifier.stopping("stopping")
    notifier.close()
    assert drain(receiver) == [
        "READY=1\nSTATUS=4/4 shards ready",
        "STATUS=3/4 shards ready",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_an_abstract_socket_name_and_a_watchdog_meant_for_another_process() -> None:
    name = f"sharder-test-{os.getpid()}-{time.monotonic_ns()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.setblocking(False)
    try:
        notifier = Notifier(
            {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
        )
        assert notifier.watchdog_interval is None  # WATCHDOG_PID names another process
        notifier.status("hello")
        assert drain(receiver) == ["STATUS=hello"]
    finally:
        receiver.close()


def test_a_vanished_socket_does_not_stop_the_notifier(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    notifier.ready("x")  # logged, not raised


def test_a_full_queue_is_reported_so_that_ready_can_be_sent_again(
    notify_socket: tuple[socket.socket, str],
) -> None:
    receiver, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    sent = 0
    while notifier.watchdog():  # nobody reads: the queue fills up
        sent += 1
        assert sent < 100_000
    assert not notifier.ready("4/4 shards ready")
    assert drain(receiver).count("WATCHDOG=1") == sent
    assert notifier.ready("4/4 shards ready")
    assert drain(receiver) == ["READY=1\nSTATUS=4/4 shards ready"]


async def test_the_master_reports_ready_status_watchdog_and_stopping(
    notify_socket: tuple[socket.socket, str],
) -> None:
    receiver, path = notify_socket
    environment = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}  # a ping every 0.2 s
    async with running_sharder(shards=4, workers=2, guilds=8, environment=environment) as run:
        # Read as systemd does, all along: a unix datagram queue holds only a few messages.
        seen: list[str] = []
        reading = asyncio.create_task(keep_reading(receiver, seen))
        try:
            await run.wait_ready()
            await asyncio.sleep(1.0)
        finally:
            reading.cancel()
        seen.extend(drain(receiver))
        ready = [m for m in seen if m.startswith("READY=1")]
        assert ready == ["READY=1\nSTATUS=4/4 shards ready, 2/2 workers ready"]
        assert any(m.startswith("STATUS=0/4 shards ready") for m in seen)  # before READY
        assert seen.index(ready[0]) > 0
        assert seen.count("WATCHDOG=1") >= 3

        # SIGHUP (the unit's ExecReload) is a rolling restart: RELOADING, then READY again.
        seen = []
        reading = asyncio.create_task(keep_reading(receiver, seen))
        try:
            run.process.send_signal(signal.SIGHUP)
            await run.wait_until(lambda s: s["roll"] is not None and s["roll"]["state"] == "done")
            await asyncio.sleep(0.5)
        finally:
            reading.cancel()
        seen.extend(drain(receiver))
        reloads = [m for m in seen if m.startswith("RELOADING=1")]
        assert len(reloads) == 1 and "\nMONOTONIC_USEC=" in reloads[0]
        assert "STATUS=rolling restart 0/2: " in reloads[0]
        again = [m for m in seen if m.startswith("READY=1")]
        assert again == ["READY=1\nSTATUS=4/4 shards ready, 2/2 workers ready"]
        assert seen.index(again[0]) > seen.index(reloads[0])

        # A blocked supervisor loop (here: the whole master stopped) sends no watchdog pings.
        run.process.send_signal(signal.SIGSTOP)
        try:
            drain(receiver)
            await asyncio.sleep(1.0)
            assert drain(receiver) == []
        finally:
            run.process.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.6)
        assert "WATCHDOG=1" in drain(receiver)

        run.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(run.process.wait, 20) == 0
        assert any(m.startswith("STOPPING=1") for m in drain(receiver))
