"""Connection over a real socketpair: handshake, end of stream, bad input, backpressure."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import pytest

from protocol import (
    PROTOCOL_VERSION,
    AnyMessage,
    Connection,
    ConnectionClosed,
    Frame,
    FrameEncoder,
    HandshakeFailed,
    PeerStalled,
    ProtocolError,
    TruncatedFrame,
    VersionMismatch,
    open_connection,
)
from protocol.connection import FLUSH_THRESHOLD
from protocol.messages import CommandExec, Hello, ReplyOk
from tests.virtual_time import advance

ENCODER = FrameEncoder()


def hello(role: str = "master", version: int = PROTOCOL_VERSION) -> Hello:
    return Hello(version=version, role=role, worker_id=0, pid=os.getpid())  # type: ignore[arg-type]


def command(nonce: int, payload: object = None) -> CommandExec:
    return CommandExec(nonce=nonce, deadline=0.0, guild_id=nonce, name="echo", payload=payload)


async def pair(**options: int) -> tuple[Connection, Connection]:
    left, right = socket.socketpair()
    return await asyncio.gather(
        open_connection(left, hello("master"), **options),
        open_connection(right, hello("shard_worker"), **options),
    )


class RawPeer:
    """The far end as plain bytes, to play a buggy or dying process."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()

    async def connect(self, timeout: float = 5.0) -> Connection:
        """Handshake as a well-behaved peer (our hello is read, so a close is a clean EOF)."""
        self.send(ENCODER.encode(hello("shard_worker")))
        connection = await open_connection(self.ours, hello("master"), hello_timeout=timeout)
        expected = len(ENCODER.encode(hello("master")))
        self.theirs.settimeout(2)
        assert len(self.theirs.recv(expected)) == expected
        return connection

    def send(self, data: bytes | bytearray) -> None:
        self.theirs.sendall(data)

    def close(self) -> None:
        self.theirs.close()


@pytest.fixture
async def raw_peer() -> AsyncIterator[RawPeer]:
    peer = RawPeer()
    yield peer
    peer.close()


async def test_handshake_records_the_peer() -> None:
    master, worker = await pair()
    assert master.peer is not None and master.peer.role == "shard_worker"
    assert worker.peer is not None and worker.peer.pid == os.getpid()
    await master.send(command(1, "hi"))
    assert await worker.recv() == command(1, "hi")


async def test_version_mismatch_names_both_versions_on_both_sides() -> None:
    left, right = socket.socketpair()
    results = await asyncio.gather(
        open_connection(left, hello(version=PROTOCOL_VERSION)),
        open_connection(right, hello(version=PROTOCOL_VERSION + 1)),
        return_exceptions=True,
    )
    for result in results:
        assert isinstance(result, VersionMismatch)
        assert str(PROTOCOL_VERSION) in str(result) and str(PROTOCOL_VERSION + 1) in str(result)


async def test_first_frame_must_be_hello(raw_peer: RawPeer) -> None:
    raw_peer.send(ENCODER.encode(command(1)))
    with pytest.raises(
        HandshakeFailed, match="expected HELLO as the first frame, got COMMAND_EXEC"
    ):
        await open_connection(raw_peer.ours, hello())


@pytest.mark.virtual_time  # the hello timeout is a loop timer: it fires without the wait
async def test_silent_peer_fails_the_handshake_at_its_timeout(raw_peer: RawPeer) -> None:
    with pytest.raises(HandshakeFailed, match=r"no HELLO from the peer within 0\.2 s"):
        await open_connection(raw_peer.ours, hello(), hello_timeout=0.2)


@pytest.mark.parametrize("unread", [False, True], ids=["eof", "reset"])
async def test_peer_closing_mid_frame_is_an_error_not_a_hang(
    raw_peer: RawPeer, unread: bool
) -> None:
    connection = await raw_peer.connect()
    if unread:  # a peer that dies with unread data resets the connection instead of EOF
        await connection.send(command(9))
    frame = ENCODER.encode(command(1, "x" * 100))
    raw_peer.send(frame[:50])
    raw_peer.close()
    async with asyncio.timeout(2):
        with pytest.raises(TruncatedFrame, match="received 50 of"):
            await connection.recv()
    assert not connection.is_open


async def test_clean_close_ends_recv_after_delivering_everything(raw_peer: RawPeer) -> None:
    connection = await raw_peer.connect()
    raw_peer.send(ENCODER.encode_batch([command(1), command(2)]))
    raw_peer.close()
    async with asyncio.timeout(2):
        assert [await connection.recv(), await connection.recv()] == [command(1), command(2)]
        with pytest.raises(ConnectionClosed, match="peer closed"):
            await connection.recv()
    with pytest.raises(ConnectionClosed, match="cannot send"):
        await connection.send(command(3))


async def test_garbage_closes_that_connection_only(raw_peer: RawPeer) -> None:
    bad = await raw_peer.connect()
    master, worker = await pair()
    raw_peer.send(ENCODER.encode(command(1)) + b"\x00\x00\x00\x03\xde\xad\xbe\xefxyz")
    async with asyncio.timeout(2):
        assert await bad.recv() == command(1)
        with pytest.raises(ProtocolError, match="checksum"):
            await bad.recv()
    await bad.wait_closed()
    assert raw_peer.theirs.recv(1) == b""  # the garbage sender sees its connection closed
    await master.send(command(2))
    async with asyncio.timeout(2):
        assert await worker.recv() == command(2)


@pytest.mark.virtual_time
async def test_slow_reader_makes_the_writer_wait_with_bounded_memory() -> None:
    limit, inbox_limit, count = 64 * 1024, 16, 400
    writer, reader = await pair(write_buffer_limit=limit, inbox_limit=inbox_limit)
    payload = "p" * 8192
    frame_size = len(ENCODER.encode(command(0, payload)))
    sent = 0

    async def produce() -> None:
        nonlocal sent
        for nonce in range(count):
            await writer.send(command(nonce, payload))
            sent += 1

    producer = asyncio.create_task(produce())
    # Virtual time moves only once no socket is ready: every write and read that can happen has
    # happened, and half a second passes with the reader reading nothing, at no cost.
    await advance(0.5)
    assert not producer.done(), "the writer should be waiting on the slow reader"
    assert sent < count // 2
    assert writer.write_buffer_size <= limit + frame_size
    # Reading paused at the inbox limit; one read's worth of frames may land on top of it.
    assert reader.inbox_size <= inbox_limit + (256 * 1024) // frame_size + 1

    async with asyncio.timeout(10):
        received = [await reader.recv() for _ in range(count)]
        await producer
    assert [message.nonce for message in received] == list(range(count))  # type: ignore[union-attr]


async def test_batch_send_and_receive_keep_order() -> None:
    master, worker = await pair()
    await master.send_batch([command(n) for n in range(100)])
    received: list[object] = []
    async with asyncio.timeout(2):
        while len(received) < 100:
            received.extend(await worker.recv_batch())
    assert received == [command(n) for n in range(100)]
    await worker.send(ReplyOk(nonce=1))
    assert await master.recv() == ReplyOk(nonce=1)
    master.close()
    await master.wait_closed()
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(2):
            await worker.recv()


async def test_router_mode_forwards_frames_unchanged() -> None:
    """``deliver_to`` hands messages with their frames to a callback that forwards them as is."""
    left_master, left_worker = await pair()
    right_master, right_worker = await pair()
    routed: list[object] = []

    def route(source: Connection, messages: list[AnyMessage], frames: list[Frame]) -> None:
        assert source is left_master
        routed.extend(messages)
        right_master.forward_nowait(frames)

    await left_worker.send(command(0))  # lands in the inbox before the router takes over
    async with asyncio.timeout(2):
        while left_master.inbox_size == 0:  # noqa: ASYNC110 (polls a count, bounded by timeout)
            await asyncio.sleep(0.01)
    left_master.deliver_to(route)
    await left_worker.send_batch([command(n) for n in range(1, 50)])
    async with asyncio.timeout(2):
        forwarded = [await right_worker.recv() for _ in range(50)]
    assert forwarded == routed == [command(n) for n in range(50)]


async def test_messages_sent_soon_arrive_in_order_and_bursts_are_flushed_early() -> None:
    master, worker = await pair()
    count = FLUSH_THRESHOLD * 3
    for n in range(count):
        master.send_soon(command(n))
        # Never more than a threshold's worth waits for the end of the turn.
        assert len(master._queued) < FLUSH_THRESHOLD
    master.forward_soon(ENCODER.encode(command(count)))
    received: list[object] = []
    async with asyncio.timeout(2):
        while len(received) < count + 1:
            received.extend(await worker.recv_batch())
    assert received == [command(n) for n in range(count + 1)]
    assert master._queued == []


async def test_send_soon_on_a_closed_connection_raises_and_close_flushes_what_was_queued() -> None:
    master, worker = await pair()
    master.send_soon(command(1))
    master.close()  # the queued frame goes out before the connection ends
    async with asyncio.timeout(2):
        assert await worker.recv() == command(1)
    with pytest.raises(ConnectionClosed):
        master.send_soon(command(2))


async def test_a_peer_that_stops_reading_ends_the_link_once_its_backlog_passes_the_bound() -> None:
    limit = 64 * 1024
    sender, stalled = await pair(write_buffer_limit=limit)
    try:
        stalled.pause_reading()  # a hung worker: nothing it is sent is read any more
        payload = b"x" * 1024
        for nonce in range(1, 20_000):  # 20 MiB, far past 64 write-buffer limits of 64 KiB
            if not sender.is_open:
                break
            sender.send_soon(ReplyOk(nonce=nonce, payload=payload))  # a fan-out: no wait
            if nonce % 100 == 0:
                await asyncio.sleep(0)
        assert isinstance(sender.error, PeerStalled), sender.error
        assert "the peer stopped reading" in str(sender.error)
        await asyncio.wait_for(sender.wait_closed(), 5)
    finally:
        sender.close()
        stalled.close()
