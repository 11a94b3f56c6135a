"""What the master tells a worker at spawn: a shard worker its identity, its shards and how to
reach Discord; a compute worker its limits and where emoji images come from.

Pickled once by ``multiprocessing`` (spawn) into the child; everything later goes over the pipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.liveness import Liveness
from protocol.messages import Session

__all__ = ["ComputeSpec", "Session", "WorkerSpec"]


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    worker_id: int
    shard_ids: tuple[int, ...]
    shard_count: int
    token: str
    api_url: str
    rest_gate: bool  # api_url is the REST gate's: it keeps the rate limits, hikari need not
    entry_point: str  # "module:function", called as function(bot, ctx)
    intents: int
    request_timeout: float
    compute_timeout: float  # default deadline of ctx.compute calls
    user_cache: int  # users whose shared data a worker keeps, the least recently read dropped
    liveness: Liveness  # kept fresh every liveness_period: a busy loop is not a hung process
    liveness_period: float
    # Started beside the worker's running process (a rolling restart): it loads the bot code,
    # says STANDBY and starts its shards only when SHARD_TAKE hands it the sessions.
    standby: bool = False
    # A new generation of a live reshard: its listeners are muted until CUTOVER.
    new_generation: bool = False
    # Sessions of shards handed over from the worker's previous process: they RESUME.
    sessions: dict[int, Session] = field(default_factory=dict)
    guild_counts: dict[int, int] = field(default_factory=dict)  # of those shards, as last known


@dataclass(frozen=True, slots=True)
class ComputeSpec:
    compute_id: int
    cpu_seconds: int  # CPU time one task may use
    memory_bytes: int  # the process's address space
    entry_point: str  # "module:function" registering own tasks, or ""
    max_emoji: int
    jumbo_height: int
    custom_emoji_url: str
    unicode_emoji_url: str
    emoji_timeout: float
    emoji_max_bytes: int
    emoji_cache_bytes: int
