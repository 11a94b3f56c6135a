"""The reference bot: the default entry point, and the example of ``ShardContext`` in use.

- ``!ping`` answers with the shard that handled it and that shard's gateway latency.
- ``!stats`` asks every shard (``ctx.broadcast``) for its guilds, members and latency and
  answers with the totals; shards that did not answer are named, not hidden.
- ``!where <guild id>`` asks the shard that owns the guild (``ctx.request``, possibly in another
  worker) to say where it runs.
- ``!prefix [new]`` shows or sets the guild's command prefix (shared state, guild config).
  Setting it, like adding a grant, takes the Manage Server permission (or the owner's).
- ``!points`` / ``!top`` show how many messages the author / the guild's most active members
  have written (shared state, member activity, counted from every message the bot sees).
- ``!grant <role or user id> <permission>`` (or no arguments: list) keeps permission grants
  (shared state, an add-wins set per guild).
- ``!afk [note]`` sets or clears the author's away note, and ``!note <user id>`` shows anyone's,
  in every guild, whichever shard serves it (shared state, cross-guild user data).
- ``!math <expression>`` evaluates on the compute pool (``ctx.compute.math``).
- ``!jumbo <emoji...>`` answers with the emoji enlarged, side by side, as an attachment: a GIF
  when one is animated (``ctx.compute.jumbo``, images fetched and composed in the pool).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import hikari

from worker.context import Invocation, RequestError, ShardContext
from worker.state import StateError

# With arguments, these change the guild for everyone: Manage Server only.
GUILD_CHANGING = frozenset({"prefix", "grant"})
DEFAULT_PREFIX = "!"
MAX_PREFIX = 5
MAX_SHOWN_DIGITS = 1_900


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
    async def count_activity(event: hikari.GuildMessageCreateEvent) -> None:
        if event.is_human:
            with contextlib.suppress(StateError):  # activity is best effort; commands are not
                await ctx.state.count(int(event.guild_id), int(event.author_id), "messages")

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        if not event.is_human or not event.content:
            return
        guild_id = int(event.guild_id)
        prefix = ctx.state.guild_config(guild_id).get("prefix", DEFAULT_PREFIX)
        if not event.content.startswith(prefix):
            return
        command, _, argument = event.content[len(prefix) :].partition(" ")
        if command == "ping":
            shard_id = ctx.shard_of(guild_id)
            latency = latency_ms(bot, shard_id)
            shown = f"{latency:.0f} ms" if latency is not None else "not measured yet"
            answer = f"pong from shard {shard_id} (latency {shown})"
        elif command == "stats":
            answer = await stats_text(ctx)
        elif command == "where":
            answer = await where_text(ctx, argument.strip())
        elif command in GUILD_CHANGING and argument.strip() and not may_manage(bot.cache, event):
            answer = f"only members who may manage this server can change its {command}"
        elif command == "prefix":
            answer = await prefix_text(ctx, guild_id, argument.strip(), prefix)
        elif command == "points":
            count = ctx.state.activity(guild_id, int(event.author_id)).get("messages", 0)
            answer = f"{event.author.username} has written {count} messages here"
        elif command == "top":
            ranking = ctx.state.top(guild_id, "messages", 5)
            answer = (
                "top: " + ", ".join(f"{user} ({count})" for user, count in ranking)
                if ranking
                else "no messages counted yet"
            )
        elif command == "grant":
            answer = await grant_text(ctx, guild_id, argument.split())
        elif command == "afk":
            answer = await afk_text(ctx, int(event.author_id), argument.strip())
        elif command == "note":
            answer = await note_text(ctx, argument.strip())
        elif command == "math":
            answer = await math_text(ctx, argument.strip())
        elif command == "jumbo":
            try:
                image = await ctx.compute.jumbo(argument)
            except RequestError as error:
                answer = f"no jumbo: {error.message}"
            else:
                attachment = hikari.Bytes(image.data, image.filename, mimetype=image.content_type)
                await event.message.respond(
                    attachment=attachment, reply=True, nonce=str(event.message_id)
                )
                return
        else:
            return
        # The message's id as the reply's nonce (Discord creates one message per nonce): a
        # handler run again after its process died mid-reply (ctx.in_replay()) answers once.
        await event.message.respond(answer, reply=True, nonce=str(event.message_id))


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


def may_manage(cache: hikari.api.Cache, event: hikari.GuildMessageCreateEvent) -> bool:
    """Whether the author owns the guild or holds Manage Server (or Administrator) through
    @everyone and their roles, as the shard's cache knows them."""
    guild = cache.get_guild(event.guild_id)
    if guild is None:
        return False
    if guild.owner_id == event.author_id:
        return True
    member = cache.get_member(event.guild_id, event.author_id)
    if member is None:
        return False
    permissions = hikari.Permissions.NONE
    everyone = cache.get_role(event.guild_id)  # @everyone's id is the guild's
    for role in [everyone, *member.get_roles()]:
        if role is not None:
            permissions |= role.permissions
    return bool(permissions & (hikari.Permissions.ADMINISTRATOR | hikari.Permissions.MANAGE_GUILD))


async def prefix_text(ctx: ShardContext, guild_id: int, new: str, current: str) -> str:
    if not new:
        return f"the prefix here is {current}"
    if len(new) > MAX_PREFIX or any(character.isspace() for character in new):
        return f"a prefix is 1 to {MAX_PREFIX} characters without spaces"
    try:
        await ctx.state.set_guild_config(guild_id, prefix=new)
    except StateError as error:
        return f"the prefix stays {current}: {error}"
    return f"the prefix is now {new}"


async def grant_text(ctx: ShardContext, guild_id: int, words: list[str]) -> str:
    """``grant <role or user id> <permission>``, or no arguments to list the grants."""
    if not words:
        grants = sorted(ctx.state.grants(guild_id))
        return "grants: " + ", ".join(grants) if grants else "no grants"
    if len(words) != 2 or not words[0].isascii() or not words[0].isdigit():
        return "usage: grant <role or user id> <permission>"
    try:
        await ctx.state.grant(guild_id, f"{words[0]}:{words[1]}")
    except StateError as error:
        return f"not granted: {error}"
    return f"granted {words[1]} to {words[0]}"


async def afk_text(ctx: ShardContext, user_id: int, note: str) -> str:
    """Cross-guild user data: the note shows in every guild, on whichever shard serves it."""
    try:
        await ctx.state.set_user(user_id, afk=note or None)
    except StateError as error:
        return f"not saved: {error}"
    return f"away: {note}" if note else "welcome back"


async def note_text(ctx: ShardContext, argument: str) -> str:
    if not argument.isascii() or not argument.isdigit():
        return "usage: note <user id>"
    try:
        note = (await ctx.state.user(int(argument))).get("afk")
    except StateError as error:
        return f"cannot say: {error}"
    return f"{argument} is away: {note}" if note else f"{argument} is not away"


async def math_text(ctx: ShardContext, expression: str) -> str:
    if not expression:
        return "usage: !math <expression>, e.g. !math r = 2; pi * r**2"
    try:
        value = await ctx.compute.math(expression)
    except RequestError as error:
        return f"cannot compute: {error.message}"
    if len(value) > MAX_SHOWN_DIGITS:  # a message holds 2,000 characters
        return f"{value[:40]}…{value[-40:]} ({len(value)} digits)"
    return value


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
