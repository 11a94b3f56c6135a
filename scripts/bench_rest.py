"""REST gate benchmark: what the gate adds to a request, what rate it holds under saturation, and
what it costs in CPU (the figure behind running it in its own process).

The simulator runs as its own process; the gate runs as the sharder runs it (its process entry,
a listening socket handed over, a pipe to this process standing in for the master).

- Added latency: ``GET /users/@me`` one at a time, straight to the simulator and through the
  gate, alternating, with limits far away (p50/p99 of each and of the difference).
- Saturation: 128 requests in flight (``POST /channels/{id}/messages`` over 64 channels)
  through a gate holding 50/s against a simulator enforcing 50/s; the rate at which messages
  arrive (by the clock in their ids) and the 429s the simulator answered.
- CPU: the gate process's CPU time per request it forwarded (after the warm-up).

    python scripts/bench_rest.py [--runs 3] [--requests 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psutil
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from child.runtime import ChildStart, run_child  # noqa: E402
from gate.spec import RestGateSpec  # noqa: E402
from protocol import PROTOCOL_VERSION, open_connection, socket_from_pipe  # noqa: E402
from protocol.messages import Hello  # noqa: E402
from simulator.child import SimulatorEndpoints, call_control, simulator_process  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")
LIMIT = 50
FAR = 1_000_000  # a limit nothing here comes near
IN_FLIGHT = 128
CHANNELS = 64


@contextlib.contextmanager
def simulator(global_limit: int) -> Iterator[SimulatorEndpoints]:
    flags = ("--guilds", str(CHANNELS), "--rest-global-limit", str(global_limit))
    with simulator_process(*flags, "--rest-route-limit", str(FAR)) as (endpoints, _):
        yield endpoints


@contextlib.asynccontextmanager
async def gate(api_url: str, global_limit: int) -> AsyncIterator[tuple[str, psutil.Process]]:
    """A gate process in front of ``api_url``: its base URL for worker 0, and the process."""
    listener = socket.create_server(("127.0.0.1", 0))
    spec = RestGateSpec(
        api_url=api_url,
        secret="bench",
        workers=1,
        global_limit=global_limit,
        max_wait=60.0,
        invalid_limit=10_000,
        slowdown_at=0.5,
        refuse_at=0.95,
    )
    ours, theirs = SPAWN.Pipe(duplex=True)
    start = ChildStart("gate.rest_gate:serve", "rest-gate", os.getpid(), "WARNING")
    process = SPAWN.Process(target=run_child, args=(start, spec, listener, theirs))
    process.start()
    theirs.close()
    hello = Hello(
        version=PROTOCOL_VERSION, role="master", worker_id=0, pid=os.getpid(), nonce_origin=1
    )
    link = await open_connection(socket_from_pipe(ours), hello, hello_timeout=30)
    link.deliver_to(lambda *_: None)
    try:
        yield (
            f"http://127.0.0.1:{listener.getsockname()[1]}/bench/w/0/api/v10",
            psutil.Process(process.pid),
        )
    finally:
        link.close()
        process.join(10)
        if process.is_alive():
            process.kill()
        listener.close()


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def added_latency(requests: int) -> dict[str, float]:
    with simulator(FAR) as sim:
        async with gate(sim.rest_url, FAR) as (gated, process), aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bot {sim.token}"}
            direct: list[float] = []
            through: list[float] = []
            cpu_before = 0.0
            for index in range(requests + 100):  # the first hundred warm both paths up
                if index == 100:
                    cpu_before = sum(process.cpu_times()[:2])
                for base, samples in ((sim.rest_url, direct), (gated, through)):
                    started = time.perf_counter()
                    async with http.get(f"{base}/users/@me", headers=headers) as response:
                        await response.read()
                        assert response.status == 200, response.status
                    if index >= 100:
                        samples.append((time.perf_counter() - started) * 1e6)
            cpu = sum(process.cpu_times()[:2]) - cpu_before
    return {
        "direct_p50": percentile(direct, 0.5),
        "direct_p99": percentile(direct, 0.99),
        "gate_p50": percentile(through, 0.5),
        "gate_p99": percentile(through, 0.99),
        "cpu_us": cpu / requests * 1e6,
    }


async def saturation(seconds: float) -> dict[str, float]:
    with simulator(LIMIT) as sim:
        world = await call_control(sim.control_url, "GET", "/world")
        channels = [guild | 0x100 for guild in world["guild_ids"][:CHANNELS]]
        before = await sim.stats()
        async with gate(sim.rest_url, LIMIT) as (gated, _), aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bot {sim.token}"}
            ids: list[int] = []
            deadline = time.monotonic() + seconds

            async def lane(number: int) -> None:
                while time.monotonic() < deadline:
                    url = f"{gated}/channels/{channels[number % CHANNELS]}/messages"
                    async with http.post(url, json={"content": "x"}, headers=headers) as response:
                        if response.status == 200:
                            ids.append(int((await response.json())["id"]))

            await asyncio.gather(*(lane(number) for number in range(IN_FLIGHT)))
        after = await sim.stats()
    milliseconds = (max(ids) >> 22) - (min(ids) >> 22)
    return {
        "rate": (len(ids) - 1) / (milliseconds / 1000),
        "got_429": after["rest_429"] - before["rest_429"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"bench_rest: {os.cpu_count()} cores, medians of {args.runs} runs")
    latency = [uvloop.run(added_latency(args.requests)) for _ in range(args.runs)]
    saturated = [uvloop.run(saturation(args.seconds)) for _ in range(args.runs)]

    def median(runs: list[dict[str, float]], key: str) -> float:
        return float(statistics.median(run[key] for run in runs))

    direct50, direct99 = median(latency, "direct_p50"), median(latency, "direct_p99")
    gate50, gate99 = median(latency, "gate_p50"), median(latency, "gate_p99")
    print(f"GET /users/@me, direct:      p50 {direct50:7.0f} us  p99 {direct99:7.0f} us")
    print(f"GET /users/@me, through gate: p50 {gate50:7.0f} us  p99 {gate99:7.0f} us")
    added50, added99 = gate50 - direct50, gate99 - direct99
    print(f"added by the gate:            p50 {added50:7.0f} us  p99 {added99:7.0f} us")
    cpu = median(latency, "cpu_us")
    print(
        f"gate CPU per request: {cpu:.0f} us: {cpu * LIMIT / 1e4:.1f}% of a core at {LIMIT}/s, "
        f"{cpu * 1000 / 1e4:.0f}% at a raised 1,000/s"
    )
    rate = median(saturated, "rate")
    print(
        f"saturated, {IN_FLIGHT} in flight, limit {LIMIT}/s: {rate:.1f} messages/s arrived "
        f"({rate / LIMIT:.1%} of the limit; runs: "
        + ", ".join(f"{run['rate']:.1f}" for run in saturated)
        + f"), 429s: {', '.join(str(int(run['got_429'])) for run in saturated)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
