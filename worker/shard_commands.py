"""The commands the master routes to a shard worker: run on its shards, answered on the link.

A COMMAND_EXEC runs the bot's handler for one guild's shard, by its deadline (``DeadlineWheel``
cancels an overdue one and answers ``timeout``); a COMMAND_BROADCAST runs on every shard of the
worker and answers with each shard's outcome. A plain function handler is answered at once, in
the link's read callback; a coroutine gets a task.

Apart from ``ShardWorker``, which keeps hikari and the shards' health: this changes with the
bot API (``ShardContext``) and the reply protocol, not with the gateway.
"""

from __future__ import annotations

import asyncio

from child.link import MasterLink
from protocol import FrameTooLarge
from protocol.deadlines import DeadlineWheel
from protocol.messages import CommandBroadcast, CommandExec, ReplyError, ReplyOk
from worker.context import Handler, Invocation, ShardContext, describe_failure


class ShardCommands:
    def __init__(
        self,
        ctx: ShardContext,
        link: MasterLink,
        shard_ids: set[int],
        shard_count: int,
        stopping: asyncio.Event,
    ) -> None:
        self.ctx = ctx
        self.link = link
        self.shard_ids = shard_ids  # the worker's, as shards move in and out
        self.shard_count = shard_count
        self.stopping = stopping  # set when the worker stops: a cancellation is not a timeout
        # Kept: asyncio.get_running_loop() and asyncio.create_task() cost a getpid() system call.
        self.loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[int, asyncio.Task[None]] = {}  # COMMAND_EXECs by nonce
        self._overdue: DeadlineWheel[int] = DeadlineWheel(self._cancel_overdue)

    def start(self, request: CommandExec) -> None:
        """Run a COMMAND_EXEC; its reply goes on the link when it is done (the hot path)."""
        nonce = request.nonce
        shard_id = (request.guild_id >> 22) % self.shard_count  # shard_for_guild, inlined
        invocation = Invocation(request.name, shard_id, request.guild_id, request.payload)
        handler = self.ctx.handler_for(request.name)
        if shard_id not in self.shard_ids:
            message = f"guild {request.guild_id} is on shard {shard_id}, not on this worker"
            self._reply(ReplyError(nonce=nonce, code="unknown_target", message=message))
        elif handler is None:
            message = self.ctx.no_handler(invocation)
            self._reply(ReplyError(nonce=nonce, code="no_handler", message=message))
        elif not handler.is_coroutine:  # answered here and now, in the read callback
            try:
                self._reply(ReplyOk(nonce=nonce, payload=handler.function(invocation)))
            except Exception as error:
                message = describe_failure(error)
                self._reply(ReplyError(nonce=nonce, code="handler_failed", message=message))
        else:
            task = self.loop.create_task(self._execute(nonce, handler.function, invocation))
            self._running[nonce] = task
            self._overdue.add(nonce, request.deadline)

    def broadcast(self, request: CommandBroadcast) -> None:
        """Run a COMMAND_BROADCAST on every shard of this worker, in a task of its own."""
        task = self.loop.create_task(self._broadcast(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, nonce: int, handler: Handler, invocation: Invocation) -> None:
        reply: ReplyOk | ReplyError
        try:
            reply = ReplyOk(nonce=nonce, payload=await handler(invocation))
        except asyncio.CancelledError:
            if self.stopping.is_set():
                raise
            # Cancelled by the deadline wheel: the call is overdue.
            self._running[nonce].uncancel()
            reply = ReplyError(nonce=nonce, code="timeout", message="handler passed the deadline")
        except Exception as error:
            reply = ReplyError(nonce=nonce, code="handler_failed", message=describe_failure(error))
        finally:
            self._overdue.discard(nonce)
            self._running.pop(nonce, None)
        self._reply(reply)

    def _cancel_overdue(self, nonce: int) -> None:
        task = self._running.get(nonce)
        if task is not None:
            task.cancel()

    async def _broadcast(self, request: CommandBroadcast) -> None:
        outcomes = await asyncio.gather(
            *(
                self.ctx.invoke(
                    Invocation(request.name, shard_id, None, request.payload), request.deadline
                )
                for shard_id in sorted(self.shard_ids)
            )
        )
        self._reply(ReplyOk(nonce=request.nonce, payload=outcomes))

    def _reply(self, reply: ReplyOk | ReplyError) -> None:
        try:
            self.link.send(reply)
        except (TypeError, ValueError, FrameTooLarge) as error:  # the result cannot go on the wire
            self.link.send(
                ReplyError(
                    nonce=reply.nonce,
                    code="handler_failed",
                    message=f"the result cannot be sent: {error}",
                )
            )
