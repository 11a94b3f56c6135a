"""The reference bot: the default entry point, and the example of ``ShardContext`` in use.

- ``!ping`` answers with the shard that handled it and that shard's gateway latency.
- ``!stats`` asks every shard (``ctx.broadcast``) for its guilds, members and latency and
  answers with the totals; shards that did not answer are named, not hidden.
- ``!where <guild id>`` asks the shard that owns the guild (``ctx.request``, possibly in another
  worker) to say where it runs.
"""

from __future__ import annotations

import math
from typing import Any

import hikari

from worker.context import Invocation, RequestError, ShardContext


def setup(bot: hikari.GatewayBot, ctx: ShardContext) -> None:
    # Plain functions: they answer from the cache, at once, without a task of their own.
    @ctx.handler("stats")
    def shard_stats(call: Invocation) -> dict[str, Any]:
        guilds = [
            guild
            for guild in bot.cache.get_guilds_view().values()
            if ctx.shard_of(int(guild.id)) == call.shard_id
        ]
        return {
            "guilds": len(guilds),
            "members": sum(guild.member_count or 0 for guild in guilds),
            "latency_ms": latency_ms(bot, call.shard_id),
        }

    @ctx.handler("where")
    def where(call: Invocation) -> dict[str, Any]:
        guild = bot.cache.get_guild(call.guild_id) if call.guild_id is not None else None
        return {
            "shard_id": call.shard_id,
            "worker_id": ctx.worker_id,
            "guild_name": guild.name if guild is not None else None,
        }

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        if not event.is_human or not event.content:
            return
        command, _, argument = event.content.partition(" ")
        if command == "!ping":
            shard_id = ctx.shard_of(int(event.guild_id))
            latency = latency_ms(bot, shard_id)
            shown = f"{latency:.0f} ms" if latency is not None else "not measured yet"
            await event.message.respond(f"pong from shard {shard_id} (latency {shown})", reply=True)
        elif command == "!stats":
            await event.message.respond(await stats_text(ctx), reply=True)
        elif command == "!where":
            await event.message.respond(await where_text(ctx, argument.strip()), reply=True)


def latency_ms(bot: hikari.GatewayBot, shard_id: int) -> float | None:
    shard = bot.shards.get(shard_id)
    if shard is None or math.isnan(shard.heartbeat_latency):
        return None
    return round(shard.heartbeat_latency * 1000, 1)


async def stats_text(ctx: ShardContext) -> str:
    outcomes = await ctx.broadcast("stats")
    answered = [outcome.value for outcome in outcomes.values() if outcome.ok]
    failed = sorted(shard_id for shard_id, outcome in outcomes.items() if not outcome.ok)
    latencies = [value["latency_ms"] for value in answered if value["latency_ms"] is not None]
    average = f"{sum(latencies) / len(latencies):.0f} ms" if latencies else "n/a"
    text = (
        f"guilds: {sum(value['guilds'] for value in answered)}, "
        f"members: {sum(value['members'] for value in answered)}, "
        f"shards: {len(answered)}/{ctx.shard_count}, latency: {average}"
    )
    if failed:
        text += f" (no answer from shards {', '.join(map(str, failed))})"
    return text


async def where_text(ctx: ShardContext, argument: str) -> str:
    if not argument.isascii() or not argument.isdigit():
        return "usage: !where <guild id>"
    guild_id = int(argument)
    try:
        answer = await ctx.request(guild_id, "where")
    except RequestError as error:
        return f"guild {guild_id}: shard {ctx.shard_of(guild_id)} did not answer ({error.code})"
    name = answer["guild_name"] or "unknown guild"
    return f"{name} ({guild_id}) is on shard {answer['shard_id']}, worker {answer['worker_id']}"
