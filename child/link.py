"""A child's link to the master: requests with deadlines, answers by nonce, one reader loop.

A nonce carries its sender in the high bits (``origin << 40``). The master gives every process
it starts an origin of its own in its hello, a restarted one a new one, so no two processes make
the same nonce (an answer meant for a dead process's request never matches its successor's) and
the master can route an answer back without rewriting it. Every request waits at most until its
deadline, whether or not the master answers: a child never hangs on the master.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing.connection
import os
from collections.abc import Callable
from typing import Any

from protocol import (
    PROTOCOL_VERSION,
    AnyMessage,
    Connection,
    ConnectionClosed,
    Frame,
    HandshakeFailed,
    open_connection,
    socket_from_pipe,
)
from protocol.deadlines import DeadlineWheel
from protocol.messages import (
    ComputeResult,
    ErrorCode,
    Heartbeat,
    HeartbeatAck,
    Hello,
    IdentifyGrant,
    Message,
    ReplyError,
    ReplyOk,
    Request,
    Role,
)

log = logging.getLogger("child.link")

NONCE_ORIGIN_SHIFT = 40  # below it, a count of the process's requests: 2**40 of them
HELLO_TIMEOUT = 10.0
# The master answers at a request's deadline, saying what it waited for; our own timer, for a
# master that is gone, fires this much later so that it does not race the better answer.
MASTER_GRACE = 0.25
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_statm: int | None = None  # /proc/self/statm, opened at the first read

Dispatcher = Callable[[AnyMessage], None]
# Answers to our requests; a tuple, as ``A | B`` in isinstance builds a union per call.
ANSWERS = (ReplyOk, ReplyError, IdentifyGrant, ComputeResult)
WHOLE_ANSWERS = (IdentifyGrant, ComputeResult)  # their callers take the message itself


def resident_bytes() -> int:
    """This process's resident set size, as the kernel counts it.

    Read from ``/proc/self/statm`` through a descriptor opened once: psutil would cost every
    child 0.7 MiB for this one figure, and a compute task's sandbox refuses to open files.
    """
    global _statm
    if _statm is None:
        _statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
    return int(os.pread(_statm, 128, 0).split()[1]) * PAGE_SIZE


class RequestError(Exception):
    """A request failed: answered with an error, or not answered by its deadline. ``code`` says
    how (timeout, target_down, no_handler, handler_failed, busy, invalid...)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class MasterLink:
    def __init__(self, connection: Connection, origin: int) -> None:
        self.connection = connection
        self._nonces = itertools.count((origin << NONCE_ORIGIN_SHIFT) + 1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._loop = asyncio.get_running_loop()  # once: each lookup costs a getpid() system call
        # Our own deadlines too: the master answers at the deadline, but it may be gone.
        self._deadlines = DeadlineWheel(self._expire)

    @classmethod
    async def open(
        cls, pipe: multiprocessing.connection.Connection, role: Role, worker_id: int
    ) -> MasterLink:
        hello = Hello(version=PROTOCOL_VERSION, role=role, worker_id=worker_id, pid=os.getpid())
        connection = await open_connection(
            socket_from_pipe(pipe), hello, hello_timeout=HELLO_TIMEOUT
        )
        assert connection.peer is not None  # set by the handshake
        origin = connection.peer.nonce_origin
        if origin == 0:  # the master's own; a master always gives one
            connection.close()
            raise HandshakeFailed("the master's hello gave no nonce origin")
        return cls(connection, origin)

    def next_nonce(self) -> int:
        return next(self._nonces)

    async def call(self, request: Request) -> Any:
        """Send a request; its ``ReplyOk`` payload (a ``ComputeResult`` or ``IdentifyGrant``
        whole), or ``RequestError``."""
        if not self.connection.writable:
            await self.connection.wait_writable()
        return await self.submit(request)

    def submit(self, request: Request) -> asyncio.Future[Any]:
        """``call`` without waiting for room in the write buffer: for a caller that checked
        ``writable``, and saves a coroutine frame on the hot path."""
        try:
            self.connection.send_soon(request)
        except ConnectionClosed as closed:
            raise RequestError(
                "target_down", f"the link to the master is closed: {closed}"
            ) from None
        # Registered after sending: the answer cannot be read before we await. The answer or
        # the deadline removes the entry, also for a caller that was cancelled meanwhile.
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[request.nonce] = future
        self._deadlines.add(request.nonce, request.deadline + MASTER_GRACE)
        return future

    @property
    def writable(self) -> bool:
        """False while the link's write buffer is full: ``call`` would wait, ``submit`` must not
        be used."""
        return self.connection.writable

    def acknowledge(self, heartbeat: Heartbeat, loop_lag_ms: float = 0.0) -> None:
        """Answer the master's heartbeat: alive, and this big."""
        self.send(
            HeartbeatAck(nonce=heartbeat.nonce, loop_lag_ms=loop_lag_ms, rss_bytes=resident_bytes())
        )

    def send(self, message: Message) -> None:
        """Queue a message for the master (written with the rest of this loop turn's); dropped
        if the link is closed, which ends this process anyway."""
        # Not contextlib.suppress: this is every reply's path, and it costs a context manager.
        try:  # noqa: SIM105
            self.connection.send_soon(message)
        except ConnectionClosed:
            pass

    def _expire(self, nonce: int) -> None:
        future = self._pending.pop(nonce, None)
        if future is not None and not future.done():
            future.set_exception(RequestError("timeout", "no answer before the deadline"))

    async def serve(self, dispatch: Dispatcher) -> None:
        """Until the link ends: answers resolve their requests, the rest go to ``dispatch``.

        Both happen in the read callback (no task wakes per batch), so ``dispatch`` must not
        block; it starts tasks for anything that waits.
        """

        def receive(_: Connection, messages: list[AnyMessage], frames: list[Frame]) -> None:
            for message in messages:
                if isinstance(message, ANSWERS):
                    self._answer(message)
                else:
                    dispatch(message)

        self.connection.deliver_to(receive)
        try:
            await self.connection.wait_closed()
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(RequestError("target_down", "the master went away"))

    def _answer(self, reply: ReplyOk | ReplyError | IdentifyGrant | ComputeResult) -> None:
        future = self._pending.pop(reply.nonce, None)
        if future is None:
            log.debug("late or unknown answer %d dropped", reply.nonce)
            return
        self._deadlines.discard(reply.nonce)
        if future.done():  # its caller was cancelled
            return
        if isinstance(reply, ReplyOk):
            future.set_result(reply.payload)
        elif isinstance(reply, WHOLE_ANSWERS):
            future.set_result(reply)
        else:
            future.set_exception(RequestError(reply.code, reply.message))
