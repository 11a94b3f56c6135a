"""A child's link to the master: requests with deadlines, answers by nonce, one reader loop.

Nonces carry the sender in their high bits (``origin << 40``), so they are unique across all
processes and the master can route an answer back without rewriting it. Every request waits at
most until its deadline, whether or not the master answers: a child never hangs on the master.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing.connection
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from protocol import PROTOCOL_VERSION, AnyMessage, Connection, open_connection, socket_from_pipe
from protocol.messages import ErrorCode, Hello, Message, ReplyError, ReplyOk, Request, Role

log = logging.getLogger("worker.ipc")

NONCE_ORIGIN_SHIFT = 40
HELLO_TIMEOUT = 10.0

Dispatcher = Callable[[AnyMessage], Awaitable[None] | None]


def nonce_origin(nonce: int) -> int:
    """Who made a nonce: 0 is the master, worker ``w`` is ``w + 1``."""
    return nonce >> NONCE_ORIGIN_SHIFT


class RequestFailed(Exception):
    """A request answered with an error, or not answered by its deadline."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class MasterLink:
    def __init__(self, connection: Connection, origin: int) -> None:
        self.connection = connection
        self._nonces = itertools.count((origin << NONCE_ORIGIN_SHIFT) + 1)
        self._pending: dict[int, asyncio.Future[Any]] = {}

    @classmethod
    async def open(
        cls, pipe: multiprocessing.connection.Connection, role: Role, worker_id: int
    ) -> MasterLink:
        hello = Hello(version=PROTOCOL_VERSION, role=role, worker_id=worker_id, pid=os.getpid())
        connection = await open_connection(
            socket_from_pipe(pipe), hello, hello_timeout=HELLO_TIMEOUT
        )
        return cls(connection, worker_id + 1)

    def next_nonce(self) -> int:
        return next(self._nonces)

    async def call(self, request: Request) -> Any:
        """Send a request; its ``ReplyOk`` payload, or ``RequestFailed``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request.nonce] = future
        try:
            await self.connection.send(request)
            async with asyncio.timeout(max(0.0, request.deadline - time.monotonic())):
                return await future
        except TimeoutError:
            raise RequestFailed("timeout", "no answer before the deadline") from None
        finally:
            self._pending.pop(request.nonce, None)

    def send_nowait(self, message: Message) -> None:
        if self.connection.is_open:
            self.connection.send_batch_nowait([message])

    async def serve(self, dispatch: Dispatcher) -> None:
        """Read until the link ends: answers resolve their requests, the rest go to ``dispatch``."""
        try:
            while True:
                for message in await self.connection.recv_batch():
                    if isinstance(message, ReplyOk | ReplyError):
                        self._answer(message)
                    else:
                        outcome = dispatch(message)
                        if outcome is not None:
                            await outcome
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(RequestFailed("target_down", "the master went away"))

    def _answer(self, reply: ReplyOk | ReplyError) -> None:
        future = self._pending.get(reply.nonce)
        if future is None or future.done():
            log.debug("late or unknown answer %d dropped", reply.nonce)
            return
        if isinstance(reply, ReplyOk):
            future.set_result(reply.payload)
        else:
            future.set_exception(RequestFailed(reply.code, reply.message))
