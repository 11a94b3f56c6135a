"""Routing benchmark: ``ctx.request`` from one worker to another through the master, against the
protocol benchmark's relay (A -> relay -> B -> relay -> A over bare connections), measured in
the same run.

The sharder runs as a user runs it (``python -m sharder start --simulate``) with 2 shards on 2
workers and this module as the bot. A ``!bench`` message injected into a guild of worker 0 makes
it time ``ctx.request`` calls to a guild of worker 1 (whose handler returns its payload): one at
a time for p50/p99, then 64 in flight for throughput. The targets apply to a plain handler,
which answers in the read loop as the relay's echo does; a coroutine handler is measured too.
Also printed: the CPU each process (master, calling worker, handling worker) spends per
pipelined request, the time from ``start`` to every shard ready, and each worker's RSS. Every
figure is the median of ``--runs`` runs.

    python scripts/bench_routing.py [--runs 5] [--round-trips 5000] [--pipelined 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hikari
import psutil
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_protocol import WINDOW, run_ours  # noqa: E402
from sharder.control import ControlUnavailable, call  # noqa: E402
from simulator.child import call_control  # noqa: E402
from worker.context import Invocation, ShardContext  # noqa: E402

SHARDS = 2
GUILDS = 32
START_TIMEOUT = 120.0
BENCH_TIMEOUT = 300.0
CONFIG = f"""
log_level = "WARNING"
[bot]
entry_point = "scripts.bench_routing:setup"
[sharding]
shards = {SHARDS}
workers = {SHARDS}
[supervisor]
request_timeout = 30.0
[simulator]
guilds = {GUILDS}
"""
TARGETS = (("p50 / relay p50", "<=", 1.3), ("pipelined / relay pipelined", ">=", 0.7))
# The targets compare like with like: the relay's echo answers in its read loop, as a plain
# handler does. A coroutine handler costs an asyncio task per call on top (Python 3.11 has no
# eager tasks), which is the bot's choice, not the route's cost.
UNTARGETED = "a task per call on top of the route"


# -- the bot side: runs inside worker 0 ------------------------------------------------------


def setup(bot: hikari.GatewayBot, ctx: ShardContext) -> None:
    # The same answer from a plain handler (run where the request arrives) and from a
    # coroutine handler (run in a task of its own): both are measured.
    @ctx.handler("echo")
    def echo(call: Invocation) -> Any:
        return call.payload

    @ctx.handler("echo_async")
    async def echo_async(call: Invocation) -> Any:
        return call.payload

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        words = (event.content or "").split()
        if words[:1] != ["!bench"]:
            return
        phase, handler = words[1:3]
        target, count, window = (int(word) for word in words[3:6])
        if phase == "round_trips":
            figures = await round_trips(ctx, target, handler, count)
        else:
            figures = {"pipelined": await pipelined(ctx, target, handler, count, window)}
        await event.message.respond(json.dumps(figures), reply=True)


async def round_trips(ctx: ShardContext, target: int, handler: str, count: int) -> dict[str, float]:
    for nonce in range(200):  # warm up both workers and the master
        await ctx.request(target, handler, nonce)
    samples = []
    for nonce in range(count):
        sent_at = time.perf_counter_ns()
        await ctx.request(target, handler, nonce)
        samples.append(time.perf_counter_ns() - sent_at)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
    }


async def pipelined(ctx: ShardContext, target: int, handler: str, count: int, window: int) -> float:
    remaining = count

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await ctx.request(target, handler, remaining)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(window)))
    return count / (time.perf_counter() - started)


# -- the benchmark side ------------------------------------------------------------------------


async def one_run(round_trip_count: int, pipelined_count: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    (directory / "sharder.toml").write_text(CONFIG)
    started = time.perf_counter()
    process = launch_master(directory)
    try:
        status = await wait_ready(directory / "sharder.sock", started)
        ready_s = shards_ready_after(status, time.perf_counter(), started)
        figures: dict[str, Any] = {"ready_s": ready_s}
        control_url = status["api_url"].removesuffix("/api/v10") + "/_sim"
        world = await call_control(control_url, "GET", "/world")
        home = next(g for g in world["guild_ids"] if (g >> 22) % SHARDS == 0)
        target = next(g for g in world["guild_ids"] if (g >> 22) % SHARDS == 1)
        pids = {"caller": status["workers"][0]["pid"], "handler": status["workers"][1]["pid"]}
        processes = {
            name: psutil.Process(pid) for name, pid in {"master": process.pid, **pids}.items()
        }

        async def bench(phase: str, handler: str, count: int) -> dict[str, float]:
            content = f"!bench {phase} {handler} {target} {count} {WINDOW}"
            injected = await call_control(
                control_url, "POST", "/messages", {"content": content, "guild_id": home}
            )
            return await reply(control_url, injected)

        for prefix, handler in (("", "echo"), ("async_", "echo_async")):
            one_at_a_time = await bench("round_trips", handler, round_trip_count)
            figures.update({prefix + key: value for key, value in one_at_a_time.items()})
            before = cpu_seconds(processes)
            in_flight = await bench("pipelined", handler, pipelined_count)
            spent = cpu_seconds(processes)
            figures[prefix + "pipelined"] = in_flight["pipelined"]
            for name in processes:
                per_request = (spent[name] - before[name]) / pipelined_count
                figures[f"{prefix}cpu_{name}_us"] = per_request * 1e6
        after = (await call(directory / "sharder.sock", {"command": "status"}))["status"]
        figures["rss_mib"] = [worker["rss_bytes"] / 2**20 for worker in after["workers"]]
        return figures
    finally:
        stop_master(process)


def cpu_seconds(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """User and system CPU time of each process so far."""
    times = {name: process.cpu_times() for name, process in processes.items()}
    return {name: spent.user + spent.system for name, spent in times.items()}


def stop_master(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def launch_master(directory: Path, log: Path | None = None) -> subprocess.Popen[bytes]:
    """``python -m sharder start --simulate`` in ``directory``; its output in ``log`` if given
    (where it would otherwise land in the middle of a table)."""
    with contextlib.ExitStack() as files:
        output = files.enter_context(log.open("wb")) if log is not None else None
        process = subprocess.Popen(
            [sys.executable, "-m", "sharder", "start", "--simulate", "--no-status",
             "--config", "sharder.toml"],
            cwd=directory,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
        )  # fmt: skip
    # Its own session keeps it from our Ctrl-C; a benchmark stopped by SIGTERM (a timeout)
    # would otherwise leave it running.
    LAUNCHED.append(process)
    signal.signal(signal.SIGTERM, stop_launched)
    return process


LAUNCHED: list[subprocess.Popen[bytes]] = []


def stop_launched(signum: int, frame: object) -> None:
    for process in LAUNCHED:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    sys.exit(128 + signum)


async def wait_ready(socket: Path, started: float) -> dict[str, Any]:
    """The status once every child is ready: shards, compute workers and the REST gate.

    All of them, not only the shards: compute workers start behind the shard workers, and their
    imports would otherwise share the cores with whatever is measured next.
    """
    while time.perf_counter() - started < START_TIMEOUT:
        try:
            answer = await call(socket, {"command": "status"}, timeout=2)
        except (ControlUnavailable, OSError, TimeoutError):
            await asyncio.sleep(0.02)
            continue
        status: dict[str, Any] = answer["status"]
        gate = status["rest_gate"]
        states = [
            *(shard["state"] for shard in status["shards"]),
            *(worker["state"] for worker in status["compute"]),
            *([gate["state"]] if gate is not None else []),
        ]
        if status["shards"] and all(state == "ready" for state in states):
            return status
        await asyncio.sleep(0.02)
    raise TimeoutError(f"the sharder was not ready within {START_TIMEOUT} s")


def shards_ready_after(status: dict[str, Any], asked_at: float, started: float) -> float:
    """Seconds from ``started`` (before the master's process began) to every shard ready, by
    the master's own clock: its uptime when asked places its start."""
    master_started = asked_at - float(status["uptime_s"])
    return master_started - started + float(status["shards_ready_s"])


async def reply(control_url: str, injected: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + BENCH_TIMEOUT
    while time.monotonic() < deadline:
        messages = await call_control(
            control_url, "GET", f"/messages?channel_id={injected['channel_id']}"
        )
        for message in messages:
            if (message["message_reference"] or {}).get("message_id") == str(injected["id"]):
                figures: dict[str, Any] = json.loads(message["content"])
                return figures
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no benchmark answer within {BENCH_TIMEOUT} s")


def listing(runs: list[dict[str, Any]], key: str, style: str) -> str:
    return ", ".join(format(run[key], style) for run in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--pipelined", type=int, default=100000)
    args = parser.parse_args()
    print(f"bench_routing: {os.cpu_count()} cores, medians of {args.runs} runs")

    relay = run_ours(True, args.runs, args.round_trips, args.pipelined)
    runs = [uvloop.run(one_run(args.round_trips, args.pipelined)) for _ in range(args.runs)]

    def median(key: str) -> float:
        return float(statistics.median(run[key] for run in runs))

    print(
        f"relay baseline (bench_protocol d): p50 {relay.ping_pong.p50_us:7.1f} us  "
        f"p99 {relay.ping_pong.p99_us:7.1f} us  pipelined x{WINDOW} {relay.pipelined:>9,.0f}/s"
    )
    for label, prefix, targeted in (
        ("plain handler", "", True),
        ("coroutine handler", "async_", False),
    ):
        p50, p99, rate = (median(f"{prefix}{key}") for key in ("p50_us", "p99_us", "pipelined"))
        p50_runs = listing(runs, prefix + "p50_us", ".1f")
        rate_runs = listing(runs, prefix + "pipelined", ",.0f")
        print(
            f"ctx.request w0 -> master -> w1, {label}: p50 {p50:7.1f} us  p99 {p99:7.1f} us  "
            f"pipelined x{WINDOW} {rate:>9,.0f}/s\n    (p50 runs: {p50_runs}; "
            f"pipelined runs: {rate_runs})"
        )
        ratios = {
            "p50 / relay p50": p50 / relay.ping_pong.p50_us,
            "pipelined / relay pipelined": rate / relay.pipelined,
        }
        for target, sense, bound in TARGETS:
            ratio = ratios[target]
            if not targeted:
                print(f"    {target:<30} {ratio:5.2f}  (reported, not a target: {UNTARGETED})")
                continue
            met = ratio <= bound if sense == "<=" else ratio >= bound
            verdict = "met" if met else "MISSED"
            print(f"    {target:<30} {ratio:5.2f}  (target {sense} {bound})  {verdict}")
        spent = {name: median(f"{prefix}cpu_{name}_us") for name in ("master", "caller", "handler")}
        print(
            "    CPU per pipelined request: "
            + ", ".join(f"{name} {us:.2f} us" for name, us in spent.items())
            + f" (sum {sum(spent.values()):.2f} us)"
        )
    rss = [mib for run in runs for mib in run["rss_mib"]]
    print(
        f"start to all {SHARDS} shards ready: {median('ready_s'):.2f} s "
        f"(runs: {listing(runs, 'ready_s', '.2f')}); "
        f"RSS per worker: median {statistics.median(rss):.0f} MiB, max {max(rss):.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
