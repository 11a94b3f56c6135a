"""Running the simulator for tests: as a child process through its CLI, or inside the test.

The child process is what a user runs (``python -m simulator --port 0``); its address comes from
the lines it prints. It is stopped with SIGINT, killed if it does not stop, also when the test
fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from simulator.config import SimulatorConfig
from simulator.server import Simulator

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


@dataclass
class SimulatorEndpoints:
    rest_url: str
    gateway_url: str
    control_url: str
    cdn_url: str
    token: str

    async def control(self, method: str, path: str, body: object = None) -> Any:
        """Call a ``/_sim`` route; raises on any status but 2xx."""
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, f"{self.control_url}{path}", json=body) as response,
        ):
            if response.status >= 300:
                raise AssertionError(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json() if response.status != 204 else None

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.control("GET", "/stats")
        return stats


@contextlib.contextmanager
def simulator_process(*flags: str) -> Iterator[tuple[SimulatorEndpoints, subprocess.Popen[bytes]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=None,  # the simulator's warnings show in the test's captured output
        bufsize=0,  # unbuffered: select() must see every line the child printed
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield read_endpoints(process), process
    finally:
        stop_process(process)


def read_endpoints(process: subprocess.Popen[bytes]) -> SimulatorEndpoints:
    assert process.stdout is not None
    output = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while b"\ntoken: " not in b"\n" + output or not output.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, remaining))
        if not ready:
            raise TimeoutError(f"simulator printed no token within {STARTUP_TIMEOUT} s: {output!r}")
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            raise RuntimeError(f"simulator exited with {process.wait()} before it was ready")
        output += chunk
    found = dict(line.partition(": ")[::2] for line in output.decode().splitlines())
    return SimulatorEndpoints(
        rest_url=found["rest"],
        gateway_url=found["gateway"],
        control_url=found["control"],
        cdn_url=found["cdn"],
        token=found["token"],
    )


def stop_process(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 15.0,
    interval: float = 0.05,
) -> None:
    """Wait until ``check`` holds; fail with a timeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_simulator(**settings: Any) -> AsyncIterator[Simulator]:
    """A simulator inside the test's event loop, with ``SimulatorConfig`` settings."""
    simulator = Simulator(SimulatorConfig(**settings))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()
