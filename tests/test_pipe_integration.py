"""Real processes over real multiprocessing duplex Pipes."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
from collections.abc import Callable, Iterator

import pytest

from protocol import (
    PROTOCOL_VERSION,
    ChecksumMismatch,
    Connection,
    TruncatedFrame,
    open_connection,
    socket_from_pipe,
)
from protocol.messages import CommandExec, Hello, ReplyOk
from tests import peers

Pipe = multiprocessing.connection.Connection
Spawn = Callable[[Callable[[Pipe], None]], Pipe]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Starts children with the spawn method; kills and reaps them even if the test fails."""
    context = multiprocessing.get_context("spawn")
    children: list[multiprocessing.process.BaseProcess] = []

    def start(target: Callable[[Pipe], None]) -> Pipe:
        ours, theirs = context.Pipe(duplex=True)
        child = context.Process(target=target, args=(theirs,), daemon=True)
        child.start()
        theirs.close()
        children.append(child)
        return ours

    yield start
    for child in children:
        if child.is_alive():
            child.kill()
        child.join(timeout=5)


async def connect(pipe: Pipe) -> Connection:
    master = Hello(version=PROTOCOL_VERSION, role="master", worker_id=0, pid=os.getpid())
    return await open_connection(socket_from_pipe(pipe), master)


def request(nonce: int) -> CommandExec:
    return CommandExec(nonce=nonce, deadline=0.0, guild_id=nonce, name="echo", payload=nonce)


async def test_a_million_requests_and_replies_without_loss_or_reordering(spawn: Spawn) -> None:
    total, window = 1_000_000, 64
    connection = await connect(spawn(peers.ordered_echo))
    await connection.send_batch([request(nonce) for nonce in range(window)])
    sent, received = window, 0
    async with asyncio.timeout(120):
        while received < total:
            batch = await connection.recv_batch()
            for reply in batch:
                assert reply == ReplyOk(nonce=received, payload=received)
                received += 1
            more = min(len(batch), total - sent)
            if more:
                await connection.send_batch([request(n) for n in range(sent, sent + more)])
                sent += more
    assert received == sent == total
    connection.close()
    await connection.wait_closed()


async def test_child_dying_mid_frame_is_reported_not_hung(spawn: Spawn) -> None:
    connection = await connect(spawn(peers.dies_mid_frame))
    with pytest.raises(TruncatedFrame, match="received 600 of"):
        async with asyncio.timeout(5):
            await connection.recv()


async def test_garbage_from_one_child_leaves_the_others_untouched(spawn: Spawn) -> None:
    garbage = await connect(spawn(peers.sends_garbage))
    healthy = await connect(spawn(peers.ordered_echo))
    with pytest.raises(ChecksumMismatch):
        async with asyncio.timeout(5):
            await garbage.recv()
    assert not garbage.is_open
    await healthy.send(request(0))
    async with asyncio.timeout(5):
        assert await healthy.recv() == ReplyOk(nonce=0, payload=0)
