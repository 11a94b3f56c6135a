"""What the master tells the REST gate at spawn: where the API is, who may call, its limits.

Pickled once by ``multiprocessing`` (spawn) into the child; everything later goes over the pipe.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestGateSpec:
    api_url: str  # the real API base: Discord's, or the simulator's
    secret: str  # the first path segment of every worker's REST base: nobody else gets through
    workers: int  # worker ids are 0 to workers - 1
    global_limit: int
    max_wait: float
    invalid_limit: int
    slowdown_at: float
    refuse_at: float
