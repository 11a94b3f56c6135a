"""What the gate reports per route: requests, their time queued, 429s and invalid answers.

Only counted here, never read by the limits: the report (``RestGateReport``) may gain or lose a
figure without the admission rules changing.
"""

from __future__ import annotations

from dataclasses import dataclass

from gate.routes import MAX_ROUTES, Route

OTHER_ROUTES = "other routes"  # the routes past MAX_ROUTES, counted together


@dataclass(slots=True)
class RouteCounts:
    requests: int = 0
    queued_s: float = 0.0
    queued_max_s: float = 0.0
    got_429: int = 0
    invalid: int = 0


class RouteStats:
    """The counts of every route by name, at most ``MAX_ROUTES`` of them and ``OTHER_ROUTES``."""

    def __init__(self) -> None:
        self.by_name: dict[str, RouteCounts] = {}

    def admitted(self, route: Route, queued: float) -> None:
        counts = self.of(route)
        counts.requests += 1
        counts.queued_s += queued
        if queued > counts.queued_max_s:
            counts.queued_max_s = queued

    def of(self, route: Route) -> RouteCounts:
        counts = self.by_name.get(route.name)
        if counts is None:
            name = route.name if len(self.by_name) < MAX_ROUTES else OTHER_ROUTES
            counts = self.by_name.setdefault(name, RouteCounts())
        return counts
