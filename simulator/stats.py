"""Counters of everything the simulator saw: what tests and benchmarks read as the truth.

Every rule the simulator enforces has a violation counter here, whether or not strict mode
also closed the offender.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Stats:
    connections: int = 0
    identifies: int = 0
    identify_violations: int = 0  # IDENTIFY inside its bucket's window
    session_budget_violations: int = 0  # IDENTIFY with the daily budget spent
    resumes: int = 0
    resumes_refused: int = 0  # unknown, expired or ended session: INVALID_SESSION
    resumes_displacing: int = 0  # a RESUME took a session from a live connection
    sessions_active: int = 0  # sessions with a connection
    events_dispatched: int = 0  # op 0 payloads queued to connections, replays included
    events_replayed: int = 0
    heartbeats: int = 0
    heartbeat_timeouts: int = 0
    gateway_rate_limited: int = 0
    slow_clients_dropped: int = 0  # connections too far behind their dispatches
    rest_requests: int = 0
    rest_401: int = 0
    rest_429: int = 0
    rest_global_429: int = 0
    rest_shared_429: int = 0  # refused by a shared 429 the control API forced on the route
    bot_messages: int = 0
    user_messages: int = 0
    interactions: int = 0
    interaction_responses: int = 0
    close_codes: Counter[int] = field(default_factory=Counter)
    compression: Counter[str] = field(default_factory=Counter)
    # What the hub routed for guilds, by the shard count of the sessions it reached (the
    # generations of a live reshard); per guild in the gateway's tally, GET /_sim/dispatches.
    dispatches_by_shard_count: Counter[int] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        plain: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            plain[name] = (
                {str(key): count for key, count in value.items()}
                if isinstance(value, Counter)
                else value
            )
        return plain
