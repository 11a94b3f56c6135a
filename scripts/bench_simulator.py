"""Benchmark of the simulator: gateway dispatch rate, and the cost of a 100,000-guild world.

a) MESSAGE_CREATE dispatch rate: the simulator runs as its own process (pinned to one core when
   the machine has two or more), 16 shards connect with zlib-stream from this process (on the
   other core), traffic of ``--events`` messages is started through the control API as fast as
   the simulator can, and the rate is events received by all shards over the time from start
   to the last one. Target: >= 20,000 events/s.
b) World: ``python -m simulator --guilds 100000`` from exec to its printed token (world build
   and server start), and its resident memory then.

Each figure is the median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

import aiohttp
import msgspec
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.child import SimulatorEndpoints, simulator_process

SHARDS = 16
GUILDS = 1600
DISPATCH_TARGET = 20_000
MESSAGE_CREATE = b'"t":"MESSAGE_CREATE"'
READY = b'"t":"READY"'
BIG_WORLD = 100_000
TIMEOUT = 120.0


class ShardCounter:
    """One shard's connection: inflates the zlib stream and counts MESSAGE_CREATE frames."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> None:
        self.ws = ws
        self.tally = tally
        self.inflate = zlib.decompressobj()
        self.ready = asyncio.Event()

    async def identify(self, token: str, shard_id: int) -> None:
        hello = await self.ws.receive(TIMEOUT)
        self.inflate.decompress(hello.data)  # the stream starts with HELLO
        identify = {"token": token, "shard": [shard_id, SHARDS], "intents": (1 << 9) | (1 << 15)}
        await self.ws.send_bytes(msgspec.json.encode({"op": 2, "d": identify}))

    async def count(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                break
            payload = self.inflate.decompress(message.data)
            if MESSAGE_CREATE in payload:
                self.tally.add()
            elif READY in payload:
                self.ready.set()


class Tally:
    """Messages received by all shards, and when the last one came."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.last_at = 0.0
        self.done = asyncio.Event()

    def add(self) -> None:
        self.received += 1
        if self.received == self.expected:
            self.last_at = time.perf_counter()
            self.done.set()


async def dispatch_rate(sim: SimulatorEndpoints, events: int) -> float:
    tally = Tally(events)
    async with aiohttp.ClientSession() as http:
        url = f"{sim.gateway_url}?v=10&encoding=json&compress=zlib-stream"
        shards = [ShardCounter(await http.ws_connect(url), tally) for _ in range(SHARDS)]
        for shard_id, shard in enumerate(shards):
            await shard.identify(sim.token, shard_id)
        counting = [asyncio.create_task(shard.count()) for shard in shards]
        try:
            async with asyncio.timeout(TIMEOUT):
                await asyncio.gather(*(shard.ready.wait() for shard in shards))
            await asyncio.sleep(0.5)  # let the GUILD_CREATEs drain
            started = time.perf_counter()
            await sim.control(
                "POST", "/traffic/start", {"rate": 0, "count": events, "mix": {"message": 1}}
            )
            try:
                async with asyncio.timeout(TIMEOUT):
                    await tally.done.wait()
            except TimeoutError:
                raise TimeoutError(f"only {tally.received} of {events} messages arrived") from None
            return events / (tally.last_at - started)
        finally:
            for shard in shards:
                await shard.ws.close()
            for task in counting:
                task.cancel()


def pin(pid: int, core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, {core})


async def bench_dispatch(runs: int, events: int) -> list[float]:
    rates = []
    pin(0, 1)
    for _ in range(runs):
        with simulator_process(
            "--guilds", str(GUILDS), "--shards", str(SHARDS), "--max-concurrency", str(SHARDS)
        ) as (sim, process):
            pin(process.pid, 0)
            rates.append(await dispatch_rate(sim, events))
    return rates


def bench_world(runs: int) -> tuple[list[float], list[float]]:
    seconds, rss_mib = [], []
    for _ in range(runs):
        started = time.perf_counter()
        with simulator_process("--guilds", str(BIG_WORLD)) as (_, process):
            seconds.append(time.perf_counter() - started)
            rss_mib.append(psutil.Process(process.pid).memory_info().rss / 2**20)
    return seconds, rss_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()

    print(f"simulator benchmark: median of {args.runs} runs, {os.cpu_count()} cores")
    rates = uvloop.run(bench_dispatch(args.runs, args.events))
    median_rate = statistics.median(rates)
    print(
        f"a) MESSAGE_CREATE to {SHARDS} shards, zlib-stream, {args.events} events: "
        f"{median_rate:,.0f} events/s (runs: {', '.join(f'{r:,.0f}' for r in rates)}); "
        f"target >= {DISPATCH_TARGET:,}: {'met' if median_rate >= DISPATCH_TARGET else 'NOT met'}"
    )
    seconds, rss = bench_world(args.runs)
    print(
        f"b) {BIG_WORLD:,}-guild world, exec to serving: {statistics.median(seconds):.2f} s "
        f"(runs: {', '.join(f'{s:.2f}' for s in seconds)}); "
        f"RSS {statistics.median(rss):.0f} MiB"
    )


if __name__ == "__main__":
    main()
