"""What the dashboard's pages are sent: the status, the children's recent history, incidents.

Once a second the feed takes the status, one sample per child (events/s, loop lag, memory)
and the incidents since the last tick; it encodes them once and hands the same bytes to every
open page. A page that connects first gets ``hello``: the last ``HISTORY`` samples and
incidents, so its sparklines start full. A page that cannot keep up (its queue full) is
dropped and its browser reconnects: a slow reader never holds memory in the master.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from typing import TYPE_CHECKING

import msgspec

from sharder.incidents import INCIDENTS, Incident
from sharder.lifecycle import ChildHandle
from sharder.status import SharderStatus

if TYPE_CHECKING:
    from sharder.supervisor import Supervisor

HISTORY = 300  # samples kept: five minutes at one a second
PAGE_QUEUE = 8  # ticks a page may fall behind before it is dropped
MAX_PAGES = 32  # pages open at once; more are refused


class ChildSample(msgspec.Struct):
    events_per_s: float | None  # shard workers only
    loop_lag_ms: float | None
    rss_bytes: int


class Tick(msgspec.Struct, tag="tick"):
    t: float
    status: SharderStatus
    sample: dict[str, ChildSample]
    incidents: list[Incident]


class History(msgspec.Struct):
    t: list[float]
    series: dict[str, dict[str, list[float | int | None]]]


class Hello(msgspec.Struct, tag="hello"):
    host: str
    admin: bool
    interval_s: float
    status: SharderStatus
    history: History
    incidents: list[Incident]


class TooManyPages(Exception):
    pass


class DashboardFeed:
    def __init__(self, supervisor: Supervisor, admin: bool, interval: float = 1.0) -> None:
        self.supervisor = supervisor
        self.admin = admin
        self.interval = interval
        self.host = socket.gethostname()
        self.samples: deque[tuple[float, dict[str, ChildSample]]] = deque(maxlen=HISTORY)
        self.pages: set[asyncio.Queue[bytes]] = set()
        self._last_incident = 0
        self._encoder = msgspec.json.Encoder()

    async def run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(self.interval)

    def tick(self) -> None:
        now = time.time()
        sample = self._sample()
        self.samples.append((now, sample))
        incidents = INCIDENTS.after(self._last_incident)
        if incidents:
            self._last_incident = incidents[-1].number
        if not self.pages:
            return  # the status is only built for someone
        event = self._event(Tick(now, self.supervisor.status(), sample, incidents))
        for page in list(self.pages):
            if page.qsize() < PAGE_QUEUE:
                page.put_nowait(event)
            else:  # the room kept for it: b"" tells the page's stream to end
                self.pages.discard(page)
                page.put_nowait(b"")

    def open_page(self) -> asyncio.Queue[bytes]:
        """A new page's queue of events, ``hello`` first."""
        if len(self.pages) >= MAX_PAGES:
            raise TooManyPages(f"{MAX_PAGES} dashboard pages are open already")
        page: asyncio.Queue[bytes] = asyncio.Queue(PAGE_QUEUE + 1)
        page.put_nowait(self._event(self._hello()))
        self.pages.add(page)
        return page

    def close_page(self, page: asyncio.Queue[bytes]) -> None:
        self.pages.discard(page)

    def end_pages(self) -> None:
        """End every open page's stream now, not at its next tick (the master stops)."""
        for page in self.pages:
            with contextlib.suppress(asyncio.QueueFull):
                page.put_nowait(b"")
        self.pages.clear()

    def _hello(self) -> Hello:
        series: dict[str, dict[str, list[float | int | None]]] = {}
        times = []
        for index, (at, sample) in enumerate(self.samples):
            times.append(at)
            for label, child in sample.items():
                lines = series.setdefault(
                    label, {"events_per_s": [], "loop_lag_ms": [], "rss_bytes": []}
                )
                for name, value in msgspec.structs.asdict(child).items():
                    line = lines[name]
                    line.extend([None] * (index - len(line)))  # a child that came later
                    line.append(value)
        for lines in series.values():
            for line in lines.values():
                line.extend([None] * (len(times) - len(line)))
        return Hello(
            host=self.host,
            admin=self.admin,
            interval_s=self.interval,
            status=self.supervisor.status(),
            history=History(t=times, series=series),
            incidents=list(INCIDENTS.kept),
        )

    def _sample(self) -> dict[str, ChildSample]:
        supervisor = self.supervisor
        sample = {
            handle.label: _child_sample(handle, round(handle.events_rate, 1))
            for handle in supervisor.current_workers()
        }
        children: list[ChildHandle] = list(supervisor.compute.values())
        if supervisor.rest_gate is not None:
            children.append(supervisor.rest_gate)
        sample.update((child.label, _child_sample(child, None)) for child in children)
        return sample

    def _event(self, message: Tick | Hello) -> bytes:
        kind = "hello" if isinstance(message, Hello) else "tick"
        return b"event: " + kind.encode() + b"\ndata: " + self._encoder.encode(message) + b"\n\n"


def _child_sample(child: ChildHandle, events_per_s: float | None) -> ChildSample:
    health = child.health if child.pid is not None else None
    return ChildSample(
        events_per_s=events_per_s,
        loop_lag_ms=health.loop_lag_ms if health is not None else None,
        rss_bytes=health.rss_bytes if health is not None else 0,
    )
