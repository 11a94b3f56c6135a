"""Connection: a framed, typed, back-pressured duplex stream between two processes.

One ``Connection`` wraps one stream socket -- in practice the socket behind a
``multiprocessing.Pipe(duplex=True)``, or a ``socket.socketpair()`` in tests. It opens with a hello
exchange, then moves catalogue messages both ways:

- writers wait while the transport's buffer is above its limit (never drop, never grow unbounded);
- the reader side stops reading from the socket while its inbox is full, so a slow consumer
  pushes back through the kernel buffer to the peer's writers;
- a peer that closes mid-frame, or sends a bad frame, ends the connection with the matching
  ``ProtocolError``; messages that arrived intact before it are still delivered first.
"""

from __future__ import annotations

import asyncio
import multiprocessing.connection
import os
import socket
import typing
from collections import deque
from collections.abc import Callable, Iterable

from protocol.errors import (
    ConnectionClosed,
    HandshakeFailed,
    PeerStalled,
    ProtocolError,
    VersionMismatch,
)
from protocol.framing import DEFAULT_FRAME_CAP, Frame, FrameDecoder, FrameEncoder
from protocol.messages import AnyMessage, Hello, Message

DEFAULT_WRITE_BUFFER_LIMIT = 1024 * 1024
DEFAULT_INBOX_LIMIT = 4096
# Past this many write-buffer limits waiting for it, a peer has stopped reading, and the link is
# ended: senders that honour ``writable`` never get there, but fan-outs (state pushes to every
# worker) and replies are written regardless, and would otherwise grow the buffer for good.
STALLED_AFTER = 64
DEFAULT_HELLO_TIMEOUT = 10.0

# Called with the connection, the messages that arrived and, for each, its frame as received.
Receiver = Callable[["Connection", list[AnyMessage], list[Frame]], None]


# Coalesced writes go out at the end of the loop turn, or as soon as this many buffers are
# queued (a frame is one, a large sent one two: header and body): the peer starts on the
# first part of a burst while this side still produces the rest, so the processes of a
# pipeline work at the same time instead of taking turns.
FLUSH_THRESHOLD = 16


class Connection(asyncio.Protocol):
    """One end of a framed duplex stream. Create it with ``open_connection``."""

    def __init__(
        self,
        *,
        frame_cap: int = DEFAULT_FRAME_CAP,
        write_buffer_limit: int = DEFAULT_WRITE_BUFFER_LIMIT,
        inbox_limit: int = DEFAULT_INBOX_LIMIT,
    ) -> None:
        self._encoder = FrameEncoder(frame_cap)
        self._decoder = FrameDecoder(frame_cap)
        self._write_buffer_limit = write_buffer_limit
        self._inbox_limit = inbox_limit
        self._inbox: deque[AnyMessage] = deque()
        self._receiver: Receiver | None = None
        self._transport: asyncio.Transport | None = None
        self._reader: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._queued: list[Frame] = []  # frames for the next coalesced write (send_soon)
        self._flush_handle: asyncio.Handle | None = None
        self._write_paused = False
        self._read_paused = False
        self._error: ProtocolError | None = None
        # Kept: asyncio.get_running_loop() checks getpid() on every call, a system call.
        self._loop = asyncio.get_running_loop()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self.peer: Hello | None = None

    # -- what the rest of the program uses ------------------------------------------------------

    @property
    def error(self) -> ProtocolError | None:
        """Why the connection ended, once it has."""
        return self._error

    @property
    def is_open(self) -> bool:
        return self._error is None

    @property
    def inbox_size(self) -> int:
        """Messages received and not yet taken by ``recv``."""
        return len(self._inbox)

    @property
    def write_buffer_size(self) -> int:
        """Bytes written and not yet taken by the kernel."""
        return 0 if self._transport is None else self._transport.get_write_buffer_size()

    async def recv(self) -> AnyMessage:
        """The next message. Raises the reason for the end once the inbox is drained."""
        if not self._inbox:
            await self._wait_readable()
        message = self._inbox.popleft()
        self._resume_reading_if_drained()
        return message

    async def recv_batch(self) -> list[AnyMessage]:
        """Every message that has arrived (at least one, waiting for it if need be)."""
        if not self._inbox:
            await self._wait_readable()
        messages = list(self._inbox)
        self._inbox.clear()
        self._resume_reading_if_drained()
        return messages

    def deliver_to(self, receiver: Receiver | None) -> None:
        """Hand arriving messages to ``receiver`` straight from the read callback.

        This is the router's fast path: no inbox, no task wake-up per batch, and each message
        comes with its frame so it can be forwarded unchanged (``forward_soon``) instead of
        re-encoded. The receiver runs inside the event loop's read callback, so it must not
        block; it applies backpressure with ``pause_reading``. Messages already in the inbox are
        handed over at once. The end shows in ``wait_closed``, and why in ``error``.
        """
        self._receiver = receiver
        if receiver is not None and self._inbox:
            pending = list(self._inbox)
            self._inbox.clear()
            receiver(self, pending, [self._encoder.encode(message) for message in pending])

    @property
    def writable(self) -> bool:
        """False while the write buffer is over its limit: writers should wait."""
        return not self._write_paused

    def pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None and self.is_open:
            self._read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and self._transport is not None and self.is_open:
            self._read_paused = False
            self._transport.resume_reading()

    async def send(self, message: Message) -> None:
        """Write one frame, first waiting while the write buffer is over its limit."""
        if self._write_paused:
            await self.wait_writable()
        self._require_open().write(self._encoder.encode(message))

    async def send_batch(self, messages: Iterable[Message]) -> None:
        """Write many frames with a single write."""
        if self._write_paused:
            await self.wait_writable()
        self.send_batch_nowait(messages)

    def send_batch_nowait(self, messages: Iterable[Message]) -> None:
        """Write now, even over the buffer limit: the caller must honour ``writable``."""
        self._require_open().write(self._encoder.encode_batch(messages))
        self._end_if_stalled()

    def forward_nowait(self, frames: list[Frame]) -> None:
        """Write frames received on another connection as they are, like ``send_batch_nowait``."""
        self._require_open().writelines(frames)
        self._end_if_stalled()

    def send_soon(self, message: Message) -> None:
        """Queue a frame; everything queued in this turn of the event loop goes in one write.

        Many small messages sent from separate callbacks or tasks then cost one system call
        instead of one each. Like ``send_batch_nowait``, the caller must honour ``writable``.
        """
        if self._error is not None or self._transport is None:
            self._require_open()  # raises why
        queued = self._queued
        self._encoder.encode_into(message, queued)
        if len(queued) >= FLUSH_THRESHOLD:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def forward_soon(self, frame: Frame) -> None:
        """A frame received on another connection, written as it is, coalesced like
        ``send_soon``."""
        if self._error is not None or self._transport is None:
            self._require_open()  # raises why
        self._queued.append(frame)
        self._schedule_flush()

    def close(self, reason: ProtocolError | None = None) -> None:
        """Start closing; pending writes are flushed first. ``wait_closed`` waits for the end."""
        self._flush()
        self._set_error(reason or ConnectionClosed("connection closed locally"))
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    async def handshake(self, hello: Hello, timeout: float = DEFAULT_HELLO_TIMEOUT) -> Hello:
        """Exchange hellos; on any failure the connection is closed and the error raised."""
        try:
            await self.send(hello)
            async with asyncio.timeout(timeout):
                first = await self.recv()
            if not isinstance(first, Hello):
                raise HandshakeFailed(f"expected HELLO as the first frame, got {_kind(first)}")
            if first.version != hello.version:
                raise VersionMismatch(hello.version, first.version, f"{first.role} pid {first.pid}")
        except TimeoutError:
            error: ProtocolError = HandshakeFailed(f"no HELLO from the peer within {timeout} s")
        except VersionMismatch as mismatch:
            error = mismatch
        except ProtocolError as failure:
            error = HandshakeFailed(f"handshake failed: {failure}")
        else:
            self.peer = first
            return first
        self.close(error)
        raise error

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = typing.cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(high=self._write_buffer_limit)

    def data_received(self, data: bytes) -> None:
        batch: list[AnyMessage] = []
        frames: list[Frame] | None = [] if self._receiver is not None else None
        try:
            batch.extend(self._decoder.feed(data, frames))
        except ProtocolError as error:
            self.close(error)
        if self._receiver is not None:
            if batch:
                self._receiver(self, batch, frames or [])
            return
        self._inbox.extend(batch)
        if len(self._inbox) >= self._inbox_limit:
            self.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        try:
            self._decoder.close()
        except ProtocolError as error:
            self._set_error(error)
        self._set_error(ConnectionClosed("peer closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        # A peer that dies with unread data in its socket resets the connection instead of
        # sending EOF; a partial frame in the buffer still means it died mid-frame.
        try:
            self._decoder.close()
        except ProtocolError as error:
            self._set_error(error)
        reason = f"connection lost: {exc}" if exc else "connection lost"
        self._set_error(ConnectionClosed(reason))
        self._wake_reader()
        self._wake_writers()
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    # -- internals ------------------------------------------------------------------------------

    def _set_error(self, error: ProtocolError) -> None:
        if self._error is None:
            self._error = error
            self._wake_reader()
            self._wake_writers()

    async def _wait_readable(self) -> None:
        while not self._inbox:
            if self._error is not None:
                raise self._error
            self._reader = self._loop.create_future()
            try:
                await self._reader
            finally:
                self._reader = None

    def _resume_reading_if_drained(self) -> None:
        if self._read_paused and len(self._inbox) <= self._inbox_limit // 2:
            self.resume_reading()

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_writable(self) -> None:
        """Return once the write buffer is under its limit (or the connection has ended)."""
        while self._write_paused and self._error is None:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def _schedule_flush(self) -> None:
        if len(self._queued) >= FLUSH_THRESHOLD:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        queued, self._queued = self._queued, []
        if queued and self._error is None and self._transport is not None:
            self._transport.writelines(queued)
            self._end_if_stalled()

    def _end_if_stalled(self) -> None:
        transport = self._transport
        limit = self._write_buffer_limit * STALLED_AFTER
        if transport is not None and transport.get_write_buffer_size() > limit:
            self._set_error(PeerStalled(transport.get_write_buffer_size(), limit))
            transport.abort()

    def _require_open(self) -> asyncio.Transport:
        if self._error is not None:
            raise ConnectionClosed(f"cannot send: {self._error}")
        return self._require_transport()

    def _require_transport(self) -> asyncio.Transport:
        if self._transport is None:
            raise ConnectionClosed("connection is not established")
        return self._transport


def _kind(message: Message) -> str:
    return str(type(message).__struct_config__.tag)


def socket_from_pipe(pipe: multiprocessing.connection.Connection) -> socket.socket:
    """Take over the socket behind a duplex ``multiprocessing.Pipe`` end (the pipe is closed)."""
    fd = os.dup(pipe.fileno())
    pipe.close()
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


async def open_connection(
    sock: socket.socket,
    hello: Hello,
    *,
    frame_cap: int = DEFAULT_FRAME_CAP,
    write_buffer_limit: int = DEFAULT_WRITE_BUFFER_LIMIT,
    inbox_limit: int = DEFAULT_INBOX_LIMIT,
    hello_timeout: float = DEFAULT_HELLO_TIMEOUT,
) -> Connection:
    """Wrap a connected stream socket and exchange hellos over it."""
    loop = asyncio.get_running_loop()
    _, connection = await loop.connect_accepted_socket(
        lambda: Connection(
            frame_cap=frame_cap,
            write_buffer_limit=write_buffer_limit,
            inbox_limit=inbox_limit,
        ),
        sock=sock,
    )
    await connection.handshake(hello, hello_timeout)
    return connection
