"""Framing: split points, batching, the size cap, every kind of bad input, and fuzzing."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    ChecksumMismatch,
    FrameDecoder,
    FrameEncoder,
    FrameTooLarge,
    InvalidField,
    MalformedFrame,
    MissingField,
    ProtocolError,
    TruncatedFrame,
    UnknownMessageKind,
)
from protocol.framing import COPY_BELOW
from protocol.messages import AnyMessage, CommandExec, Message, ReplyError, ReplyOk

MESSAGES: list[Message] = [
    CommandExec(nonce=1, deadline=10.0, guild_id=1 << 40, name="ping"),
    ReplyOk(nonce=1, payload={"latency": 41.5, "shard": 3}),
    ReplyError(nonce=2, code="timeout", message="deadline passed"),
    CommandExec(nonce=3, deadline=11.0, guild_id=7, name="where", payload="x" * 300),
]
STREAM = bytes(FrameEncoder().encode_batch(MESSAGES))


def frame(body: bytes) -> bytes:
    """A well-formed frame around any body, as a buggy peer would send it."""
    return struct.pack(">II", len(body), zlib.crc32(body)) + body


def decode_all(decoder: FrameDecoder, *chunks: bytes | bytearray) -> list[AnyMessage]:
    return [message for chunk in chunks for message in decoder.feed(chunk)]


def test_batch_is_the_concatenation_of_single_frames() -> None:
    encoder = FrameEncoder()
    assert b"".join(encoder.encode(message) for message in MESSAGES) == STREAM


def test_one_chunk_with_many_frames() -> None:
    assert decode_all(FrameDecoder(), STREAM) == MESSAGES


@pytest.mark.parametrize("split", range(len(STREAM) + 1))
def test_every_split_point(split: int) -> None:
    decoder = FrameDecoder()
    assert decode_all(decoder, STREAM[:split], STREAM[split:]) == MESSAGES
    assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    decoder = FrameDecoder()
    assert decode_all(decoder, *(STREAM[i : i + 1] for i in range(len(STREAM)))) == MESSAGES


def test_cap_rejects_4_gib_length_from_the_header_without_allocating() -> None:
    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge, match="4294967295 bytes exceeds the cap of 16777216"):
            decode_all(decoder, b"\xff\xff\xff\xff\x00\x00\x00\x00")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert decoder.buffered == 0


def test_cap_is_configurable_and_enforced_at_the_sender() -> None:
    big = ReplyOk(nonce=1, payload="x" * 2000)
    with pytest.raises(FrameTooLarge, match="exceeds the cap of 1024"):
        FrameEncoder(frame_cap=1024).encode(big)
    with pytest.raises(FrameTooLarge):
        decode_all(FrameDecoder(frame_cap=1024), FrameEncoder().encode(big))
    with pytest.raises(FrameTooLarge):
        FrameEncoder(frame_cap=1024).encode_batch([ReplyOk(nonce=0), big])


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (b"\xc1\xc1\xc1", MalformedFrame, "not msgpack"),
        (msgspec.msgpack.encode(17), MalformedFrame, "msgpack int, expected a map"),
        (msgspec.msgpack.encode({"nonce": 1}), MalformedFrame, "no 'kind' field"),
        (msgspec.msgpack.encode({"kind": "TELEPORT"}), UnknownMessageKind, "'TELEPORT'"),
        (
            msgspec.msgpack.encode(
                {"kind": "COMMAND_EXEC", "nonce": 1, "deadline": 1.0, "guild_id": "x", "name": "a"}
            ),
            InvalidField,
            r"COMMAND_EXEC: Expected `int`, got `str` - at `\$.guild_id`",
        ),
        (
            msgspec.msgpack.encode({"kind": "REPLY_OK"}),
            MissingField,
            "REPLY_OK: Object missing required field `nonce`",
        ),
        (
            msgspec.msgpack.encode({"kind": "REPLY_ERROR", "nonce": 1, "code": "x", "message": ""}),
            InvalidField,
            r"REPLY_ERROR: Invalid enum value 'x' - at `\$.code`",
        ),
    ],
)
def test_bad_body_raises_a_clear_error(body: bytes, error: type[ProtocolError], words: str) -> None:
    with pytest.raises(error, match=words):
        decode_all(FrameDecoder(), frame(body))


def test_checksum_mismatch_names_both_sums() -> None:
    corrupted = bytearray(STREAM)
    corrupted[20] ^= 0x01
    with pytest.raises(ChecksumMismatch, match="failed its checksum"):
        decode_all(FrameDecoder(), bytes(corrupted))


def test_truncated_frame_is_reported_at_end_of_stream() -> None:
    decoder = FrameDecoder()
    assert decode_all(decoder, STREAM[:-5]) == MESSAGES[:-1]
    with pytest.raises(TruncatedFrame, match=r"received \d+ of \d+ bytes"):
        decoder.close()


def test_clean_end_of_stream_is_not_an_error() -> None:
    decoder = FrameDecoder()
    decode_all(decoder, STREAM)
    decoder.close()


def test_good_frames_before_a_bad_one_are_delivered_then_the_decoder_is_poisoned() -> None:
    decoder = FrameDecoder()
    delivered: list[AnyMessage] = []
    with pytest.raises(UnknownMessageKind):
        delivered.extend(decoder.feed(STREAM + frame(msgspec.msgpack.encode({"kind": "NOPE"}))))
    assert delivered == MESSAGES
    with pytest.raises(UnknownMessageKind):
        decode_all(decoder, STREAM)


# -- property tests --------------------------------------------------------------------------


def feed_until_error(chunks: list[bytes]) -> list[AnyMessage]:
    """Everything a decoder yields for ``chunks``; only ProtocolError may stop it."""
    decoder = FrameDecoder(frame_cap=1 << 20)
    out: list[AnyMessage] = []
    try:
        for chunk in chunks:
            out.extend(decoder.feed(chunk))
        decoder.close()
    except ProtocolError:
        pass
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


messages_strategy = st.lists(
    st.builds(
        CommandExec,
        nonce=st.integers(0, 2**64 - 1),
        deadline=st.floats(allow_nan=False),
        guild_id=st.integers(0, 2**64 - 1),
        name=st.text(min_size=1, max_size=20),
        payload=st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=50),
    )
    | st.builds(ReplyOk, nonce=st.integers(0, 2**64 - 1), payload=st.binary(max_size=64)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=512), cuts=st.lists(st.integers(0, 512), max_size=6))
def test_random_bytes_never_crash_and_never_yield_a_message(data: bytes, cuts: list[int]) -> None:
    assert feed_until_error(chunked(data, cuts)) == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=messages_strategy,
    mutations=st.lists(
        st.tuples(st.sampled_from(["flip", "insert", "delete", "set"]), st.integers(0, 10**6),
                  st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
    cuts=st.lists(st.integers(0, 4096), max_size=6),
)  # fmt: skip
def test_mutated_stream_yields_only_a_prefix_of_what_was_sent(
    messages: list[Message], mutations: list[tuple[str, int, int]], cuts: list[int]
) -> None:
    stream = bytearray(FrameEncoder().encode_batch(messages))
    for operation, where, value in mutations:
        index = where % (len(stream) + 1)
        if operation == "insert":
            stream.insert(index, value)
        elif index < len(stream):
            if operation == "flip":
                stream[index] ^= 1 << (value % 8)
            elif operation == "set":
                stream[index] = value
            else:
                del stream[index]
    received = feed_until_error(chunked(bytes(stream), cuts))
    assert received == messages[: len(received)]


def test_decoder_can_hand_back_each_frame_for_forwarding() -> None:
    frames: list[bytes | memoryview] = []
    decoder = FrameDecoder()
    assert decode_all(decoder, STREAM[:30]) == []  # less than the first frame
    assert list(decoder.feed(STREAM[30:], frames)) == MESSAGES
    encoder = FrameEncoder()
    assert [bytes(frame) for frame in frames] == [encoder.encode(m) for m in MESSAGES]


def test_small_frames_are_handed_back_as_copies_and_large_ones_as_views() -> None:
    large = ReplyOk(nonce=9, payload="y" * (COPY_BELOW * 2))
    messages = [*MESSAGES, large, MESSAGES[0]]
    encoder = FrameEncoder()
    parts: list[bytes | memoryview] = []
    for message in messages:
        encoder.encode_into(message, parts)
    # A small frame is one buffer; the large one is its header and its body, uncopied.
    assert len(parts) == len(messages) + 1
    stream = b"".join(parts)
    frames: list[bytes | memoryview] = []
    assert list(FrameDecoder().feed(stream, frames)) == messages
    assert [bytes(frame) for frame in frames] == [encoder.encode(m) for m in messages]
    kinds = [type(frame) for frame in frames]
    assert kinds == [bytes] * len(MESSAGES) + [memoryview, bytes]


def nested_command(depth: int) -> bytes:
    """A COMMAND_EXEC whose payload is ``depth`` arrays deep: about ``depth`` bytes."""
    body = {"kind": "COMMAND_EXEC", "nonce": 9, "deadline": 10.0, "guild_id": 1, "name": "x"}
    head = msgspec.msgpack.encode({**body, "payload": msgspec.Raw(b"\x91" * depth + b"\x01")})
    return frame(head)


def test_a_payload_nested_too_deep_is_a_malformed_frame_after_what_came_before() -> None:
    decoder = FrameDecoder()
    decoded: list[AnyMessage] = []
    with pytest.raises(MalformedFrame, match="nested deeper than"):
        for message in decoder.feed(STREAM + nested_command(5_000)):
            decoded.append(message)
    assert decoded == MESSAGES  # the frames before the bad one are not lost


@pytest.mark.parametrize("deadline", [float("inf"), float("nan"), -1.0, 2.0**41])
def test_a_deadline_that_is_no_instant_is_refused_on_the_wire(deadline: float) -> None:
    body = {"kind": "HEARTBEAT", "nonce": 1, "deadline": deadline, "sent_at": 1.0}
    with pytest.raises(InvalidField, match="deadline"):
        list(FrameDecoder().feed(frame(msgspec.msgpack.encode(body))))
