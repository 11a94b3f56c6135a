"""The systemd notify protocol (``sd_notify``): READY, STATUS, WATCHDOG and STOPPING.

A datagram of ``KEY=value`` lines to the socket in ``NOTIFY_SOCKET`` (a path, or an abstract
name written with a leading ``@``). Without ``NOTIFY_SOCKET`` every call does nothing, so the
master runs the same under systemd, in a terminal and in tests. ``WATCHDOG_USEC`` (set with
``WatchdogSec=``) asks for a ping at least that often; the supervisor pings from its own loop,
so a blocked loop stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

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
    WATCHDOG from the supervisor's loop (at most every ``watchdog_interval``)."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._ready_sent = False
        self._status_sent = ""
        self._next_watchdog = 0.0

    def report(self, status: SharderStatus, now: float) -> None:
        ready = status.ready_shards
        line = (
            f"{ready}/{status.shard_count} shards ready, "
            f"{sum(w.state == 'ready' for w in status.workers)}/{len(status.workers)} workers ready"
        )
        # A message that could not go out (systemd's queue full) is sent again next pass: a
        # lost READY would have systemd give up on the start.
        if not self._ready_sent and ready == status.shard_count:
            self._ready_sent = self.notifier.ready(line)
            if self._ready_sent:
                self._status_sent = line
        elif line != self._status_sent and self.notifier.status(line):
            self._status_sent = line
        interval = self.notifier.watchdog_interval
        if interval is not None and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + interval

    def next_watchdog(self) -> float | None:
        """When the loop must wake for the next watchdog ping, if systemd wants them."""
        return self._next_watchdog if self.notifier.watchdog_interval is not None else None
