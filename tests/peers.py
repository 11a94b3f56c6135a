"""Child-process peers for the integration tests (a module, so spawned children import it)."""

from __future__ import annotations

import asyncio
import multiprocessing.connection
import os

import uvloop

from protocol import (
    PROTOCOL_VERSION,
    ConnectionClosed,
    FrameEncoder,
    open_connection,
    socket_from_pipe,
)
from protocol.messages import CommandExec, Hello, ReplyError, ReplyOk

Pipe = multiprocessing.connection.Connection


def worker_hello(worker_id: int) -> Hello:
    return Hello(
        version=PROTOCOL_VERSION, role="shard_worker", worker_id=worker_id, pid=os.getpid()
    )


def ordered_echo(pipe: Pipe) -> None:
    """Replies to each COMMAND_EXEC with its nonce; answers an error if one arrives out of order."""

    async def serve() -> None:
        connection = await open_connection(socket_from_pipe(pipe), worker_hello(1))
        expected = 0
        try:
            while True:
                replies: list[ReplyOk | ReplyError] = []
                for message in await connection.recv_batch():
                    assert isinstance(message, CommandExec)
                    if message.nonce == expected:
                        replies.append(ReplyOk(nonce=message.nonce, payload=message.payload))
                    else:
                        replies.append(
                            ReplyError(
                                nonce=message.nonce, code="invalid", message=f"expected {expected}"
                            )
                        )
                    expected = message.nonce + 1
                await connection.send_batch(replies)
        except ConnectionClosed:
            return

    uvloop.run(serve())


def dies_mid_frame(pipe: Pipe) -> None:
    """Handshakes, writes half a frame, then exits without closing anything."""

    async def serve() -> None:
        connection = await open_connection(socket_from_pipe(pipe), worker_hello(2))
        frame = FrameEncoder().encode(ReplyOk(nonce=1, payload="x" * 1000))
        transport = connection._transport
        assert transport is not None
        transport.write(bytes(frame[:600]))
        await asyncio.sleep(0.1)
        os._exit(0)

    uvloop.run(serve())


def sends_garbage(pipe: Pipe) -> None:
    """Handshakes, then writes bytes that are not a frame and waits to be disconnected."""

    async def serve() -> None:
        connection = await open_connection(socket_from_pipe(pipe), worker_hello(3))
        transport = connection._transport
        assert transport is not None
        transport.write(b"\x00\x00\x00\x05\x00\x00\x00\x00hello garbage")
        try:
            await asyncio.wait_for(connection.recv(), timeout=10)
        except (ConnectionClosed, TimeoutError):
            return

    uvloop.run(serve())
