"""A plain hikari bot: the baseline ``bench_scale`` measures the sharder against.

One ``hikari.GatewayBot`` runs the given shards of a bot, with the sharder's default intents and
hikari's default cache, and listens to nothing but READY: a listener for GuildAvailableEvent
would make hikari build an event object for every guild (the sharder's workers have none), so
the cache is counted every 0.1 s instead. Once every shard is READY and every guild those
READYs listed is in the cache, it prints one line,
``ready <time.time()> <guilds>``, and then keeps running until SIGTERM.

    DISCORD_TOKEN=... python scripts/plain_hikari.py --rest-url URL --shard-ids 0,1 --shard-count 4
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

import hikari
import uvloop

# The sharder's default ([bot] intents = ["ALL_UNPRIVILEGED", "MESSAGE_CONTENT"]): both sides
# receive the same events.
INTENTS = hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT
CHECK_INTERVAL = 0.1


async def serve(token: str, rest_url: str, shard_ids: list[int], shard_count: int) -> None:
    bot = hikari.GatewayBot(
        token,
        rest_url=rest_url,
        intents=INTENTS,
        banner=None,
        logs=None,  # configured below: to stderr, as stdout carries the ready line
        suppress_optimization_warning=True,
    )
    guilds_of_shard: dict[int, int] = {}
    ready = asyncio.Event()
    ready_at = 0.0

    def check() -> None:
        nonlocal ready_at
        if ready.is_set() or len(guilds_of_shard) < len(shard_ids):
            return
        if len(bot.cache.get_guilds_view()) == sum(guilds_of_shard.values()):
            ready_at = time.time()
            ready.set()

    @bot.listen(hikari.ShardReadyEvent)
    async def shard_ready(event: hikari.ShardReadyEvent) -> None:
        guilds_of_shard[event.shard.id] = len(event.unavailable_guilds)
        check()

    async def check_now_and_then() -> None:
        while not ready.is_set():
            check()
            await asyncio.sleep(CHECK_INTERVAL)

    checking = asyncio.create_task(check_now_and_then())
    await bot.start(
        shard_ids=shard_ids,
        shard_count=shard_count,
        check_for_updates=False,
        # The bench starts several of these against one fresh simulator: the budget is not ours
        # to keep here, as it is not a sharder worker's.
        ignore_session_start_limit=True,
    )
    await ready.wait()
    await checking
    print(f"ready {ready_at:.6f} {sum(guilds_of_shard.values())}", flush=True)
    await bot.join()  # SIGTERM's default action ends the process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rest-url", required=True, help="REST base, as http://host:port/api/v10")
    parser.add_argument("--shard-ids", required=True, help="comma-separated shard ids")
    parser.add_argument("--shard-count", type=int, required=True, help="the bot's total shards")
    args = parser.parse_args()
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        parser.error("the token goes in the environment variable DISCORD_TOKEN")
    shard_ids = [int(shard_id) for shard_id in args.shard_ids.split(",")]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    uvloop.run(serve(token, args.rest_url, shard_ids, args.shard_count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
