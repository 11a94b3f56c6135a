"""Shared state benchmark.

a) Durable updates: ``--writers`` tasks merge member-activity counters into the store (a real
   SQLite file, WAL, synchronous=FULL) as fast as their acknowledgements come back, for
   ``--seconds``: updates/s and acknowledgement latency, with group commit.
b) Propagation: ``python -m sharder start --simulate`` with 2 workers and this module as the
   bot; worker 0 writes a user's data ``--changes`` times, one after another, and worker 1
   timestamps each change as it reaches its view (a monotonic clock both processes share):
   latency from the write to the other shard's view, p50/p99.
c) Replay size: the GUILD_SYNC messages a worker owning 1,000 guilds receives at start, each
   guild with a config, three grants and 25 members' activity.

Every figure is the median of ``--runs`` runs.

    python scripts/bench_state.py [--runs 5] [--writers 256] [--seconds 3] [--changes 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hikari
import msgspec

from protocol import RoutingTable
from protocol.merge import AddWinsSet, Clock, CounterMap, LwwMap
from protocol.messages import ReplyOk, StateSync, deadline_in
from scripts.bench_routing import launch_master, wait_ready
from sharder.state_service import StateService
from sharder.store import StateStore
from sharder.workers import WorkerHandle
from simulator.child import call_control
from worker.context import Invocation, ShardContext

TARGET = 20_000
PROPAGATION_TARGET_MS = 5.0
SYNC_GUILDS = 1000
USER = 777
CONFIG = """
log_level = "WARNING"
[bot]
entry_point = "scripts.bench_state:setup"
[sharding]
shards = 2
workers = 2
[supervisor]
request_timeout = 30.0
[simulator]
guilds = 8
"""


# -- the bot side (b): runs in both workers ------------------------------------------------------


def setup(bot: hikari.GatewayBot, ctx: ShardContext) -> None:
    arrivals: list[float] = []

    def arrived(scope: str, key: str) -> None:
        sent_at = (ctx.state.cached_user(USER) or {}).get("sent_at")
        if scope == "user_data" and key == str(USER) and sent_at is not None:
            arrivals.append(time.monotonic() - sent_at)

    ctx.state.subscribe(arrived)

    @ctx.handler("arrivals")
    def collected(call: Invocation) -> list[float]:
        return arrivals

    @ctx.handler("watch")
    async def watch(call: Invocation) -> None:
        # A worker holds (and is kept up to date on) only the users it has read.
        await ctx.state.user(USER)

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        words = (event.content or "").split()
        if words[:1] != ["!propagate"]:
            return
        other_guild, changes = int(words[1]), int(words[2])
        await ctx.request(other_guild, "watch")
        for _ in range(changes):
            await ctx.state.set_user(USER, sent_at=time.monotonic())
        latencies = sorted(await ctx.request(other_guild, "arrivals"))
        figures = {
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "count": len(latencies),
        }
        await event.message.respond(json.dumps(figures), reply=True)


async def propagation(changes: int) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="bench-state-", dir="/tmp"))
    (directory / "sharder.toml").write_text(CONFIG)
    process = launch_master(directory)
    try:
        status = await wait_ready(directory / "sharder.sock", time.perf_counter())
        control = status["api_url"].removesuffix("/api/v10") + "/_sim"
        world = await call_control(control, "GET", "/world")
        home = next(g for g in world["guild_ids"] if (g >> 22) % 2 == 0)
        other = next(g for g in world["guild_ids"] if (g >> 22) % 2 == 1)
        body = {"content": f"!propagate {other} {changes}", "guild_id": home}
        injected = await call_control(control, "POST", "/messages", body)
        figures: dict[str, float] = await reply(control, injected)
        return figures
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


async def reply(control: str, injected: dict[str, Any]) -> dict[str, Any]:
    for _ in range(1200):
        messages = await call_control(
            control, "GET", f"/messages?channel_id={injected['channel_id']}"
        )
        for message in messages:
            if (message["message_reference"] or {}).get("message_id") == str(injected["id"]):
                answer: dict[str, Any] = json.loads(message["content"])
                return answer
        await asyncio.sleep(0.1)
    raise TimeoutError("no propagation figures")


# -- (c) ----------------------------------------------------------------------------------------


class Collector:
    """A worker's link that reads as fast as the master writes; done at the sync's answer."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.is_open = True
        self.writable = True
        self.done = asyncio.Event()

    def send_soon(self, message: Any) -> None:
        self.sent.append(message)
        if isinstance(message, ReplyOk):
            self.done.set()


async def sync_size() -> tuple[int, int, float]:
    """Bytes and messages of a 1,000-guild GUILD_SYNC, and the time to build them."""
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as directory:
        store = StateStore(Path(directory) / "state.db")
        store.open()
        clock = Clock(1)
        for index in range(SYNC_GUILDS):
            guild_id = (200_000_000_000 + index) << 22
            config = LwwMap()
            for name, value in (("prefix", "!"), ("locale", "en"), ("mod_role", str(guild_id))):
                config.set(name, value, clock.now())
            await store.merge("guild_config", str(guild_id), config)
            grants = AddWinsSet()
            for permission in ("kick", "ban", "mute"):
                grants.add(f"{guild_id | 0x201}:{permission}", clock.now())
            await store.merge("permissions", str(guild_id), grants)
            for member in range(25):
                activity = CounterMap()
                activity.report("messages", 1, member + 1)
                await store.merge("member_activity", f"{guild_id}:{member}", activity)
        handle = WorkerHandle(0, [0], 1, 0.1)
        collector = Collector()
        handle.connection = collector  # type: ignore[assignment]
        service = StateService(store, RoutingTable.contiguous(1, 1), {0: handle})
        started = time.perf_counter()
        service.on_sync(handle, StateSync(nonce=1, deadline=deadline_in(5)))
        await collector.done.wait()  # sent paced, by a task, as a worker reads
        elapsed = time.perf_counter() - started
        await store.close()
        size = sum(len(msgspec.msgpack.encode(message)) for message in collector.sent)
        return size, len(collector.sent), elapsed


async def one_run(writers: int, seconds: float) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-state-") as directory:
        store = StateStore(Path(directory) / "state.db")
        store.open()
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def writer(origin: int) -> None:
            total = 0
            while time.perf_counter() < deadline:
                total += 1
                change = CounterMap()
                change.report("messages", origin, total)
                started = time.perf_counter()
                await store.merge("member_activity", f"{origin % 1000}:{origin}", change)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(writer(origin) for origin in range(writers)))
        elapsed = time.perf_counter() - started
        await store.close()
        latencies.sort()
        rate = len(latencies) / elapsed
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        return rate, p50, p99, len(latencies) / max(1, store.commits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--writers", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--changes", type=int, default=2000)
    args = parser.parse_args()
    runs = [uvloop.run(one_run(args.writers, args.seconds)) for _ in range(args.runs)]
    rate = statistics.median(run[0] for run in runs)
    print(
        f"bench_state: {os.cpu_count()} cores, medians of {args.runs} runs, {args.writers} writers"
    )
    verdict = "met" if rate >= TARGET else "MISSED"
    print(
        f"durable updates: {rate:,.0f}/s (target >= {TARGET:,}: {verdict}); "
        f"ack p50 {statistics.median(run[1] for run in runs):.1f} ms, "
        f"p99 {statistics.median(run[2] for run in runs):.1f} ms; "
        f"{statistics.median(run[3] for run in runs):.0f} updates per commit"
    )
    spread = [uvloop.run(propagation(args.changes)) for _ in range(args.runs)]
    p99 = statistics.median(run["p99_ms"] for run in spread)
    print(
        f"propagation of a change to another worker's view ({args.changes} changes): "
        f"p50 {statistics.median(run['p50_ms'] for run in spread):.2f} ms, p99 {p99:.2f} ms "
        f"(target p99 < {PROPAGATION_TARGET_MS:g} ms: "
        f"{'met' if p99 < PROPAGATION_TARGET_MS else 'MISSED'})"
    )
    size, messages, elapsed = uvloop.run(sync_size())
    print(
        f"GUILD_SYNC of {SYNC_GUILDS:,} guilds (config, 3 grants, 25 members each): "
        f"{size / 1024:,.0f} KiB in {messages:,} messages, built in {elapsed * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
