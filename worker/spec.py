"""What the master tells a shard worker at spawn: its identity, its shards and how to reach Discord.

Pickled once by ``multiprocessing`` (spawn) into the child; everything later goes over the pipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.shard_hooks import Session


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    worker_id: int
    shard_ids: tuple[int, ...]
    shard_count: int
    token: str
    api_url: str
    entry_point: str  # "module:function", called as function(bot, ctx)
    intents: int
    master_pid: int  # the worker exits if this is no longer its parent
    request_timeout: float
    log_level: str
    # Sessions of shards handed over from the worker's previous process: they RESUME.
    sessions: dict[int, Session] = field(default_factory=dict)
    guild_counts: dict[int, int] = field(default_factory=dict)  # of those shards, as last known
