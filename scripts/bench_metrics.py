"""What metrics and the dashboard cost the master: its CPU with a page open, against without.

One sharder (``--simulate``, the reference bot, simulated traffic) at 64 shards runs through
rounds of two windows each. In the first, nobody reads the listener. In the second, a page is
open and Prometheus scrapes: a client reads ``/events`` as a browser does (every tick, once a
second), and ``/metrics`` is scraped every ``--scrape-every`` seconds. The master's own CPU time
(user + system, not its children's) over each window is the cost. A second sharder, otherwise
the same but with ``[metrics] enabled = false``, gives the master's CPU with no listener at all.
Its windows are idle like the first kind, so the once-a-second sampling for the sparklines,
which runs whether a page is open or not, is counted too.

    python scripts/bench_metrics.py [--shards 64] [--workers 8] [--guilds 6400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench_routing import launch_master, stop_master, wait_ready

CONFIG = """
[sharding]
shards = {shards}
workers = {workers}
[compute]
workers = 1
[simulator]
guilds = {guilds}
members_per_guild = {members}
max_concurrency = 16
traffic_rate = {rate}
[metrics]
enabled = {enabled}
address = "127.0.0.1:0"
"""


def master_cpu(master: psutil.Process) -> float:
    spent = master.cpu_times()
    return spent.user + spent.system


async def read_page(url: str, received: list[int]) -> None:
    """Read the dashboard's stream as an open page does, until cancelled."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/events") as response:
        async for chunk in response.content.iter_any():
            received.append(len(chunk))


async def scrape_every(url: str, every: float, took: list[float]) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            started = time.perf_counter()
            async with session.get(f"{url}/metrics") as response:
                await response.read()
            took.append(time.perf_counter() - started)
            await asyncio.sleep(every)


async def window(master: psutil.Process, seconds: float) -> float:
    """The master's CPU over ``seconds``, in percent of one core."""
    before, started = master_cpu(master), time.perf_counter()
    await asyncio.sleep(seconds)
    return 100 * (master_cpu(master) - before) / (time.perf_counter() - started)


async def one_sharder(
    args: argparse.Namespace, enabled: bool
) -> tuple[list[float], list[float], list[float], int]:
    """Per round: the master's CPU closed and open (open empty when disabled); the scrape
    times; the bytes a page received."""
    directory = Path(tempfile.mkdtemp(prefix="bench-metrics-", dir="/tmp"))
    (directory / "sharder.toml").write_text(
        CONFIG.format(
            shards=args.shards,
            workers=args.workers,
            guilds=args.guilds,
            members=args.members,
            rate=args.rate,
            enabled=str(enabled).lower(),
        )
    )
    process = launch_master(directory, directory / "sharder.log")
    closed: list[float] = []
    opened: list[float] = []
    scrapes: list[float] = []
    received: list[int] = []
    try:
        status = await wait_ready(directory / "sharder.sock", time.perf_counter())
        master = psutil.Process(process.pid)
        await asyncio.sleep(args.settle)
        url = status["metrics_url"]
        for _ in range(args.rounds):
            closed.append(await window(master, args.window))
            if not enabled:
                continue
            page = asyncio.create_task(read_page(url, received))
            scraping = asyncio.create_task(scrape_every(url, args.scrape_every, scrapes))
            opened.append(await window(master, args.window))
            for task in (page, scraping):
                task.cancel()
            await asyncio.gather(page, scraping, return_exceptions=True)
    finally:
        stop_master(process)
        shutil.rmtree(directory, ignore_errors=True)
    return closed, opened, scrapes, sum(received)


def row(label: str, values: list[float]) -> str:
    each = ", ".join(f"{value:.2f}" for value in values)
    return f"  {label + ':':36} {statistics.median(values):5.2f}  ({each})"


async def main(args: argparse.Namespace) -> int:
    world = f"{args.shards} shards on {args.workers} workers, {args.guilds:,} guilds"
    print(f"metrics and dashboard: {world}, {args.rate:g} messages/s")
    closed, opened, scrapes, received = await one_sharder(args, enabled=True)
    off, _, _, _ = await one_sharder(args, enabled=False)
    cost = [page - idle for page, idle in zip(opened, closed, strict=True)]
    seconds = args.window * args.rounds
    print(f"master CPU, % of a core over {args.window:g} s windows (median of {args.rounds}):")
    print(row("metrics off (no listener)", off))
    print(row("listener on, nobody reading", closed))
    print(row(f"a page open, scraped every {args.scrape_every:g} s", opened))
    same_run = statistics.median(cost)
    print(f"  {'page open minus closed, same run:':36} {same_run:+5.2f} points (target < 2)")
    total = statistics.median(opened) - statistics.median(off)
    print(f"  {'page open minus metrics off:':36} {total:+5.2f} points (two runs: noisier)")
    print(
        f"/metrics scrape p50 {statistics.median(scrapes) * 1000:.1f} ms, "
        f"max {max(scrapes) * 1000:.1f} ms ({len(scrapes)} scrapes); "
        f"page stream {received / seconds / 1024:.1f} KiB/s"
    )
    return 0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--guilds", type=int, default=6400)
    parser.add_argument("--members", type=int, default=25)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--scrape-every", type=float, default=5.0)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(uvloop.run(main(parse())))
