"""Everything about the simulator that a test, benchmark or operator may set.

Defaults are Discord's own limits; tests shrink the time windows so a rule can be broken and
observed in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0

    # The world.
    seed: int = 1
    guilds: int = 100
    channels_per_guild: int = 3
    roles_per_guild: int = 3
    members_per_guild: int = 25
    emojis_per_guild: int = 2
    users: int = 0  # 0: twice the guilds, so that every user is in several guilds

    # GET /gateway/bot: the shard count Discord recommends and the session start budget.
    shards: int = 1  # the least it recommends
    guilds_per_shard: int = 1000  # and one shard per this many guilds beyond; 0: only ``shards``
    max_concurrency: int = 1
    session_start_total: int = 1000
    session_start_reset: float = 86_400.0

    # Gateway rules.
    identify_window: float = 5.0  # each identify bucket may IDENTIFY once per window
    heartbeat_interval: float = 41.25
    resume_window: float = 120.0  # how long a dropped session stays resumable
    resume_buffer: int = 20_000  # dispatches kept per session for replay
    max_guilds_per_shard: int = 2500  # more than this on one shard: 4011 sharding required
    gateway_send_limit: int = 120  # client payloads per window before 4008 rate limited
    gateway_send_window: float = 60.0
    allowed_privileged_intents: int = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, content
    strict: bool = False  # also close identify and session budget offenders (4008)

    # REST rate limits.
    rest_global_limit: int = 50  # requests per second over all routes
    rest_route_limit: int = 5  # requests per route bucket per window
    rest_route_window: float = 5.0

    def __post_init__(self) -> None:
        positive = {
            "shards": self.shards,
            "max_concurrency": self.max_concurrency,
            "identify_window": self.identify_window,
            "heartbeat_interval": self.heartbeat_interval,
            "resume_window": self.resume_window,
            "resume_buffer": self.resume_buffer,
            "max_guilds_per_shard": self.max_guilds_per_shard,
            "gateway_send_limit": self.gateway_send_limit,
            "gateway_send_window": self.gateway_send_window,
            "rest_global_limit": self.rest_global_limit,
            "rest_route_limit": self.rest_route_limit,
            "rest_route_window": self.rest_route_window,
            "session_start_reset": self.session_start_reset,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        for name in ("session_start_total", "guilds_per_shard"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
