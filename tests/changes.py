"""A change to a running sharder (a rolling restart, a move, a reshard) made from the command
line under a steady stream of ``!ping``: what the tests of change without downtime share."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from typing import Any

from simulator.child import call_control
from tests.sharder_run import RunningSharder, run_cli
from tests.test_sharder_handoff import replies_to

PING_INTERVAL = 0.05  # 20 a second, over every guild


@dataclass(frozen=True)
class ThroughTraffic:
    command: subprocess.CompletedProcess[str]  # the change's, as the command line ran it
    sent: list[dict[str, Any]]  # the pings: every one was answered
    doubles: int  # answers past the first
    gateway: dict[str, int]  # sessions identified and resumed, identify rules broken


async def pings_until(run: RunningSharder, done: asyncio.Event, sent: list[dict[str, Any]]) -> None:
    sim = await run.simulator()
    world = await call_control(sim.control_url, "GET", "/world")
    # Channel ids are the guild's id with 0x100 + n in the low bits (see simulator.world).
    channels = [guild | 0x100 for guild in world["guild_ids"]]
    while not done.is_set():
        body = {"content": "!ping", "channel_id": channels[len(sent) % len(channels)]}
        sent.append(await call_control(sim.control_url, "POST", "/messages", body))
        await asyncio.sleep(PING_INTERVAL)


async def gateway_counts(run: RunningSharder) -> dict[str, int]:
    stats = await call_control((await run.simulator()).control_url, "GET", "/stats")
    return {key: stats[key] for key in ("identifies", "resumes", "identify_violations")}


async def through_traffic(run: RunningSharder, *command: str) -> ThroughTraffic:
    """``python -m sharder COMMAND`` (which follows the change to its end) with pings from a
    second before it to a second after; once every ping has its answer."""
    before = await gateway_counts(run)
    done, sent = asyncio.Event(), list[dict[str, Any]]()
    pinging = asyncio.create_task(pings_until(run, done, sent))
    await asyncio.sleep(1.0)
    result = await asyncio.to_thread(run_cli, *command, cwd=run.directory)
    await asyncio.sleep(1.0)
    done.set()
    await pinging
    assert result.returncode == 0, result.stderr
    await run.wait_ready()
    counts = await replies_to(run, sent)
    doubles = sum(count - 1 for count in counts.values() if count > 1)
    after = await gateway_counts(run)
    gateway = {key: after[key] - before[key] for key in after}
    print(f"{' '.join(command)}: {len(sent)} pings, {doubles} answered twice; {gateway}")
    assert len(sent) >= 40  # 20 a second, from a second before the change to a second after
    return ThroughTraffic(result, sent, doubles, gateway)
