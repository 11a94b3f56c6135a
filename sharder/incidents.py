"""The last things that went wrong, for the dashboard: exits, hangs, restarts, refusals.

Each is also logged where it happens; this keeps the latest ``KEPT`` with their times, numbered,
so that a page can ask for those after the last it showed.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Literal

import msgspec

KEPT = 200

IncidentKind = Literal["exit", "hang", "restart", "failed", "identify_refused", "disconnect"]


class Incident(msgspec.Struct, kw_only=True):
    number: int  # counts up from 1 over the master's life
    time: float  # Unix time
    kind: IncidentKind
    child: str | None  # "worker-1", or None for the bot as a whole
    text: str


class Incidents:
    def __init__(self) -> None:
        self.kept: deque[Incident] = deque(maxlen=KEPT)
        self.count = 0

    def record(self, kind: IncidentKind, child: str | None, text: str) -> None:
        self.count += 1
        self.kept.append(
            Incident(number=self.count, time=time.time(), kind=kind, child=child, text=text)
        )

    def after(self, number: int) -> list[Incident]:
        """Those recorded after incident ``number``, oldest first."""
        return [incident for incident in self.kept if incident.number > number]


# One per master process: the supervisor's parts record, the dashboard reads.
INCIDENTS = Incidents()
