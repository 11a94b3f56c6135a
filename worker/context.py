"""``ShardContext``: what bot code uses to reach the other shards.

Bot code registers named handlers and calls them on the shard that owns a guild
(``request``) or on every shard (``broadcast``). Nothing but names and msgpack-able payloads
crosses processes: no code strings are evaluated anywhere. Every call has a deadline.

A handler is a coroutine function, run in a task of its own (it may await; the deadline
cancels it), or a plain function, run at once where the request arrives: cheaper by a task,
for answers from memory such as the cache, and it must not block.

    async def setup(bot: hikari.GatewayBot, ctx: ShardContext) -> None:
        @ctx.handler("where")
        def where(call: Invocation) -> dict[str, int]:
            return {"shard": call.shard_id, "worker": ctx.worker_id}
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import hikari
import msgspec

from child.link import MasterLink, RequestError
from protocol import shard_for_guild
from protocol.messages import CommandBroadcast, CommandExec, ShardOutcome, deadline_in
from worker.compute_client import ComputeClient
from worker.handled import replaying
from worker.state import SharedState

__all__ = ["Invocation", "RequestError", "ShardContext"]

Handler = Callable[["Invocation"], Awaitable[Any]] | Callable[["Invocation"], Any]
H = TypeVar("H", bound=Handler)
# Built-in handlers: a colon, which keeps them apart from the bot's own names.
PRESENCE_HANDLER = "sharder:presence"


@dataclass(frozen=True, slots=True)
class Registered:
    function: Handler
    is_coroutine: bool


class Invocation(msgspec.Struct, frozen=True):
    """One call of a handler: on which shard, for which guild (None for a broadcast), with what.

    A Struct, not a frozen dataclass: one is built per call, and that builds seven times faster.
    """

    name: str
    shard_id: int
    guild_id: int | None
    payload: Any


class Presence(msgspec.Struct, frozen=True):
    """A member's presence in a guild, as the shard that has the guild last saw it."""

    status: str  # online, idle, dnd or offline
    activity: str | None  # the name of the first activity, if any


class ShardContext:
    def __init__(
        self,
        bot: hikari.GatewayBot,
        link: MasterLink,
        *,
        worker_id: int,
        shard_ids: set[int],
        shard_count: int,
        request_timeout: float,
        compute_timeout: float,
        user_cache: int,
    ) -> None:
        self.bot = bot
        self.worker_id = worker_id
        self.shard_count = shard_count
        self.request_timeout = request_timeout
        self._link = link
        self._handlers: dict[str, Registered] = {}
        # The bot's shared state (guild configs, member activity, permissions, user data).
        self.state = SharedState(
            link, origin=worker_id + 1, request_timeout=request_timeout, user_cache=user_cache
        )
        # CPU work (math, emoji images, the bot's own tasks) on the compute pool.
        self.compute = ComputeClient(link, compute_timeout)
        self._own_shards = shard_ids  # the worker's set, as shards move in and out
        self.add_handler(PRESENCE_HANDLER, self._cached_presence)

    @property
    def shard_ids(self) -> tuple[int, ...]:
        """The shards this worker serves now, in order."""
        return tuple(sorted(self._own_shards))

    def handler(self, name: str) -> Callable[[H], H]:
        """Register the decorated coroutine function as the handler called ``name``."""

        def register(function: H) -> H:
            self.add_handler(name, function)
            return function

        return register

    def add_handler(self, name: str, function: Handler) -> None:
        if name in self._handlers:
            raise ValueError(f"a handler named {name!r} is already registered")
        self._handlers[name] = Registered(function, inspect.iscoroutinefunction(function))

    async def presence(
        self, guild_id: int, user_id: int, *, timeout: float | None = None
    ) -> Presence | None:
        """The member's presence, from the cache of the shard that has the guild (None if it
        has seen none; needs the GUILD_PRESENCES intent).

        Asked on demand rather than copied to every worker: presence changes are the most
        frequent events, and a copy on every worker would grow with every user the bot sees.
        """
        found = await self.request(guild_id, PRESENCE_HANDLER, user_id, timeout=timeout)
        return None if found is None else msgspec.convert(found, Presence)

    def _cached_presence(self, call: Invocation) -> Presence | None:
        if call.guild_id is None:
            return None
        member = self.bot.cache.get_presence(call.guild_id, int(call.payload))
        if member is None:
            return None
        activities = member.activities
        return Presence(
            status=str(member.visible_status), activity=activities[0].name if activities else None
        )

    @staticmethod
    def in_replay() -> bool:
        """Whether the event being handled may have been handled before: Discord replayed it
        after a worker restart, and the process that received it first ended while its handler
        ran (its reply may or may not have gone out). Replays known to be handled are never
        seen again; events that are not replays are never in replay."""
        return replaying.get()

    def shard_of(self, guild_id: int) -> int:
        return shard_for_guild(guild_id, self.shard_count)

    async def request(
        self, guild_id: int, name: str, payload: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Run handler ``name`` on the shard that owns ``guild_id``; its return value."""
        deadline = deadline_in(timeout or self.request_timeout)
        shard_id = (guild_id >> 22) % self.shard_count  # shard_for_guild, inlined: a hot path
        if shard_id in self._own_shards:  # our own shard: no need to cross a process
            outcome = await self.invoke(Invocation(name, shard_id, guild_id, payload), deadline)
            if not outcome.ok:
                raise RequestError(outcome.code or "handler_failed", outcome.message)
            return outcome.value
        link = self._link
        nonce = link.next_nonce()
        request = CommandExec(
            nonce=nonce, deadline=deadline, guild_id=guild_id, name=name, payload=payload
        )
        return await (link.submit(request) if link.writable else link.call(request))

    async def broadcast(
        self, name: str, payload: Any = None, *, timeout: float | None = None
    ) -> dict[int, ShardOutcome]:
        """Run handler ``name`` on every shard; each shard's outcome, failures included."""
        request = CommandBroadcast(
            nonce=self._link.next_nonce(),
            deadline=deadline_in(timeout or self.request_timeout),
            name=name,
            payload=payload,
        )
        try:
            answer = await self._link.call(request)
        except RequestError as failure:
            # Not even a partial answer: every shard failed the same way.
            return {
                shard_id: ShardOutcome(
                    shard_id=shard_id,
                    ok=False,
                    code=failure.code,
                    message=failure.message,
                )
                for shard_id in range(self.shard_count)
            }
        outcomes = msgspec.convert(answer, list[ShardOutcome])
        return {outcome.shard_id: outcome for outcome in outcomes}

    async def invoke(self, invocation: Invocation, deadline: float | None = None) -> ShardOutcome:
        """Run a handler here, within ``deadline`` if given; never raises but on cancellation.

        Without a deadline the caller enforces one (the shard worker cancels overdue calls from
        one timer instead of arming one per call).
        """
        shard_id = invocation.shard_id
        handler = self._handlers.get(invocation.name)
        if handler is None:
            return ShardOutcome(
                shard_id=shard_id, ok=False, code="no_handler", message=self.no_handler(invocation)
            )
        try:
            if not handler.is_coroutine:
                value = handler.function(invocation)
            elif deadline is None:
                value = await handler.function(invocation)
            else:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    value = await handler.function(invocation)
        except TimeoutError:
            return ShardOutcome(
                shard_id=shard_id, ok=False, code="timeout", message="handler passed the deadline"
            )
        except Exception as error:
            return ShardOutcome(
                shard_id=shard_id, ok=False, code="handler_failed", message=describe_failure(error)
            )
        return ShardOutcome(shard_id=shard_id, ok=True, value=value)

    def handler_for(self, name: str) -> Registered | None:
        return self._handlers.get(name)

    def no_handler(self, invocation: Invocation) -> str:
        return f"no handler named {invocation.name!r} on worker {self.worker_id}"


def describe_failure(error: Exception) -> str:
    """A handler's exception, as the caller is told it."""
    return f"{type(error).__name__}: {error}"
