"""Running the simulator as a child process, as a user runs it: ``python -m simulator``.

Its address comes from the lines it prints (``rest:``, ``gateway:``, ``control:``, ``cdn:``,
``token:``); it is stopped with SIGINT and killed if it does not stop in time. Tests, benchmarks
and the sharder's ``--simulate`` start it this way.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

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
        return await call_control(self.control_url, method, path, body)

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.control("GET", "/stats")
        return stats


class ControlError(Exception):
    """A control call answered with a status other than 2xx."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text}")
        self.status = status


async def call_control(control_url: str, method: str, path: str, body: object = None) -> Any:
    """Call a ``/_sim`` route; raises ControlError on any status but 2xx."""
    # Imported here: the sharder's master starts the simulator through this module, and would
    # otherwise carry aiohttp (9 MiB) for nothing.
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{control_url}{path}", json=body) as response,
    ):
        if response.status >= 300:
            raise ControlError(response.status, await response.text())
        return await response.json() if response.status != 204 else None


@contextlib.contextmanager
def simulator_process(*flags: str) -> Iterator[tuple[SimulatorEndpoints, subprocess.Popen[bytes]]]:
    endpoints, process = start_simulator(*flags)
    try:
        yield endpoints, process
    finally:
        stop_process(process)


def start_simulator(
    *flags: str, preexec_fn: Callable[[], None] | None = None, new_session: bool = False
) -> tuple[SimulatorEndpoints, subprocess.Popen[bytes]]:
    """Start ``python -m simulator`` and wait for its endpoints; stopped again if it does not
    come up (see ``spawn_simulator``)."""
    process = spawn_simulator(*flags, preexec_fn=preexec_fn, new_session=new_session)
    try:
        return read_endpoints(process), process
    except BaseException:
        stop_process(process)
        raise


def spawn_simulator(
    *flags: str, preexec_fn: Callable[[], None] | None = None, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``python -m simulator`` (``--port 0`` unless the flags name a port); its endpoints
    follow on its stdout. ``new_session`` keeps the terminal's Ctrl-C from reaching it, for a
    parent that stops it in its own time."""
    port = [] if "--port" in flags else ["--port", "0"]
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", *port, *flags],
        stdout=subprocess.PIPE,
        stderr=None,  # the simulator's warnings go where the parent's do
        bufsize=0,  # unbuffered: select() must see every line the child printed
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=preexec_fn,  # safe: only ever set by a parent without threads
        start_new_session=new_session,
    )


def read_endpoints(process: subprocess.Popen[bytes]) -> SimulatorEndpoints:
    assert process.stdout is not None
    output = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while (endpoints := parse_endpoints(output)) is None:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, remaining))
        if not ready:
            raise TimeoutError(f"simulator printed no token within {STARTUP_TIMEOUT} s: {output!r}")
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            raise RuntimeError(f"simulator exited with {process.wait()} before it was ready")
        output += chunk
    return endpoints


def parse_endpoints(output: bytes) -> SimulatorEndpoints | None:
    """The endpoints in what the simulator printed, once it has printed them all."""
    if b"\ntoken: " not in b"\n" + output or not output.endswith(b"\n"):
        return None
    found = dict(line.partition(": ")[::2] for line in output.decode().splitlines())
    return SimulatorEndpoints(
        rest_url=found["rest"],
        gateway_url=found["gateway"],
        control_url=found["control"],
        cdn_url=found["cdn"],
        token=found["token"],
    )


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGINT, then SIGKILL after ``STOP_TIMEOUT``; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
    return process.returncode
