"""``--simulate``: the built-in simulator as a supervised child of the master.

It is started before the workers (they need its token and URLs), dies with the master (parent
death signal), and is started again on the same port if it exits while the master runs, so the
workers' URLs stay valid and their shards reconnect.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import time

from child.runtime import die_with_parent
from sharder.config import SimulatorSection
from simulator.child import SimulatorEndpoints, start_simulator, stop_process

log = logging.getLogger("sharder.simulated")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0


class SimulatorChild:
    def __init__(self, section: SimulatorSection, shards: int) -> None:
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
            *(["--strict"] if section.strict else []),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoints: SimulatorEndpoints | None = None
        self._backoff = FIRST_BACKOFF
        self._next_attempt = 0.0

    def start(self) -> SimulatorEndpoints:
        flags = list(self.flags)
        if self.endpoints is not None:  # a restart: same port, so the workers' URLs stay valid
            flags += ["--port", self.endpoints.rest_url.split(":")[2].split("/")[0]]
        self.endpoints, self.process = start_simulator(
            *flags, preexec_fn=functools.partial(die_with_parent, os.getpid()), new_session=True
        )
        log.info("simulator serving at %s (pid %d)", self.endpoints.rest_url, self.process.pid)
        return self.endpoints

    def check(self) -> None:
        """Start the simulator again if it exited (with a growing pause between failures).

        Synchronous on purpose: it runs between two passes of the supervisor loop and takes a
        fraction of a second; a thread would make the parent-death hook unsafe in the child.
        """
        if self.process is None or self.process.poll() is None:
            return
        now = time.monotonic()
        if now < self._next_attempt:
            return
        log.error("the simulator exited with %s; starting it again", self.process.returncode)
        try:
            self.start()
            self._backoff = FIRST_BACKOFF
        except (OSError, RuntimeError, TimeoutError) as error:
            log.error(
                "the simulator did not come back: %s; next try in %.0f s", error, self._backoff
            )
            self._next_attempt = now + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
