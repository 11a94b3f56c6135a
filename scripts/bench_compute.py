"""Compute benchmark: a shard worker's event-loop lag and heartbeat round trips while CPU tasks
run, on the compute pool against in the shard process itself; and the pool's tasks/s.

The sharder runs as a user runs it (``python -m sharder start --simulate``): 2 shards on one
shard worker, the compute pool at its default (one process per core), and this module as the
bot. A ``!bench`` message makes the bot run one workload for ``--seconds``:

- ``idle``: nothing, the baseline;
- ``math``: ``factorial(3000)`` (about 1 ms of CPU and a 9,131-digit answer), and ``jumbo``:
  five emoji (two still, two animated, one unicode) fetched from the simulator's CDN and
  composed into a GIF; each either through ``ctx.compute`` with enough calls in flight to keep
  every compute worker busy, or run inline in the shard worker, one after another, yielding to
  the event loop between tasks (what a bot without a pool does at best);
- ``light math``: ``sqrt(2) * (3 + 4) ** 2`` through the pool: the pool's own overhead.

Meanwhile the bot samples its event-loop lag (a 5 ms sleep, and how late it wakes) and the
master pings the worker 100 times per workload (the status's p99 is over the last 100 pings);
the p99 of both is reported per workload, with tasks/s. The workloads follow a first idle
period that lets the start-up settle. Every figure is the median of ``--runs`` runs.

    python scripts/bench_compute.py [--runs 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import hikari
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_routing import launch_master, reply, stop_master, wait_ready  # noqa: E402
from sharder.control import call  # noqa: E402
from sharder.lifecycle import ROUND_TRIPS_KEPT  # noqa: E402
from simulator.child import call_control  # noqa: E402
from simulator.world import EMOJI_BASE  # noqa: E402
from worker import compute_math  # noqa: E402
from worker.context import ShardContext  # noqa: E402
from worker.emoji_compose import compose  # noqa: E402
from worker.emoji_fetch import EmojiFetcher, EmojiSources, fetch_emoji_images  # noqa: E402

HEAVY_MATH = "factorial(3000)"
LIGHT_MATH = "sqrt(2) * (3 + 4) ** 2"
LAG_PROBE = 0.005
CONFIG = """
log_level = "WARNING"
[bot]
entry_point = "scripts.bench_compute:setup"
[sharding]
shards = 2
workers = 1
[supervisor]
heartbeat_interval = {heartbeat_interval}
heartbeat_misses = 1000  # the inline runs stall the loop on purpose: no hang kills here
[compute]
queue_size = 256
task_timeout = 60.0
[simulator]
guilds = 8
"""
# (workload, where): label in the table
WORKLOADS = (
    ("idle", "none", "idle"),
    ("math", "pool", "math, compute pool"),
    ("math", "inline", "math, in the shard process"),
    ("jumbo", "pool", "jumbo, compute pool"),
    ("jumbo", "inline", "jumbo, in the shard process"),
    ("light", "pool", "light math, compute pool"),
)


# -- the bot side: runs inside the shard worker ------------------------------------------------


def setup(bot: hikari.GatewayBot, ctx: ShardContext) -> None:
    sys.set_int_max_str_digits(compute_math.MAX_DIGITS + 1)  # the inline math's answer
    fetchers: dict[str, EmojiFetcher] = {}

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        words = (event.content or "").split(" ", 6)
        if words[:1] != ["!bench"]:
            return
        workload, where, seconds, lanes, cdn, text = words[1:]
        if cdn not in fetchers:
            sources = EmojiSources(f"{cdn}/emojis/", f"{cdn}/emojis/unicode/")
            fetchers[cdn] = EmojiFetcher(sources)
        task = bench_task(ctx, workload, where, text, fetchers[cdn])
        figures = await measure(task, float(seconds), int(lanes) if where == "pool" else 1)
        await event.message.respond(json.dumps(figures), reply=True)


def bench_task(
    ctx: ShardContext, workload: str, where: str, text: str, fetcher: EmojiFetcher
) -> Callable[[], Awaitable[object]] | None:
    async def math_inline() -> object:
        await asyncio.sleep(0)
        return compute_math.format_number(compute_math.evaluate(HEAVY_MATH))

    async def jumbo_inline() -> object:
        _, images = await fetch_emoji_images(text, fetcher, 10)
        await asyncio.sleep(0)
        return compose(images)

    tasks: dict[tuple[str, str], Callable[[], Awaitable[object]]] = {
        ("math", "pool"): lambda: ctx.compute.math(HEAVY_MATH),
        ("math", "inline"): math_inline,
        ("jumbo", "pool"): lambda: ctx.compute.jumbo(text),
        ("jumbo", "inline"): jumbo_inline,
        ("light", "pool"): lambda: ctx.compute.math(LIGHT_MATH),
    }
    return tasks.get((workload, where))


async def measure(
    task: Callable[[], Awaitable[object]] | None, seconds: float, lanes: int
) -> dict[str, float]:
    lags: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds

    async def probe() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await asyncio.sleep(LAG_PROBE)
            lags.append(time.perf_counter() - started - LAG_PROBE)

    async def lane() -> None:
        nonlocal done
        assert task is not None
        while time.perf_counter() < deadline:
            await task()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(probe(), *(lane() for _ in range(lanes if task is not None else 0)))
    elapsed = time.perf_counter() - started
    lags.sort()
    return {
        "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1000,
        "tasks_per_s": done / elapsed,
    }


# -- the benchmark side ------------------------------------------------------------------------


async def one_run(seconds: float) -> dict[str, dict[str, float]]:
    directory = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    interval = seconds / ROUND_TRIPS_KEPT  # the p99 is over exactly one workload's pings
    (directory / "sharder.toml").write_text(CONFIG.format(heartbeat_interval=interval))
    socket = directory / "sharder.sock"
    process = launch_master(directory)
    try:
        status = await wait_ready(socket, time.perf_counter())
        while not all(worker["state"] == "ready" for worker in status["compute"]):
            await asyncio.sleep(0.05)
            status = (await call(socket, {"command": "status"}))["status"]
        lanes = 4 * len(status["compute"])  # the queue never empties
        base = status["api_url"].removesuffix("/api/v10")
        guild_ids = (await call_control(f"{base}/_sim", "GET", "/world"))["guild_ids"]
        text = " ".join(
            [f"<:still:{g | EMOJI_BASE}>" for g in guild_ids[:2]]
            + [f"<a:moving:{g | (EMOJI_BASE + 1)}>" for g in guild_ids[2:4]]
            + ["🎉"]
        )
        await asyncio.sleep(seconds)  # start-up pings leave the heartbeat window
        figures = {}
        for workload, where, label in WORKLOADS:
            content = f"!bench {workload} {where} {seconds} {lanes} {base} {text}"
            injected = await call_control(
                f"{base}/_sim", "POST", "/messages", {"content": content, "guild_id": guild_ids[0]}
            )
            figures[label] = await reply(f"{base}/_sim", injected)
            status = (await call(socket, {"command": "status"}))["status"]
            figures[label]["heartbeat_p99_ms"] = status["workers"][0]["heartbeat_p99_ms"]
        return figures
    finally:
        stop_master(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(
        f"bench_compute: {os.cpu_count()} cores, {os.cpu_count()} compute workers, "
        f"medians of {args.runs} runs of {args.seconds:.0f} s per workload"
    )
    runs = [uvloop.run(one_run(args.seconds)) for _ in range(args.runs)]
    print(f"{'':30} {'loop lag p99':>13} {'heartbeat p99':>14} {'tasks/s':>9}")
    for _, _, label in WORKLOADS:

        def median(key: str, label: str = label) -> float:
            return float(statistics.median(run[label][key] for run in runs))

        rate = median("tasks_per_s")
        print(
            f"{label:30} {median('lag_p99_ms'):10.2f} ms {median('heartbeat_p99_ms'):11.2f} ms "
            + (f"{rate:9,.0f}" if rate else f"{'-':>9}")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
