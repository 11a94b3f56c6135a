"""A bot for the sharder's integration tests: the reference bot plus commands that probe the
machinery, driven by messages injected into the simulator and answered through REST.

    !call <guild id> <handler> [payload] [timeout]  ctx.request: "ok <json>" or "error <code> ..."
    !all <handler> [payload] [timeout]              ctx.broadcast: the outcomes as JSON
    !garbage                                        writes bytes that are no frame to the master
    !compute <task> <json args> [timeout] [count]   ctx.compute, ``count`` calls at once: a JSON
                                                    list of "ok <value>" / "error <code> ..."
    !bump / !stream <guild> <user> <n>, !afk <user> <note>   shared state writes
    !upload <bytes>                                 replies with that many random bytes attached
                                                    and their SHA-256 as the content
    handler "flood" {"count", "window", "channel"?}  sends ``count`` messages, ``window`` at a
                                                    time, to the shard's channels (or one)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from typing import Any

import hikari

from protocol.messages import IdentifyRequest
from worker import reference_bot
from worker.context import Invocation, RequestError, ShardContext


def setup(bot: hikari.GatewayBot, ctx: ShardContext) -> None:
    reference_bot.setup(bot, ctx)

    @ctx.handler("echo")
    async def echo(call: Invocation) -> dict[str, Any]:
        return {"shard_id": call.shard_id, "pid": os.getpid(), "payload": call.payload}

    @ctx.handler("echo_plain")
    def echo_plain(call: Invocation) -> dict[str, Any]:
        return {"shard_id": call.shard_id, "pid": os.getpid(), "payload": call.payload}

    @ctx.handler("fail_plain")
    def fail_plain(call: Invocation) -> None:
        raise ValueError(f"plain failure on shard {call.shard_id}")

    @ctx.handler("activity")
    def activity(call: Invocation) -> dict[str, int]:
        return ctx.state.activity(call.guild_id or 0, int(call.payload))

    @ctx.handler("config")
    def config(call: Invocation) -> dict[str, Any]:
        return ctx.state.guild_config(call.guild_id or 0)

    @ctx.handler("user")
    async def user(call: Invocation) -> dict[str, Any]:
        return await ctx.state.user(int(call.payload))

    @ctx.handler("presence")
    async def presence(call: Invocation) -> str | None:
        guild_id, user_id = map(int, str(call.payload).split(":"))
        seen = await ctx.presence(guild_id, user_id)
        return None if seen is None else seen.status

    @ctx.handler("sleep")
    async def sleep(call: Invocation) -> float:
        await asyncio.sleep(float(call.payload))
        return float(call.payload)

    @ctx.handler("block")
    def block(call: Invocation) -> float:
        time.sleep(float(call.payload))  # holds the event loop: a handler that never yields
        return float(call.payload)

    @ctx.handler("fail")
    async def fail(call: Invocation) -> None:
        raise RuntimeError(f"failing on shard {call.shard_id} as asked")

    @ctx.handler("flood")
    async def flood(call: Invocation) -> dict[str, float]:
        order = json.loads(call.payload)
        channels = [int(order["channel"])] if "channel" in order else shard_channels(call.shard_id)
        count = int(order["count"])
        sent = failed = 0
        ids: list[int] = []  # of the messages made: Discord's clock says when each arrived
        started = time.monotonic()

        async def lane() -> None:
            nonlocal sent, failed
            while sent + failed < count:
                index = sent + failed
                sent += 1
                channel = channels[index % len(channels)]
                try:
                    ids.append(int((await bot.rest.create_message(channel, f"flood {index}")).id))
                except hikari.HikariError:
                    sent -= 1
                    failed += 1

        await asyncio.gather(*(lane() for _ in range(int(order["window"]))))
        return {
            "sent": sent,
            "failed": failed,
            "seconds": time.monotonic() - started,
            "first_id": min(ids, default=0),
            "last_id": max(ids, default=0),
        }

    def shard_channels(shard_id: int) -> list[int]:
        return [
            int(channel_id)
            for guild_id in bot.cache.get_guilds_view()
            if ctx.shard_of(int(guild_id)) == shard_id
            for channel_id, channel in bot.cache.get_guild_channels_view_for_guild(guild_id).items()
            if channel.type == hikari.ChannelType.GUILD_TEXT
        ]

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        if not event.is_human or not event.content:
            return
        words = event.content.split()
        if words[0] == "!call":
            answer = await call(ctx, int(words[1]), words[2], *words[3:])
        elif words[0] == "!all":
            answer = await call_all(ctx, words[1], *words[2:])
        elif words[0] == "!compute":
            answer = await compute(ctx, words[1], *words[2:])
        elif words[0] == "!bump":  # !bump <guild> <user> <count>: concurrent counter writes
            guild_id, user_id, count = (int(word) for word in words[1:4])
            await asyncio.gather(
                *(ctx.state.count(guild_id, user_id, "bump") for _ in range(count))
            )
            answer = f"bumped {count}"
        elif words[0] == "!afk":  # !afk <user> <note>: a user-data write from this worker
            version = await ctx.state.set_user(int(words[1]), afk=" ".join(words[2:]))
            answer = f"afk set (version {version})"
        elif words[0] == "!stream":  # !stream <guild> <user> <count>: one write after another
            guild_id, user_id, count = (int(word) for word in words[1:4])
            for _ in range(count):
                await ctx.state.count(guild_id, user_id, "stream")
            answer = f"streamed {count}"
        elif words[0] == "!upload":
            data = os.urandom(int(words[1]))
            attachment = hikari.Bytes(data, "upload.bin")
            digest = hashlib.sha256(data).hexdigest()
            await event.message.respond(digest, attachment=attachment, reply=True)
            return
        elif words[0] == "!identify":  # a test hook: ask to IDENTIFY any shard, ours or not
            started = time.monotonic()
            link = ctx._link
            shard_id = int(words[1])
            request = IdentifyRequest(
                nonce=link.next_nonce(), deadline=started + 5, shard_id=shard_id
            )
            try:
                await link.call(request)
                answer = "granted"
            except RequestError as error:
                answer = f"error {error.code} {error.message}"
            answer += f" after {time.monotonic() - started:.2f} s"
        elif words[0] == "!garbage":
            transport = ctx._link.connection._transport  # a test hook, on purpose
            assert transport is not None
            transport.write(b"\x00\x00\x00\x10" + b"not a frame at all, surely")
            return
        else:
            return
        await event.message.respond(answer, reply=True)


async def call(ctx: ShardContext, guild_id: int, name: str, *arguments: str) -> str:
    payload = arguments[0] if arguments else None
    timeout = float(arguments[1]) if len(arguments) > 1 else None
    try:
        value = await ctx.request(guild_id, name, payload, timeout=timeout)
    except RequestError as error:
        return f"error {error.code} {error.message}"
    return f"ok {json.dumps(value)}"


async def compute(ctx: ShardContext, task: str, *arguments: str) -> str:
    args = json.loads(arguments[0]) if arguments else {}
    timeout = float(arguments[1]) if len(arguments) > 1 else None
    count = int(arguments[2]) if len(arguments) > 2 else 1

    async def one() -> str:
        try:
            value = await ctx.compute.run(task, args, timeout=timeout)
        except RequestError as error:
            return f"error {error.code} {error.message}"
        return f"ok {json.dumps(value)}"

    return json.dumps(await asyncio.gather(*(one() for _ in range(count))))


async def call_all(ctx: ShardContext, name: str, *arguments: str) -> str:
    payload = arguments[0] if arguments else None
    timeout = float(arguments[1]) if len(arguments) > 1 else None
    outcomes = await ctx.broadcast(name, payload, timeout=timeout)
    return json.dumps(
        {
            str(shard_id): {"ok": outcome.ok, "code": outcome.code, "value": outcome.value}
            for shard_id, outcome in sorted(outcomes.items())
        }
    )


def setup_crashing_worker_1(bot: hikari.GatewayBot, ctx: ShardContext) -> None:
    """Worker 1 cannot start; the others serve as usual."""
    if ctx.worker_id == 1:
        raise RuntimeError("worker 1 crashes on start, as the test asks")
    setup(bot, ctx)
