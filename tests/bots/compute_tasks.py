"""Compute tasks for the integration tests (``[compute].entry_point``): ones that misbehave in
each way the pool must contain, and ones that show where they ran."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from worker.compute_worker import ComputeTasks


def setup(tasks: ComputeTasks) -> None:
    @tasks.task("pid")
    def pid(args: dict[str, Any]) -> int:
        return os.getpid()

    @tasks.task("sleep")
    def sleep(args: dict[str, Any]) -> float:
        time.sleep(float(args["seconds"]))
        return float(args["seconds"])

    @tasks.task("spin")
    def spin(args: dict[str, Any]) -> None:
        while True:
            pass

    @tasks.task("read_file")
    def read_file(args: dict[str, Any]) -> str:
        with open(args["path"]) as file:
            return file.read()

    @tasks.task("connect")
    def connect(args: dict[str, Any]) -> None:
        socket.create_connection(("127.0.0.1", int(args["port"])), timeout=1).close()

    @tasks.task("allocate")
    def allocate(args: dict[str, Any]) -> int:
        return len(bytearray(int(args["mib"]) * 1024 * 1024))
