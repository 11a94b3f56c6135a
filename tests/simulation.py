"""Running the simulator for tests: as a child process through its CLI, or inside the test."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from simulator.child import (
    ControlError,
    SimulatorEndpoints,
    call_control,
    simulator_process,
)
from simulator.config import SimulatorConfig
from simulator.server import Simulator
from tests.virtual_time import VirtualTimeLoop

__all__ = [
    "ControlError",
    "SimulatorEndpoints",
    "call_control",
    "eventually",
    "has_reply",
    "running_simulator",
    "simulator_process",
]


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 15.0,
    interval: float = 0.05,
) -> None:
    """Wait until ``check`` holds; fail with a timeout otherwise.

    For what no timer in the test's loop brings about: another process's I/O (a simulator or
    sharder child), or this loop's own sockets. Time is the loop's: on a virtual-time loop the
    polls cost no wall time, and a condition only another process could meet fails at once
    instead of spinning for ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_simulator(**settings: Any) -> AsyncIterator[Simulator]:
    """A simulator inside the test's event loop, with ``SimulatorConfig`` settings.

    In a test marked ``virtual_time`` it keeps time by the loop's clock, so ``advance`` moves
    its windows and deadlines (identify buckets, resume windows, REST limits, heartbeats) along
    with the loop's timers. Not left to the test: a simulator on the wall clock would sleep on
    virtual timers towards deadlines that never come.
    """
    loop = asyncio.get_running_loop()
    clock = loop.time if isinstance(loop, VirtualTimeLoop) else time.monotonic
    simulator = Simulator(SimulatorConfig(**settings), clock)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def has_reply(sim: SimulatorEndpoints, injected: dict[str, Any], content: str) -> bool:
    """Whether the bot answered an injected message with ``content`` as a reply to it."""
    replies = await sim.control("GET", f"/messages?channel_id={injected['channel_id']}")
    return any(
        reply["content"] == content
        and (reply["message_reference"] or {}).get("message_id") == str(injected["id"])
        for reply in replies
    )
