"""``--simulate``: the built-in simulator as a supervised child of the master.

It is started before the workers (they need its token and URLs), dies with the master (parent
death signal), and is started again on the same port if it exits while the master runs, so the
workers' URLs stay valid and their shards reconnect.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import subprocess
import time

from child.runtime import die_with_parent
from sharder.config import SimulatorSection
from simulator.child import (
    STARTUP_TIMEOUT,
    SimulatorEndpoints,
    parse_endpoints,
    read_endpoints,
    spawn_simulator,
    stop_process,
)

log = logging.getLogger("sharder.simulated")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0


class SimulatorChild:
    def __init__(self, section: SimulatorSection, shards: int, log_format: str) -> None:
        self.flags = [
            "--guilds", str(section.guilds),
            "--members-per-guild", str(section.members_per_guild),
            "--channels-per-guild", str(section.channels_per_guild),
            "--shards", str(shards),
            "--max-concurrency", str(section.max_concurrency),
            "--seed", str(section.seed),
            "--traffic-rate", str(section.traffic_rate),
            "--identify-window", str(section.identify_window),
            "--session-start-limit", str(section.session_start_limit),
            "--session-start-reset", str(section.session_start_reset),
            "--rest-route-limit", str(section.rest_route_limit),
            "--rest-route-window", str(section.rest_route_window),
            "--rest-global-limit", str(section.rest_global_limit),
            "--guilds-per-shard", str(section.guilds_per_shard),
            "--max-guilds-per-shard", str(section.max_guilds_per_shard),
            *(["--strict"] if section.strict else []),
            "--log-format", log_format,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoints: SimulatorEndpoints | None = None
        self._backoff = FIRST_BACKOFF
        self._next_attempt = 0.0
        self._restart: asyncio.Task[None] | None = None

    def start(self) -> SimulatorEndpoints:
        """The first start, before the master's loop runs: it waits for the endpoints."""
        self.process = self._spawn()
        try:
            self.endpoints = read_endpoints(self.process)
        except BaseException:
            stop_process(self.process)
            raise
        log.info("simulator serving at %s (pid %d)", self.endpoints.rest_url, self.process.pid)
        return self.endpoints

    def _spawn(self, *flags: str) -> subprocess.Popen[bytes]:
        parent_death = functools.partial(die_with_parent, os.getpid())
        return spawn_simulator(*self.flags, *flags, preexec_fn=parent_death, new_session=True)

    def check(self) -> None:
        """Start the simulator again if it exited (with a growing pause between failures).

        Called on every pass of the supervisor loop, so it never waits: the new process's
        endpoints are read by a task as it prints them.
        """
        if self.process is None or self.process.poll() is None or self._restart is not None:
            return
        now = time.monotonic()
        if now < self._next_attempt:
            return
        log.error("the simulator exited with %s; starting it again", self.process.returncode)
        self._restart = asyncio.get_running_loop().create_task(self._start_again(now))

    async def _start_again(self, now: float) -> None:
        assert self.endpoints is not None  # started once before
        port = self.endpoints.rest_url.split(":")[2].split("/")[0]
        # Same port, so the workers' URLs stay valid.
        self.process = self._spawn("--port", port)
        try:
            self.endpoints = await endpoints_of(self.process)
            log.info("simulator serving at %s (pid %d)", self.endpoints.rest_url, self.process.pid)
            self._backoff = FIRST_BACKOFF
        except (OSError, RuntimeError, TimeoutError) as error:
            log.error(
                "the simulator did not come back: %s; next try in %.0f s", error, self._backoff
            )
            self.process.kill()  # not stop_process: its graceful wait would block the loop
            self._next_attempt = now + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        finally:
            self._restart = None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


async def endpoints_of(process: subprocess.Popen[bytes]) -> SimulatorEndpoints:
    """The endpoints a starting simulator prints, read as they come without blocking the loop."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    readable = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(descriptor, readable.set)
    output = b""
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while (endpoints := parse_endpoints(output)) is None:
                await readable.wait()
                readable.clear()
                chunk = os.read(descriptor, 4096)
                if not chunk:
                    raise RuntimeError(f"it exited with {process.wait()} before it was ready")
                output += chunk
    except TimeoutError:
        raise TimeoutError(f"it printed no endpoints within {STARTUP_TIMEOUT} s") from None
    finally:
        loop.remove_reader(descriptor)
    return endpoints
