"""The systemd notify protocol (``sd_notify``): READY, STATUS, WATCHDOG, RELOADING and STOPPING.

A datagram of ``KEY=value`` lines to the socket in ``NOTIFY_SOCKET`` (a path, or an abstract
name written with a leading ``@``). Without ``NOTIFY_SOCKET`` every call does nothing, so the
master runs the same under systemd, in a terminal and in tests. ``WATCHDOG_USEC`` (set with
``WatchdogSec=``) asks for a ping at least that often; the supervisor pings from its own loop,
so a blocked loop stops the pings and systemd restarts the service. A rolling restart (SIGHUP,
the unit's ``ExecReload``) is a reload: RELOADING while it runs, READY again when it ends.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from sharder.status import SharderStatus

log = logging.getLogger("sharder.systemd")


class Notifier:
    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        environment = os.environ if environment is None else environment
        address = environment.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)
        self.watchdog_interval: float | None = None
        usec = environment.get("WATCHDOG_USEC", "")
        watchdog_pid = environment.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and watchdog_pid in ("", str(os.getpid())):
            # Half the limit, as sd_watchdog_enabled(3) advises.
            self.watchdog_interval = int(usec) / 2_000_000

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def ready(self, status: str) -> bool:
        return self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> bool:
        return self._send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self._send("WATCHDOG=1")

    def reloading(self, status: str) -> bool:
        # MONOTONIC_USEC: which reload this is, as sd_notify(3) asks of a reloading service.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={status}")

    def stopping(self, status: str) -> bool:
        return self._send(f"STOPPING=1\nSTATUS={status}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, message: str) -> bool:
        """Whether the message went out (the caller may try again later)."""
        if self._socket is None:
            return False
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError as error:  # systemd gone or the socket full: never stop the master
            log.warning("cannot notify systemd (%s): %s", self._address, error)
            return False
        return True


class ServiceReporter:
    """What the supervisor tells systemd: READY once every shard is, STATUS as it changes,
    WATCHDOG from the supervisor's loop (at most every ``watchdog_interval``), RELOADING while a
    rolling restart runs and READY again once it ended."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._ready_sent = False
        self._reloading = False
        self._status_sent = ""
        self._next_watchdog = 0.0

    def report(self, status: SharderStatus, now: float) -> None:
        ready = status.ready_shards
        line = (
            f"{ready}/{status.shard_count} shards ready, "
            f"{sum(w.state == 'ready' for w in status.workers)}/{len(status.workers)} workers ready"
        )
        roll = status.roll if status.roll is not None and status.roll.state == "rolling" else None
        if roll is not None:
            line = f"rolling restart {len(roll.replaced)}/{roll.workers}: {line}"
        # A message that could not go out (systemd's queue full) is sent again next pass: a
        # lost READY would have systemd give up on the start.
        if not self._ready_sent:
            if ready == status.shard_count:
                self._ready_sent = self._sent(self.notifier.ready, line)
        elif roll is not None and not self._reloading:
            self._reloading = self._sent(self.notifier.reloading, line)
        elif roll is None and self._reloading:
            self._reloading = not self._sent(self.notifier.ready, line)
        if line != self._status_sent:
            self._sent(self.notifier.status, line)
        interval = self.notifier.watchdog_interval
        if interval is not None and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + interval

    def _sent(self, send: Callable[[str], bool], line: str) -> bool:
        if not send(line):
            return False
        self._status_sent = line
        return True

    def next_watchdog(self) -> float | None:
        """When the loop must wake for the next watchdog ping, if systemd wants them."""
        return self._next_watchdog if self.notifier.watchdog_interval is not None else None
